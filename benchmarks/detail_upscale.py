"""``upscale --detail``: seconds, peak memory, seams, and the estimate against the real time.

    .venv/bin/python benchmarks/detail_upscale.py --cpu            # tiny model, this machine (minutes)
    .venv/bin/python benchmarks/detail_upscale.py --gpu            # full-size random weights, one GPU (prepared)
    .venv/bin/python benchmarks/detail_upscale.py --gpu --smoke --outputs 256 --profiles full   # code check, CPU

CPU (tiny random-weight Z-Image, realesr-animevideov3 for the upscale; what the tiny model costs is not what
Z-Image-Turbo costs, so only the shape of the numbers carries over): for each picture size, the whole
``Pipeline.upscale(detail=0.3)`` (upscale + detail, one tile and 256-px tiles), ``estimate_upscale`` said
beforehand against the real seconds, and the seam measure of tests/test_detail_upscale.py (mean |Δ| across
the lines where tiles meet / the picture's median line) for the cross-fade (ours) against a cut in the
middle of each band, on the same tiles and noise.

GPU (full-size Z-Image-Turbo architecture, random bf16 weights built on the device, nothing downloaded;
``benchmarks/gpu_profiles.Builder``): the detail pass alone (the canvas is given) at strength 0.3, 8 steps
(3 run), 1024-px tiles, for 1024² → 2048² and → 4096² outputs under the ``full`` and ``low`` profiles:
seconds and peak GiB. The upscale before it is benchmarks/upscale_vs_realesrganer.py --gpu.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def smooth_picture(path: Path, size: int) -> Path:
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    rgb = np.stack([0.3 + 0.5 * x, 0.4 + 0.3 * np.sin(3 * y + 1), 0.6 - 0.4 * x * y], axis=2)
    Image.fromarray((rgb * 255).astype("uint8")).save(path)
    return path


def seam_ratio(image, tiles) -> float:
    import numpy as np

    from test_detail_upscale import _line_steps

    steps, lines = _line_steps(np.asarray(image, np.float64), [list(t) for t in tiles])
    return float(np.mean(steps) / np.median(lines))


def cpu(args) -> None:
    from PIL import Image

    from pipeline import Pipeline
    from pipeline.engines.detail import add_detail
    from pipeline.core.jobs import DetailJob

    print(f"load average at start: {os.getloadavg()}, {os.cpu_count()} cores")
    print("| input | output | detail tile | tiles | estimate (s) | real, whole call (s) | real / estimate |"
          " seams: cross-fade | seams: cut |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for side in args.sizes:
            picture = smooth_picture(tmp / f"in{side}.png", side)
            for tile in (1024, 256):
                out = tmp / f"o{side}-{tile}"
                kwargs = dict(upscaler="realesr-animevideov3", detail=0.3, detail_tile=tile, prompt="a harbour",
                              model="tiny-random")
                with Pipeline(model="tiny-random", out=out) as p:
                    p.session.engine()  # loaded before both, so neither counts the load
                    estimate = p.estimate_upscale([picture], **kwargs)
                    started = time.perf_counter()
                    result = p.upscale([picture], **kwargs)
                    real = time.perf_counter() - started
                    path = result.items[0].path
                    with Image.open(path) as image:
                        record = json.loads(image.text["pipeline"])["upscale"]
                        ours = image.convert("RGB")
                    rects = [tuple(r) for r in record["detail"]["tiles"]]
                    cut_ratio = ""
                    if len(rects) > 1:
                        d = record["detail"]
                        job = DetailJob(sr=record["sr_key"], model=d["model"], prompt=d["prompt"], negative="",
                                        width=ours.width, height=ours.height, steps=d["steps"],
                                        guidance=d["guidance"], seed=d["seed"], dtype=d["dtype"],
                                        strength=d["strength"], tile=d["tile"], overlap=d["overlap"])
                        with Image.open(p.session.store.get(record["sr_key"]).path) as sr:
                            cut = add_detail(p.session.engine(), sr.convert("RGB"), job, blend=0.0)
                        cut_ratio = f"{seam_ratio(cut, rects):.2f}"
                    fade = f"{seam_ratio(ours, rects):.2f}" if len(rects) > 1 else "(one tile)"
                print(f"| {side}² | {ours.width}² | {tile} | {len(rects)} | {estimate:.1f} | {real:.1f} | {real / estimate:.2f} | {fade} | {cut_ratio} |", flush=True)
    print(f"load average at end: {os.getloadavg()}")


def gpu(args) -> None:
    import torch
    from diffusers import ZImagePipeline
    from PIL import Image

    from gpu_profiles import FULL_TEXT_ENCODER, FULL_TRANSFORMER, FULL_VAE, Builder, free_all, tiny_configs
    from pipeline.engines.detail import add_detail
    from pipeline.engines.tiling import detail_overlap, detail_rects
    from pipeline.engines.zimage import ZImageEngine
    from pipeline.core.jobs import DetailJob

    device = "cpu" if args.smoke else "cuda"  # --smoke: the same code path on the CPU with tiny configs
    configs = tiny_configs() if args.smoke else (FULL_TRANSFORMER, FULL_TEXT_ENCODER, FULL_VAE)
    builder = Builder(device, torch.float32 if args.smoke else torch.bfloat16, configs)
    cuda = device == "cuda"
    rows = []
    for profile in args.profiles:
        transformer, vae = builder.transformer(), builder.vae()
        if profile != "full" and cuda:
            transformer.to("cpu")
            vae.to("cpu")
        free_all(device)
        pipe = ZImagePipeline(transformer=transformer, vae=vae, text_encoder=None, tokenizer=None,
                              scheduler=builder.scheduler())

        def load_text_encoder():
            encoder = builder.text_encoder().to("cpu")
            if cuda:
                torch.cuda.empty_cache()
            return builder.tokenizer(), encoder

        engine = ZImageEngine.from_pipeline(pipe, device=device, dtype="fp32" if args.smoke else "bf16",
                                            memory=profile, text_encoder_loader=load_text_encoder,
                                            fingerprint="bench", profiles_on_cpu=args.smoke)
        engine.encode(["a red fox in fresh snow, morning light, detailed fur"])
        for side in args.outputs:
            canvas = Image.effect_noise((side, side), 40).convert("RGB")
            job = DetailJob(sr="bench", model="bench", prompt="a red fox in fresh snow, morning light, detailed fur",
                            negative="", width=side, height=side, steps=8, guidance=0.0, seed=1,
                            dtype="fp32" if args.smoke else "bf16",
                            strength=0.3, tile=1024, overlap=detail_overlap(1024))
            add_detail(engine, canvas.resize((256, 256)), dataclasses.replace(job, width=256, height=256))  # warm-up
            times = []
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            for _ in range(args.repeats):
                started = time.perf_counter()
                add_detail(engine, canvas, job)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - started)
            row = dict(profile=profile, output=side, tiles=len(detail_rects(side, side, 1024, job.overlap)),
                       seconds=round(statistics.median(times), 2),
                       peak_gib=round(torch.cuda.max_memory_allocated() / 1024**3, 2) if cuda else None)
            rows.append(row)
            print(json.dumps(row), flush=True)
        del engine, pipe, transformer, vae
        free_all(device)
    print("| profile | output | tiles | seconds (median) | peak GiB |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['profile']} | {r['output']}² | {r['tiles']} | {r['seconds']} | {r['peak_gib']} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="CPU: input sides (output x2)")
    parser.add_argument("--outputs", type=int, nargs="+", default=[2048, 4096], help="GPU: output sides")
    parser.add_argument("--profiles", nargs="+", default=["full", "low"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="with --gpu: the CPU with tiny configs (a code check)")
    args = parser.parse_args(argv)
    if args.gpu:
        gpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
