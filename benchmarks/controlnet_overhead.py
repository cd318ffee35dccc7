"""What a ControlNet costs per denoising step: without control, with ours, and with diffusers' own pipeline.

    python benchmarks/controlnet_overhead.py                    # tiny model, CPU (the numbers in the README)
    python benchmarks/controlnet_overhead.py --full-size --device cuda --size 1024     # GPU (prepared)

Rows (seconds per step = (time at --steps − time at --steps/2) / (--steps/2), so the fixed costs — the
control image's VAE encode, the decode, the call — cancel; medians over --repeats after a warm-up, the rows
interleaved so a busy machine slows them alike; the minimum too):

    none          ZImagePipeline, no control (the baseline, same run)
    diffusers     diffusers' ZImageControlNetPipeline called directly with the same inputs
    ours          the engine's ``controlnet`` task (engines/controlnet.py): the same pipeline over the loaded
                  components, plus the task wrapper
    ours window   the same with --control-end 0.5 (the scale switched by a step callback)

``--full-size`` builds Z-Image-Turbo's real transformer shape (dim 3840, 30 layers) and the Union 2.1
ControlNet's (15 control layers; ``--lite``: the 3-layer lite one) with random bf16 weights (no download);
the prompt is a random 2560-wide embedding, the VAE the tiny one (its cost cancels). Goal (issue 31): ours no
slower than diffusers; the peak memory added by the ControlNet is printed (CUDA).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def build(full_size: bool, lite: bool, device: str, dtype, folder: Path):
    """(base ZImagePipeline, ControlNet file entry, prompt embeddings) on ``device``."""
    import torch
    from diffusers import ZImagePipeline

    from pipeline.models import controlnets, tiny
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file

    vae, scheduler = tiny.build_tiny_vae().to(device, dtype), tiny.build_tiny_scheduler()
    if full_size:
        from diffusers import ZImageControlNetModel, ZImageTransformer2DModel
        from safetensors.torch import save_file

        from cpu_projection import random_model
        from gpu_profiles import FULL_TRANSFORMER

        transformer = random_model(ZImageTransformer2DModel, FULL_TRANSFORMER, dtype).to(device)
        layers = 3 if lite else 15
        config = dict(controlnets.REAL_BASE, control_layers_places=controlnets.PLACES[layers],
                      control_refiner_layers_places=[0, 1], control_in_dim=33,
                      add_control_noise_refiner="control_noise_refiner")
        model = random_model(ZImageControlNetModel, config, dtype)
        path = folder / f"Z-Image-Turbo-Fun-Controlnet-Union-2.1{'-lite' if lite else ''}-random.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        embeds = [torch.randn(64, FULL_TRANSFORMER["cap_feat_dim"], dtype=dtype, device=device)]
    else:
        transformer = tiny.build_tiny_transformer().to(device, dtype)
        path = save_tiny_controlnet_file(folder / "Z-Image-Turbo-Fun-Controlnet-Union-tiny.safetensors", dtype="fp32")
        embeds = [torch.randn(64, tiny.TEXT_HIDDEN_SIZE, dtype=dtype, device=device)]
    base = ZImagePipeline(transformer=transformer, vae=vae, scheduler=scheduler, text_encoder=None, tokenizer=None)
    base.set_progress_bar_config(disable=True)
    return base, controlnets.resolve(str(path), "canny"), embeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-size", action="store_true")
    parser.add_argument("--lite", action="store_true", help="--full-size: the 3-layer lite ControlNet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32 (CPU default) or bf16 (GPU default)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU: 1 is steadier on a busy "
                                                                  "machine)")
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import ZImageControlNetPipeline
    from PIL import Image

    from pipeline.core.control import control_map
    from pipeline.engines.controlnet import ControlInput, ControlNetTask, load_controlnet

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if args.device != "cpu" else "fp32")]
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base, entry, embeds = build(args.full_size, args.lite, args.device, dtype, Path(tmp))
        source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), np.uint8))
        cmap = control_map(source, "canny", args.size, args.size).image
        if args.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        ours = ControlNetTask(base)
        ours.pipeline(entry)  # loaded once, as the engine keeps it
        for name in ("control_layers", "control_noise_refiner", "control_all_x_embedder"):
            getattr(ours.pipeline(entry).controlnet, name).to(args.device)
        theirs = ZImageControlNetPipeline(**base.components, controlnet=load_controlnet(entry, dtype).to(args.device))
        theirs.set_progress_bar_config(disable=True)
        common = dict(prompt_embeds=embeds, width=args.size, height=args.size, guidance_scale=0.0,
                      output_type="latent")

        def call(kind: str, steps: int):
            generator = [torch.Generator("cpu").manual_seed(0)]
            with torch.inference_mode():
                if kind == "none":
                    base(num_inference_steps=steps, generator=generator, **common)
                elif kind == "diffusers":
                    theirs(control_image=cmap, controlnet_conditioning_scale=0.75, num_inference_steps=steps,
                           generator=generator, **common)
                else:
                    end = 0.5 if kind == "ours window" else 1.0
                    ours(control=ControlInput(entry, (cmap,), 0.75, 0.0, end), num_inference_steps=steps,
                         generator=generator, **common)

        kinds = ["none", "diffusers", "ours", "ours window"]
        half = max(1, args.steps // 2)
        seconds = {(k, s): [] for k in kinds for s in (half, args.steps)}
        cpu = {(k, s): [] for k in kinds for s in (half, args.steps)}  # process CPU time: what a busy machine
        # disturbs least (other processes' work is not counted; this process's threads are)
        for k in kinds:  # warm-up
            call(k, half)
        for _ in range(args.repeats):
            for k in kinds:
                for s in (half, args.steps):
                    sync(args.device)
                    started, started_cpu = time.perf_counter(), time.process_time()
                    call(k, s)
                    sync(args.device)
                    seconds[k, s].append(time.perf_counter() - started)
                    cpu[k, s].append(time.process_time() - started_cpu)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        what = ("full-size" + (" lite" if args.lite else " Union")) if args.full_size else "tiny"
        print(f"{what} model, {args.device}, {str(dtype).replace('torch.', '')}, {args.size}², steps {half} and "
              f"{args.steps}, {args.repeats} repeats, load average {load:.1f}, {torch.get_num_threads()} threads")
        print(f"{'row':14} {'s/step median':>14} {'s/step min':>11} {'cpu s/step':>11} {'vs none':>8} "
              f"{'vs diffusers':>13}   (ratios of the CPU-time column on a CPU, of the median on a GPU)")
        per_step = {}

        def step(table, pick, k):
            return (pick(table[k, args.steps]) - pick(table[k, half])) / (args.steps - half)

        for k in kinds:
            median, low = step(seconds, statistics.median, k), step(seconds, min, k)
            cpu_step = step(cpu, statistics.median, k)
            per_step[k] = cpu_step if args.device == "cpu" else median
            print(f"{k:14} {median:14.4f} {low:11.4f} {cpu_step:11.4f} {per_step[k] / per_step['none']:8.2f}x "
                  f"{per_step[k] / per_step.get('diffusers', per_step[k]):12.2f}x")
        if args.device.startswith("cuda"):
            cn_bytes = sum(p.numel() * p.element_size() for p in load_controlnet(entry, dtype).parameters())
            print(f"peak allocated {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB; the ControlNet's weights "
                  f"{cn_bytes / 2**30:.2f} GiB (twice here: ours and diffusers')")


if __name__ == "__main__":
    main()
