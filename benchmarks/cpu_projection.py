"""What the real Z-Image-Turbo would cost on this CPU, projected from measured per-layer costs.

The full model needs ~20 GiB of RAM and minutes per picture on a CPU, too much to run here; its
cost is almost all in 30 + 4 identical transformer layers. So this builds the full-size
transformer (dim 3840, 30 heads) with only 1 and then 2 main layers (random weights, bf16 or
fp32), times one denoising step of each at the given size, and projects:

    step(30 layers) = step(1) + 30 * (step(2) - step(1))   (29 more main layers + the second refiner pair)
    picture         = 8 steps + one VAE decode (measured, full-size Flux VAE)

    python benchmarks/cpu_projection.py [--size 512] [--dtype bf16] [--repeats 3]

The projection is labelled as such in the README; medians over repeats after one warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_profiles import FULL_TRANSFORMER, FULL_VAE  # noqa: E402

TEXT_TOKENS = 64  # a prompt of a sentence or two; the padding is stripped before the transformer


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def random_model(cls, config: dict, dtype):
    """``cls(**config)`` with N(0, 0.02) weights drawn directly in ``dtype`` (the default init of a
    billion fp32 weights takes longer here than the measurement)."""
    import torch
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls(**config)
    model = model.to_empty(device="cpu").to(dtype)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.normal_(0.0, 0.02)
    return model.eval()


def step_seconds(n_layers: int, size: int, dtype, repeats: int) -> float:
    import torch
    from diffusers import ZImageTransformer2DModel

    config = dict(FULL_TRANSFORMER, n_layers=n_layers, n_refiner_layers=1)
    model = random_model(ZImageTransformer2DModel, config, dtype)
    latent = torch.randn(16, 1, size // 8, size // 8, dtype=dtype)
    caption = torch.randn(TEXT_TOKENS, FULL_TRANSFORMER["cap_feat_dim"], dtype=dtype)
    t = torch.tensor([0.5], dtype=dtype)

    def run():
        with torch.inference_mode():
            model([latent], t, [caption])

    seconds = median_time(run, repeats)
    del model
    return seconds


def vae_decode_seconds(size: int, dtype, repeats: int) -> float:
    import torch
    from diffusers import AutoencoderKL

    vae = random_model(AutoencoderKL, FULL_VAE, dtype)
    latent = torch.randn(1, 16, size // 8, size // 8, dtype=dtype)

    def run():
        with torch.inference_mode():
            vae.decode(latent)

    return median_time(run, repeats)


def matmul_seconds(dtype, repeats: int) -> float:
    """The baseline, measured in the same run: one bf16/fp32 matmul the size of a feed-forward
    projection at 512² (1088 tokens × 3840 → 10240). A quiet or a faster CPU scales every time
    above by its own baseline."""
    import torch

    a = torch.randn(1088, 3840, dtype=dtype)
    b = torch.randn(3840, 10240, dtype=dtype)
    return median_time(lambda: a @ b, max(repeats, 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-vae", action="store_true", help="skip the VAE decode")
    args = parser.parse_args()
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    baseline = matmul_seconds(dtype, args.repeats)
    one = step_seconds(1, args.size, dtype, args.repeats)
    two = step_seconds(2, args.size, dtype, args.repeats)
    per_layer = two - one
    step = one + 30 * per_layer  # 29 more main layers + the second noise/context refiner pair (~1 layer)
    vae = 0.0 if args.no_vae else vae_decode_seconds(args.size, dtype, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, {args.size}², "
          f"{TEXT_TOKENS} text tokens")
    print(f"measured: step with 1 layer {one:.2f} s, with 2 layers {two:.2f} s -> {per_layer:.2f} s per layer; "
          f"VAE decode {vae:.2f} s")
    picture = 8 * step + vae
    flops = 2 * 1088 * 3840 * 10240
    print(f"baseline: one 1088x3840 @ 3840x10240 matmul {baseline * 1e3:.1f} ms ({flops / baseline / 1e9:.0f} GFLOP/s)")
    print(f"projected: one full step {step:.1f} s; one picture (8 steps + decode) {picture:.0f} s "
          f"= {picture / baseline:,.0f} baseline matmuls")


if __name__ == "__main__":
    main()
