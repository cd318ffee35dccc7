"""The CPU default upscale, whole process, against plain PyTorch fp32 on the same weights (issue 24).

    .venv/bin/python benchmarks/upscale_vs_realesrganer.py --default-goal [--size 256] [--repeats 3]
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/upscale_vs_realesrganer.py --default-goal   # AVX2-only

Per photo and repeat, interleaved, each in a fresh process (so imports, loading and writing the PNG count):
``pipeline upscale PHOTO`` with default settings (a fresh output folder and store: nothing cached), and a
plain script that loads the same realesrgan-x4plus weights with spandrel in fp32 and runs the whole picture
at once (the fastest plain fp32 there is: no tiles), writing a PNG. Medians. Also ``--dry-run``'s estimate
against the real time, and the seams of the default tiling where it tiles (a RAM budget small enough to
force 2 x 2 windows: PSNR against the same precision untiled).
"""
from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PLAIN = r"""
import sys, numpy as np, torch, spandrel
from PIL import Image
from pipeline.models.upscaler_weights import load_state_dict
model = spandrel.ModelLoader().load_from_state_dict(load_state_dict(sys.argv[1])).model.eval()
x = torch.from_numpy(np.asarray(Image.open(sys.argv[2]).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
with torch.inference_mode():
    y = model(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
Image.fromarray(np.rint(y * 255).astype(np.uint8)).save(sys.argv[3])
"""


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PIPELINE_OFFLINE="1", **extra)
    env.setdefault("PIPELINE_UPSCALE_WARN_SECONDS", "100000")
    return env


def _timed(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, proc.stdout + proc.stderr


def goal(args, photo_fn, psnr_fn) -> None:
    import numpy as np
    from PIL import Image

    from pipeline.models.upscaler_weights import resolve_weights

    weights = str(resolve_weights("realesrgan-x4plus").path)
    python = sys.executable
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "native")
    print(f"ONEDNN_MAX_CPU_ISA={isa}; load average at start {os.getloadavg()}, {os.cpu_count()} cores")
    print("| photo | default (s) | plain fp32 (s) | speed-up | estimate (s, --dry-run) | default compute (s) |"
          " default / plain PSNR (dB) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.goal_photos:
            picture = tmp / f"{Path(name).stem}.png"
            Image.fromarray(np.rint(photo_fn(name, args.size) * 255).astype(np.uint8)).save(picture)
            _, said = _timed([python, "-m", "pipeline", "upscale", str(picture), "--out", str(tmp / "dry"),
                              "--dry-run"], _env())
            match = re.search(r"about (\d+(?:\.\d+)?) (s|min)", said)
            estimate = float(match.group(1)) * (60 if match and match.group(2) == "min" else 1) if match else None
            ours, plain, computes = [], [], []
            for repeat in range(args.repeats):
                out = tmp / f"o{repeat}-{picture.stem}"
                seconds, text = _timed([python, "-m", "pipeline", "upscale", str(picture), "--out", str(out),
                                        "--json"], _env())
                ours.append(seconds)
                computes.append(json.loads(text[text.index("{"):text.rindex("}") + 1])["items"][0]["seconds"])
                seconds, _ = _timed([python, "-c", PLAIN, weights, str(picture), str(tmp / "plain.png")], _env())
                plain.append(seconds)
            ours_png = next((tmp / f"o0-{picture.stem}" / "upscaled").glob("*.png"))
            a, b = (np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in (ours_png, tmp / "plain.png"))
            o, p = statistics.median(ours), statistics.median(plain)
            print(f"| {picture.stem} {args.size}² | {o:.1f} | {p:.1f} | {p / o:.2f}x | "
                  f"{estimate if estimate is not None else '?'} | {statistics.median(computes):.1f} | "
                  f"{psnr_fn(a, b):.1f} |", flush=True)
    print(f"load average at end {os.getloadavg()}")
    if args.seam_photos:
        seams(args, photo_fn, psnr_fn)


def seams(args, photo_fn, psnr_fn) -> None:
    """Where the default tiles (the picture's working set over the RAM budget): PSNR against untiled."""
    from pipeline.engines.upscaler import load_upscaler, pixel_budget, default_tile, _DTYPES

    side = args.size
    upscaler = load_upscaler("realesrgan-x4plus", "cpu", "auto")
    dtype = _DTYPES[upscaler.precision]
    # a budget just over one of 2 x 2 windows: what a 1024² picture gets under the real 4 GiB budget
    per_pixel = 14_000 * (16 if upscaler.precision == "bf16" else 32) / 32
    os.environ["PIPELINE_UPSCALE_CPU_BUDGET_MB"] = str((side // 2 + 100) ** 2 * per_pixel / 1024**2)
    try:
        tile = default_tile(upscaler.device, dtype, (side, side))
        print(f"\nseams of the default tiling ({upscaler.precision}; budget {pixel_budget(upscaler.device, dtype)} px"
              f" -> tile {tile}, overlap {upscaler.settings(None, None, (side, side))[1]}):")
        print("| photo | windows | PSNR tiled vs untiled (dB) |\n|---|---|---|")
        for name in args.seam_photos:
            x = photo_fn(name, side)
            tiled = upscaler.upscale_arrays([x])[0]
            whole = upscaler.upscale_arrays([x], tile=0)[0]
            print(f"| {Path(name).stem} | {upscaler.windows(side, side)} | {psnr_fn(tiled, whole):.1f} |", flush=True)
    finally:
        del os.environ["PIPELINE_UPSCALE_CPU_BUDGET_MB"]
