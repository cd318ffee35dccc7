"""What a LoRA costs: reading it, switching it, and each denoising step, unfused (our hooks) against fused.

    python benchmarks/lora_overhead.py                       # tiny model, CPU (the numbers in the README)
    python benchmarks/lora_overhead.py --full-size --device cuda --rank 32 --size 1024   # GPU (prepared)

Rows (medians over --repeats after one warm-up; the baseline, no LoRA, is measured in the same run,
interleaved with the others so a busy machine slows all rows alike; the minimum too, which a loaded
machine disturbs least):

    read      read + convert (diffusers' Z-Image conversion) + check one LoRA file (first use of a file)
    switch    LoRA A on -> LoRA B on (both read before): what the engine does between two batches
    off       LoRA on -> none
    step      one transformer call (one denoising step) at --size: none, unfused 1 LoRA, unfused 2 LoRAs,
              and fused (W + B·A merged into the weights, no hooks: the cost floor of any LoRA method)

``--full-size`` builds Z-Image-Turbo's real transformer shape (dim 3840, 30 layers; random bf16 weights,
no download) and a random rank-``--rank`` LoRA on every attention and feed-forward layer of its blocks
(kohya layout, alpha = rank). Goal (issue 23): step overhead ≤ 5 %, switch ≤ 1 s.
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

PARTS = ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0", "feed_forward.w1",
         "feed_forward.w2", "feed_forward.w3")


def build_transformer(full_size: bool, device: str, dtype):
    import torch

    if full_size:
        from cpu_projection import random_model
        from diffusers import ZImageTransformer2DModel
        from gpu_profiles import FULL_TRANSFORMER

        return random_model(ZImageTransformer2DModel, FULL_TRANSFORMER, dtype).to(device)
    from pipeline.models.tiny import build_tiny_transformer

    return build_tiny_transformer().to(device, dtype).eval()


def write_random_lora(path: Path, transformer, rank: int, seed: int) -> Path:
    """A kohya-layout LoRA (lora_unet_<module>.lora_down/up + alpha) on every block's attention and FF layer."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in transformer.named_modules():
        if not name.endswith(PARTS) or not hasattr(module, "in_features"):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"] = (torch.randn(rank, module.in_features, generator=generator) * 0.01).to(
            torch.bfloat16)
        state[f"{key}.lora_up.weight"] = (torch.randn(module.out_features, rank, generator=generator) * 0.01).to(
            torch.bfloat16)
        state[f"{key}.alpha"] = torch.tensor(float(rank))
    save_file(state, str(path))
    return path


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def main() -> None:
    import torch

    from pipeline.models.loras import digests
    from pipeline.engines.lora_weights import LoraSet, merge_by_hand
    from pipeline.core.jobs import LoraUse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true", help="Z-Image-Turbo's transformer shape (GPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["fp32", "bf16"], help="[default: fp32 tiny, bf16 full]")
    parser.add_argument("--rank", type=int, default=None, help="[default: 4 tiny, 32 full]")
    parser.add_argument("--size", type=int, default=512, help="picture side in pixels")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype or ("bf16" if args.full_size else "fp32")]
    rank = args.rank or (32 if args.full_size else 4)

    transformer = build_transformer(args.full_size, args.device, dtype)
    config = transformer.config
    latent = torch.randn(config.in_channels, 1, args.size // 8, args.size // 8, dtype=dtype, device=args.device)
    caption = torch.randn(64, config.cap_feat_dim, dtype=dtype, device=args.device)
    t = torch.tensor([0.5], dtype=dtype, device=args.device)

    def step():
        with torch.inference_mode():
            transformer([latent], t, [caption])

    with tempfile.TemporaryDirectory() as folder:
        files = [write_random_lora(Path(folder) / f"lora{i}.safetensors", transformer, rank, i) for i in range(2)]
        size_mib = files[0].stat().st_size / 2**20
        shas = [digests(f)[0] for f in files]
        paths = dict(zip(shas, files))
        loras = LoraSet(transformer, args.device, dtype)
        a, b = (LoraUse(shas[0], 1.0),), (LoraUse(shas[1], 1.0),)
        loras.check(b, paths)  # the first read imports diffusers' conversion: not counted
        reads = []
        for _ in range(3):
            loras._adapters.pop(shas[0], None)
            reads.append(timed(lambda: loras.check(a, paths), args.device))
        read = statistics.median(reads)
        switches, offs = [], []
        for _ in range(max(3, args.repeats // 2)):
            loras.activate(a, paths)
            switches.append(timed(lambda: loras.activate(b, paths), args.device))
            offs.append(timed(lambda: loras.activate((), paths), args.device))

        modes = {"none": (), "unfused, 1 LoRA": a, "unfused, 2 LoRAs": a + (LoraUse(shas[1], 0.5),)}
        times: dict[str, list[float]] = {name: [] for name in list(modes) + ["fused, 1 LoRA"]}
        for name, uses in modes.items():  # warm-up
            loras.activate(uses, paths)
            step()
        for _ in range(args.repeats):
            for name, uses in modes.items():
                loras.activate(uses, paths)
                times[name].append(timed(step, args.device))
            loras.activate((), paths)
            merge_by_hand(transformer, files[0], 1.0)  # fused: W + B·A in the weights, no hooks
            times["fused, 1 LoRA"].append(timed(step, args.device))
            merge_by_hand(transformer, files[0], -1.0)

    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else \
        f"CPU, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    shape = "full-size Z-Image-Turbo transformer (random weights)" if args.full_size else "tiny-random transformer"
    print(f"{shape}, {str(dtype).removeprefix('torch.')}, {args.size}x{args.size}, rank {rank} "
          f"({size_mib:.1f} MiB per LoRA file), {where}")
    print(f"read + convert + check one LoRA: {read * 1e3:9.1f} ms")
    print(f"switch LoRA A -> LoRA B:         {statistics.median(switches) * 1e3:9.1f} ms")
    print(f"LoRA -> none:                    {statistics.median(offs) * 1e3:9.1f} ms")
    base = statistics.median(times["none"])
    low = min(times["none"])
    print(f"{'one step (transformer call)':32} {'median ms':>10} {'vs none':>8} {'min ms':>9} {'vs none':>8}")
    for name, values in times.items():
        median, least = statistics.median(values), min(values)
        print(f"{name:32} {median * 1e3:10.2f} {100 * (median / base - 1):+7.1f}% {least * 1e3:9.2f} "
              f"{100 * (least / low - 1):+7.1f}%")


if __name__ == "__main__":
    main()
