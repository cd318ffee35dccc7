"""Our Real-ESRGAN engine: every precision and tiling against the RealESRGANer computation.

    .venv/bin/python benchmarks/upscale_vs_realesrganer.py [--size 128] [--repeats 3]     # CPU table
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/upscale_vs_realesrganer.py       # as an AVX2-only CPU
    .venv/bin/python benchmarks/upscale_vs_realesrganer.py --gpu [--compile]              # GPU, 1024² -> 4096²
    .venv/bin/python benchmarks/upscale_vs_realesrganer.py --default-goal --size 256      # default vs plain fp32

Reference: RealESRGANer with ``pre_pad=0`` and no tiling computes exactly the untiled fp32
forward pass of the same weights (measured 89.6 dB apart, i.e. float summation order), so the
reference here is our untiled fp32 output; RealESRGANer's own tiling (hard-cropped tiles with
``tile_pad``) is reproduced in ``realesrganer_tiles`` to compare seams.  When the separate
bench venv with ``realesrgan`` exists (``--bench-python``), ``--gpu`` also times RealESRGANer
``half=True`` itself in the same run.

Photos: crops of 8 photographs bundled with scikit-image (not downloaded) that the other tests
and benchmarks do not use, reduced 2x.  Timings interleave the engines and report medians;
peak RSS is measured per engine in a fresh process.  Prints markdown tables.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "grass.png",
          "coins.png", "brick.png")


def photo(name: str, size: int):
    import numpy as np
    from PIL import Image

    folder = Path(importlib.util.find_spec("skimage").submodule_search_locations[0]) / "data"
    image = Image.open(folder / name).convert("RGB").reduce(2)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), np.float32) / 255


def psnr(a, b) -> float:
    import numpy as np

    a, b = (np.rint(np.clip(x, 0, 1) * 255) for x in (a, b))
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def realesrganer_tiles(upscaler, array, tile: int, pad: int = 10):
    """RealESRGANer's tiling: each ``tile`` crop runs with ``pad`` pixels of context, the output
    keeps the crop only (hard edges, no blending)."""
    import numpy as np

    h, w = array.shape[:2]
    s = upscaler.scale
    out = np.zeros((h * s, w * s, 3), np.float32)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, y1, x0, x1 = max(0, y - pad), min(h, y + tile + pad), max(0, x - pad), min(w, x + tile + pad)
            window = upscaler.upscale_arrays([array[y0:y1, x0:x1]], tile=0)[0]
            ty, tx = min(h, y + tile), min(w, x + tile)
            out[y * s:ty * s, x * s:tx * s] = window[(y - y0) * s:(ty - y0) * s, (x - x0) * s:(tx - x0) * s]
    return out


def engines(names: list[str]):
    from pipeline.engines.upscaler import load_upscaler

    return {name: load_upscaler("realesrgan-x4plus", "cpu", name) for name in names}


def seams(args) -> dict:
    """PSNR of tiled against untiled fp32 output, per photo and tiling."""
    from pipeline.engines import tiling

    (fp32,) = engines(["fp32"]).values()
    rows = {}
    for name in PHOTOS[:args.photos]:
        x = photo(name, args.size)
        whole = fp32.upscale_arrays([x], tile=0)[0]
        row = {f"ours tile {t}": psnr(fp32.upscale_arrays([x], tile=t)[0], whole) for t in args.tiles}
        blend, tiling.BLEND = tiling.BLEND, 0.5  # the previous default: overlap 24, ramp over the middle half
        try:
            tiling.band_weights.__defaults__ = (0.5,)
            row["old default tile 32 (overlap 24)"] = psnr(fp32.upscale_arrays([x], tile=32, overlap=24)[0], whole)
        finally:
            tiling.BLEND, tiling.band_weights.__defaults__ = blend, (blend,)
        row["RealESRGANer tile 32 pad 10"] = psnr(realesrganer_tiles(fp32, x, 32), whole)
        rows[name] = row
        print(name, json.dumps({k: round(v, 1) for k, v in row.items()}), file=sys.stderr, flush=True)
    return rows


def speed(args) -> dict:
    """Seconds (median, interleaved) and PSNR against fp32 of each precision, untiled."""
    import numpy as np

    from pipeline.engines.upscaler import PRECISIONS

    names = [p for p in PRECISIONS if p not in ("auto", "fp16")]
    loaded = engines(names)
    rows = {}
    for name in PHOTOS[:args.photos]:
        x = photo(name, args.size)
        times = {key: [] for key in loaded}
        outputs = {}
        for key, upscaler in loaded.items():  # warm-up
            outputs[key] = upscaler.upscale_arrays([x], tile=0)[0]
        for _ in range(args.repeats):
            for key, upscaler in loaded.items():
                start = time.perf_counter()
                upscaler.upscale_arrays([x], tile=0)
                times[key].append(time.perf_counter() - start)
        rows[name] = {key: {"seconds": statistics.median(times[key]), "psnr": psnr(outputs[key], outputs["fp32"])}
                      for key in loaded}
        print(name, json.dumps(rows[name]), file=sys.stderr, flush=True)
    del np
    return rows


def peak_rss(precision: str, size: int) -> float:
    """MB of peak RSS of a fresh process upscaling one crop in ``precision``."""
    code = ("import resource,sys; sys.path.insert(0, %r); from benchmarks.upscale_vs_realesrganer import *; "
            "(u,) = engines([%r]).values(); u.upscale_arrays([photo(PHOTOS[0], %d)], tile=0); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)") % (str(ROOT), precision, size)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    return float(result.stdout.strip().splitlines()[-1])


def gpu(args) -> None:
    """1024² -> 4096² on CUDA: our fp16/bf16 (channels-last, large tiles, optional compile) against
    RealESRGANer half=True when the bench venv exists.  Not measured in the session that wrote it."""
    import numpy as np
    import torch

    from pipeline.engines.upscaler import load_upscaler

    big = np.ascontiguousarray(np.tile(photo(PHOTOS[0], 256), (4, 4, 1)))  # 1024² input
    print("| engine (1024² -> 4096²) | seconds (median) | peak GPU memory (MB) | PSNR vs our fp32 (dB) |")
    print("|---|---|---|---|")
    reference = None
    for precision in ("fp32", "fp16", "bf16"):
        upscaler = load_upscaler("realesrgan-x4plus", "cuda", precision)
        if args.compile:
            upscaler.descriptor.model = torch.compile(upscaler.descriptor.model)
        upscaler.upscale_arrays([big[:256, :256]], tile=0)  # warm-up (and compile)
        times = []
        for _ in range(args.repeats):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            out = upscaler.upscale_arrays([big])[0]
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        reference = out if precision == "fp32" else reference
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"| ours {precision}{' compiled' if args.compile else ''} | {statistics.median(times):.2f} "
              f"| {peak:.0f} | {psnr(out, reference):.1f} |", flush=True)
        del upscaler
        torch.cuda.empty_cache()
    if Path(args.bench_python).exists():
        np.save("/tmp/upscale-gpu-input.npy", big)
        code = ("import sys,time,numpy as np,torch,torchvision.transforms.functional as F;"
                "sys.modules.setdefault('torchvision.transforms.functional_tensor',F);"
                "from basicsr.archs.rrdbnet_arch import RRDBNet;from realesrgan import RealESRGANer;"
                "m=RRDBNet(num_in_ch=3,num_out_ch=3,num_feat=64,num_block=23,num_grow_ch=32,scale=4);"
                "u=RealESRGANer(scale=4,model_path=sys.argv[1],model=m,tile=0,pre_pad=0,half=True,device='cuda');"
                "x=(np.load('/tmp/upscale-gpu-input.npy')[...,::-1]*255).astype('uint8');u.enhance(x[:256,:256]);"
                "ts=[];torch.cuda.reset_peak_memory_stats()\n"
                "for _ in range(int(sys.argv[2])):\n torch.cuda.synchronize();t=time.perf_counter();u.enhance(x);"
                "torch.cuda.synchronize();ts.append(time.perf_counter()-t)\n"
                "print(sorted(ts)[len(ts)//2], torch.cuda.max_memory_allocated()/2**20)")
        result = subprocess.run([args.bench_python, "-c", code, args.weights_pth or "", str(args.repeats)],
                                capture_output=True, text=True)
        if result.returncode == 0:
            seconds, peak = result.stdout.split()[-2:]
            print(f"| RealESRGANer half=True, tile 0 | {float(seconds):.2f} | {float(peak):.0f} | - |")
        else:
            print(f"RealESRGANer run failed: {result.stderr[-500:]}")


def main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("PIPELINE_OFFLINE", "1")
    if args.gpu:
        return gpu(args)
    if args.default_goal:  # issue 24: the default CPU upscale, whole process, against plain fp32
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from upscale_default_goal import goal

        return goal(args, photo, psnr)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "?")
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    print(f"\nrealesrgan-x4plus, {args.size}² crops -> {4 * args.size}², {args.threads} threads, {cpu}, "
          f"oneDNN ISA {isa}, median of {args.repeats}\n")
    if not args.skip_seams:
        rows = seams(args)
        columns = list(next(iter(rows.values())))
        print("| photo | " + " | ".join(f"{c} vs untiled (dB)" for c in columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for name, row in rows.items():
            print(f"| {name} | " + " | ".join(f"{row[c]:.1f}" for c in columns) + " |")
        print("| min | " + " | ".join(f"{min(r[c] for r in rows.values()):.1f}" for c in columns) + " |\n")
    rows = speed(args)
    keys = list(next(iter(rows.values())))
    print("| photo | " + " | ".join(f"{k} s | {k} vs fp32" for k in keys) + " |")
    print("|---" * (2 * len(keys) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[k]['seconds']:.2f} | {row['fp32']['seconds'] / row[k]['seconds']:.2f}x, "
                                         f"{row[k]['psnr']:.1f} dB" for k in keys) + " |")
    if not args.skip_memory:
        print("\n| precision | peak RSS of a fresh process (MB) |\n|---|---|")
        for key in keys:
            print(f"| {key} | {peak_rss(key, args.size):.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--tiles", type=int, nargs="+", default=[32, 64, 96])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-seams", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--gpu", action="store_true", help="the CUDA comparison, 1024² -> 4096²")
    parser.add_argument("--compile", action="store_true", help="with --gpu: torch.compile the model")
    parser.add_argument("--bench-python", default="/tmp/bench-venv/bin/python",
                        help="a venv with realesrgan, for the GPU RealESRGANer half=True row")
    parser.add_argument("--weights-pth", help="RealESRGAN_x4plus.pth for the RealESRGANer row")
    parser.add_argument("--default-goal", action="store_true",
                        help="the default CPU upscale, whole process, against plain PyTorch fp32 (upscale_default_goal.py)")
    parser.add_argument("--goal-photos", nargs="+", default=["motorcycle_left.png", "hubble_deep_field.jpg"])
    parser.add_argument("--seam-photos", nargs="*", default=["motorcycle_left.png", "grass.png", "brick.png"])
    sys.path.insert(0, str(ROOT))
    main(parser.parse_args())
