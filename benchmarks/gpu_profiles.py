"""Memory profiles on a GPU: seconds per image and peak VRAM, against plain diffusers.

Builds the full-size Z-Image-Turbo architecture (6.15 B transformer, Qwen3-4B text encoder,
Flux VAE) with random weights directly on the GPU in bf16 — nothing to download — and
measures, for each memory profile × size × batch, our engine (phase-separated prompt
encoding, profile placement, batching) against a plain ``ZImagePipeline`` with every
component on the GPU, called once per image with its prompt (the baseline, same run).

    python benchmarks/gpu_profiles.py --quick          # < 8 min on one H100
    python benchmarks/gpu_profiles.py                  # all profiles
    python benchmarks/gpu_profiles.py --cpu-smoke      # same code path, tiny configs, CPU
    python benchmarks/gpu_profiles.py --cards          # card sizes 8-24 GiB, bf16 vs int8, baselines,
                                                       # --compile, cold start (< 8 min on an H200)
    python benchmarks/gpu_profiles.py --cards --cpu-smoke

Random weights make random pictures, but the work per step (and so time and memory) is
that of the real model. Speeds are medians over ``--repeats`` calls after a warm-up call.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GiB = 1024**3

from benchmarks import gpu_build  # noqa: E402  (WARMUP lives there)
from benchmarks.gpu_build import (FULL_TEXT_ENCODER, FULL_TRANSFORMER, FULL_VAE, PROMPT, Builder,  # noqa: E402,F401
                                  free_all, jobs_for, peak, reset_peak, sync, timed, tiny_configs)


def measure_baseline(builder, device, sizes, steps, repeats, rows):
    """Plain diffusers: every component on the device, one call per image with its prompt."""
    import torch
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(transformer=builder.transformer(), text_encoder=builder.text_encoder(),
                          tokenizer=builder.tokenizer(), vae=builder.vae(), scheduler=builder.scheduler())
    pipe.set_progress_bar_config(disable=True)
    for size in sizes:
        def call(size=size):
            with torch.inference_mode():
                pipe(prompt=[PROMPT], width=size, height=size, num_inference_steps=steps, guidance_scale=0.0,
                     generator=torch.Generator("cpu").manual_seed(0), output_type="pil")
        seconds, gib = timed(device, call, repeats)
        rows.append(dict(profile="diffusers (baseline)", size=size, batch=1, sec_per_image=seconds, peak_gib=gib))
        print_row(rows[-1])
    del pipe
    free_all(device)


def measure_profile(builder, device, profile, sizes, batches, steps, repeats, rows, refine_size, smoke):
    import torch
    from diffusers import ZImagePipeline

    from pipeline.engines.zimage import ZImageEngine

    offload = profile != "full"
    transformer = builder.transformer()
    vae = builder.vae()
    if offload and device.startswith("cuda"):
        transformer.to("cpu")  # offloaded profiles keep the weights in CPU memory
        vae.to("cpu")
    free_all(device)
    pipe = ZImagePipeline(transformer=transformer, vae=vae, text_encoder=None, tokenizer=None,
                          scheduler=builder.scheduler())

    def load_text_encoder():
        encoder = builder.text_encoder()
        if not device.startswith("cuda"):
            return builder.tokenizer(), encoder
        # The builder makes random weights on the GPU (fast init); a real load reads them into CPU RAM.
        # Move them off and forget that transient peak, so the encode row measures what a user's run uses.
        encoder = encoder.to("cpu")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return builder.tokenizer(), encoder

    engine = ZImageEngine.from_pipeline(pipe, device=device, dtype="bf16" if not smoke else "fp32", memory=profile,
                                        text_encoder_loader=load_text_encoder, fingerprint="bench",
                                        profiles_on_cpu=smoke)
    # phase 1: encode the prompt (text encoder placed per profile, then released)
    reset_peak(device)
    started = time.perf_counter()
    engine.encode([PROMPT])
    sync(device)
    rows.append(dict(profile=profile, size="encode", batch=1, sec_per_image=time.perf_counter() - started,
                     peak_gib=peak(device)))
    print_row(rows[-1])
    # phase 2: denoise + decode
    for size in sizes:
        for batch in batches:
            jobs = jobs_for(size, batch, steps)
            seconds, gib = timed(device, lambda jobs=jobs: engine.txt2img(jobs), repeats)
            rows.append(dict(profile=profile, size=size, batch=batch, sec_per_image=seconds / batch, peak_gib=gib))
            print_row(rows[-1])
    if refine_size:
        from PIL import Image

        jobs = jobs_for(refine_size, 1, steps)
        image = Image.new("RGB", (refine_size, refine_size), (120, 90, 60))
        seconds, gib = timed(device, lambda: engine.img2img(jobs, [image], 0.5), repeats)
        rows.append(dict(profile=profile, size=f"refine {refine_size}", batch=1, sec_per_image=seconds, peak_gib=gib))
        print_row(rows[-1])
    del engine, pipe, transformer, vae
    free_all(device)


def print_row(row):
    size = row["size"] if isinstance(row["size"], str) else f"{row['size']}²"
    gib = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.2f}"
    ips = 1 / row["sec_per_image"] if row["sec_per_image"] else float("nan")
    print(f"{row['profile']:<22} {size:>12} {row['batch']:>5} {row['sec_per_image']:>9.3f} {ips:>8.2f} {gib:>9}",
          flush=True)


def find(rows, profile, size, batch):
    for row in rows:
        if row["profile"] == profile and row["size"] == size and row["batch"] == batch:
            return row
    return None


def summary(rows, sizes, big_batch):
    print("\ngoals:")
    small = sizes[0]
    base = find(rows, "diffusers (baseline)", small, 1)
    full4 = find(rows, "full", small, big_batch)
    low4 = find(rows, "low", small, big_batch)
    low1 = find(rows, "low", small, 1)
    if base and full4:
        ratio = base["sec_per_image"] / full4["sec_per_image"]
        print(f"  full batch {big_batch} vs baseline at {small}²: {ratio:.2f}× images/s (goal ≥ 1.2×)")
    if low4 and full4:
        ratio = full4["sec_per_image"] / low4["sec_per_image"]
        print(f"  low batch {big_batch} vs full batch {big_batch} at {small}²: {ratio:.0%} of the images/s (goal ≥ 50%)")
    if low1 and low1["peak_gib"] is not None:
        encode = find(rows, "low", "encode", 1)
        peak_all = max(low1["peak_gib"], encode["peak_gib"] if encode else 0)
        print(f"  explore {small}² with low: peak {peak_all:.2f} GiB incl. prompt encoding (goal < 6 GiB)")
    refine = [r for r in rows if r["profile"] == "low" and str(r["size"]).startswith("refine")]
    if refine and refine[0]["peak_gib"] is not None:
        print(f"  refine {refine[0]['size'][7:]}² with low: peak {refine[0]['peak_gib']:.2f} GiB (goal < 8 GiB)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="full and low profiles only (< 8 min on one H100)")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny configs on the CPU: checks the code path")
    parser.add_argument("--profiles", default=None, help="comma-separated subset of full,balanced,low,minimal")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps [8; 1 with --cpu-smoke]")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per cell [2; 1 with --cpu-smoke]")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--cards", action="store_true", help="simulated card sizes, bf16 vs int8 weights, diffusers' "
                                                             "offload baselines, --compile, cold start (gpu_cards.py)")
    parser.add_argument("--workdir", default=None, help="--cards: where the model is saved (reused if there)")
    parser.add_argument("--no-compile", action="store_true", help="--cards: skip the --compile rows")
    args = parser.parse_args(argv)
    if args.cards:
        try:
            import diffusers  # noqa: F401
            import torch  # noqa: F401
        except ImportError as err:
            parser.error(f"--cards needs torch and diffusers (and safetensors): {err}")
        from benchmarks import gpu_cards

        if not args.cpu_smoke and not torch.cuda.is_available():
            parser.error("no CUDA device: use --cpu-smoke")
        args.steps = args.steps or (1 if args.cpu_smoke else 8)
        args.repeats = args.repeats or (1 if args.cpu_smoke else 3)
        return gpu_cards.main(args)

    import torch

    if args.cpu_smoke:
        device, dtype, configs = "cpu", torch.float32, tiny_configs()
        sizes, batches, steps, repeats, refine_size = [64], [1, 2], args.steps or 1, args.repeats or 1, 64
        profiles = ["full", "balanced", "low", "minimal"]
        gpu_build.WARMUP = False
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device: use --cpu-smoke")
        device, dtype = "cuda", torch.bfloat16
        configs = (FULL_TRANSFORMER, FULL_TEXT_ENCODER, FULL_VAE)
        sizes, batches, steps, repeats, refine_size = [512, 1024], [1, 4], args.steps or 8, args.repeats or 2, 1024
        profiles = ["full", "low"] if args.quick else ["full", "balanced", "low", "minimal"]
        if args.quick:
            repeats = args.repeats or 1
    if args.profiles:
        profiles = args.profiles.split(",")
    builder = Builder(device, dtype, configs)
    started = time.perf_counter()
    if device.startswith("cuda"):
        print(f"device: {torch.cuda.get_device_name()}  ({torch.cuda.mem_get_info()[1] / GiB:.0f} GiB), "
              f"torch {torch.__version__}")
    print(f"steps {steps}, median of {repeats}{' after a warm-up' if gpu_build.WARMUP else ''}; sec/img = seconds per image; peak = "
          "max_memory_allocated\n")
    print(f"{'profile':<22} {'size':>12} {'batch':>5} {'sec/img':>9} {'img/s':>8} {'peak GiB':>9}")
    rows = []
    if not args.no_baseline:
        measure_baseline(builder, device, sizes, steps, repeats, rows)
    for profile in profiles:
        measure_profile(builder, device, profile, sizes, batches, steps, repeats, rows, refine_size, args.cpu_smoke)
    summary(rows, sizes, batches[-1])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
