"""Peak host RAM while loading the transformer from disk (CPU; no GPU needed).

A random-weight ``ZImageTransformer2DModel`` with the real width (dim 3840, FFN 10240) and fewer
blocks (``--layers``; the real model has 30 + 2×2 and 11.5 GiB of bf16 weights) is saved once in the
Hugging Face layout (bf16 safetensors shards of ``--shard`` size, as the real repository has). Each
loader then runs in a fresh process, which reports its peak RSS above its RSS just before loading
(torch and diffusers already imported), as a multiple of the bf16 weights' size on disk:

    diffusers bf16       ZImageTransformer2DModel.from_pretrained (what ``--memory low`` loads today)
    diffusers + int8     the same, then quantized in place (a bf16 copy first)
    streaming bf16       pipeline.engines.quantize.load_transformer_streaming(int8=False)
    streaming int8       the same with int8=True (what ``--weights-dtype int8`` loads)

    python benchmarks/load_rss.py                  # 6 blocks ≈ 2.3 GB of bf16, ~2-4 min
    python benchmarks/load_rss.py --layers 1 --dim 1024 --shard 50MB   # seconds (the test's size)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOADERS = ("diffusers bf16", "diffusers + int8", "streaming bf16", "streaming int8")


def save_model(folder: Path, layers: int, refiners: int, dim: int, shard: str) -> int:
    """Save a random-weight transformer in bf16 shards; returns the bytes of its weights."""
    import torch
    from diffusers import ZImageTransformer2DModel

    from benchmarks.gpu_profiles import FULL_TRANSFORMER

    heads = dim // 128
    config = dict(FULL_TRANSFORMER, n_layers=layers, n_refiner_layers=refiners, dim=dim, n_heads=heads,
                  n_kv_heads=heads)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        torch.manual_seed(0)
        model = ZImageTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder, max_shard_size=shard)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(folder: str, loader: str) -> dict:
    """Load with ``loader`` in this process; peak RSS above the RSS before loading."""
    import gc

    import torch
    from diffusers import ZImageTransformer2DModel

    from pipeline.engines import quantize

    # one-time costs (lazy imports, the first kernels) are not the loader's: pay them before the baseline
    with torch.device("meta"):
        ZImageTransformer2DModel.from_config(ZImageTransformer2DModel.load_config(folder))
    quantize.quantize_weight(torch.randn(300, 64, dtype=torch.bfloat16), torch.bfloat16)
    torch.randn(64, 64).to(torch.bfloat16).float()
    gc.collect()
    baseline = rss_bytes()
    from benchmarks.gpu_cards import RssSampler

    sampler = RssSampler(interval=0.005)  # the peak during the load (ru_maxrss would include earlier peaks)
    sampler.__enter__()
    started = time.perf_counter()
    if loader.startswith("diffusers"):
        model = ZImageTransformer2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
        if loader.endswith("int8"):
            quantize.quantize_int8_(model, torch.bfloat16)
            gc.collect()
    else:
        model = quantize.load_transformer_streaming(folder, torch.bfloat16, int8=loader.endswith("int8"))
    seconds = time.perf_counter() - started
    sampler.__exit__(None, None, None)
    peak = sampler.peak
    held = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    return dict(loader=loader, peak_above=peak - baseline, after=rss_bytes() - baseline, held=held, seconds=seconds)


def measure(folder: Path, loader: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, __file__, "--child", str(folder), loader], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--refiners", type=int, default=1)
    parser.add_argument("--dim", type=int, default=3840)
    parser.add_argument("--shard", default="1GB", help="shard size as save_pretrained takes it [1GB]")
    parser.add_argument("--loaders", default=",".join(LOADERS))
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "LOADER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return None
    with tempfile.TemporaryDirectory(prefix="zimage-rss-") as tmp:
        folder = Path(tmp)
        weights = save_model(folder, args.layers, args.refiners, args.dim, args.shard)
        shards = sorted(p.name for p in folder.glob("*.safetensors"))
        print(f"transformer dim {args.dim}, {args.layers} + {args.refiners}+{args.refiners} blocks: "
              f"{weights / 1024**3:.2f} GiB of bf16 in {len(shards)} shard(s); peak RSS above the RSS before loading, "
              "as a multiple of that size\n")
        print(f"{'loader':<18} {'peak/weights':>12} {'after/weights':>14} {'held/weights':>13} {'seconds':>8}")
        rows = []
        for loader in args.loaders.split(","):
            row = measure(folder, loader)
            row.update(weights=weights)
            rows.append(row)
            print(f"{loader:<18} {row['peak_above'] / weights:>12.2f} {row['after'] / weights:>14.2f} "
                  f"{row['held'] / weights:>13.2f} {row['seconds']:>8.1f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
