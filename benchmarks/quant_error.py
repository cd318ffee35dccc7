"""How far 8-bit transformer weights move Z-Image's output (CPU; no GPU needed).

A random-weight ``ZImageTransformer2DModel`` with the real width (dim 3840, 30 heads, FFN 10240,
caption width 2560) but fewer blocks (``--layers``, ``--refiners``; the real model has 30 + 2×2)
is built in fp32, the reference. Each variant gets the same weights:

    bf16         bf16 weights, bf16 compute (the yardstick: what users get today)
    int8         pipeline.engines.quantize (per-output-channel int8, bf16 compute)
    int8+adaln   the same, keeping the adaLN modulation layers in bf16
    fp8          diffusers layerwise casting (float8 e4m3 storage, bf16 compute)
    torchao      torchao Int8WeightOnlyConfig (only when torchao imports), a cross-check

Per-block relative error ‖y − y_ref‖ / ‖y_ref‖ of every transformer block's output, on the
exact inputs the reference run gave the transformer at steps 1, 5 and 8 (noise, caption features
drawn like a text encoder's, Turbo's 8-step schedule); then the final latent after 8 steps, as a
PSNR over the reference latent's range, and the picture the shipped tiny VAE decodes from it
(pixel PSNR). Random weights have no outlier channels, which makes int8 look better than on
trained weights; the same holds for every variant, so the comparison is what counts.

    python benchmarks/quant_error.py               # ~3-6 min on 2 CPU cores, ~8 GB RAM
    python benchmarks/quant_error.py --layers 1 --refiners 1 --size 128   # quick
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RECORD_STEPS = (0, 4, 7)


def build_reference(layers: int, refiners: int):
    import torch
    from diffusers import ZImageTransformer2DModel

    from benchmarks.gpu_profiles import FULL_TRANSFORMER

    config = dict(FULL_TRANSFORMER, n_layers=layers, n_refiner_layers=refiners)
    torch.manual_seed(0)
    model = ZImageTransformer2DModel(**config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "norm" not in name:
                p.normal_(0, 0.02)  # LLM-like init (the default uniform one is much wider)
            elif "pad_token" in name:
                p.normal_(0, 0.5)
    return model, config


def normalise_velocity(model, caption, size):
    """Scale the final layer so the random model predicts unit-RMS velocities (a trained flow model's
    velocity, noise − image, has RMS ≈ 1.2); otherwise the latent barely moves from the noise."""
    import torch

    latent = torch.randn(16, 1, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = torch.stack(model([latent], torch.tensor([0.5]), [caption], return_dict=False)[0])
    with torch.no_grad():
        for layer in model.all_final_layer.values():
            layer.linear.weight.mul_(1.0 / float(out.pow(2).mean().sqrt()))
            layer.linear.bias.zero_()


def variant(name: str, reference, config):
    import torch
    from diffusers import ZImageTransformer2DModel

    from pipeline.engines import quantize

    with torch.device("meta"):
        model = ZImageTransformer2DModel(**config)
    model.load_state_dict({k: v.to(torch.bfloat16) for k, v in reference.state_dict().items()}, assign=True)
    model.eval()
    if name == "int8":
        quantize.quantize_int8_(model, torch.bfloat16)
    elif name == "int8+adaln":
        quantize.quantize_int8_(model, torch.bfloat16, skip=quantize.skip_patterns(model) + ("adaLN_modulation",))
    elif name == "fp8":
        model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    elif name == "torchao":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        skip = quantize.skip_patterns(model)
        quantize_(model, Int8WeightOnlyConfig(),
                  filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and not any(s in fqn for s in skip))
    return model


def blocks(model):
    return [(f"{group}.{i}", block) for group in ("noise_refiner", "context_refiner", "layers")
            for i, block in enumerate(getattr(model, group))]


def block_outputs(model, calls):
    """Every block's output for each recorded transformer call, as fp32 tensors."""
    import torch

    outputs = []
    for args, kwargs in calls:
        seen = {}
        hooks = [block.register_forward_hook(lambda m, a, out, name=name, seen=seen: seen.__setitem__(name, out.float()))
                 for name, block in blocks(model)]
        with torch.inference_mode():
            final = model(*args, **kwargs)
        for h in hooks:
            h.remove()
        seen["output"] = torch.stack([f.float() for f in final[0]])
        outputs.append(seen)
    return outputs


def cast_call(call, dtype):
    import torch

    def cast(x):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.to(dtype)
        if isinstance(x, (list, tuple)):
            return type(x)(cast(v) for v in x)
        return x

    args, kwargs = call
    return cast(args), {k: cast(v) for k, v in kwargs.items()}


def make_pipe(transformer):
    from diffusers import ZImagePipeline

    from pipeline.models import tiny

    pipe = ZImagePipeline(transformer=transformer, vae=tiny.build_tiny_vae().float(),
                          scheduler=tiny.build_tiny_scheduler(), text_encoder=None, tokenizer=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(transformer, caption, size, record=None):
    """Final latent after 8 steps (and, with ``record``, the transformer's inputs at RECORD_STEPS)."""
    import torch

    calls = []
    if record is not None:
        def pre(module, args, kwargs):
            calls.append(([[x.clone() for x in args[0]], args[1].clone(), [c.clone() for c in args[2]]], dict(kwargs)))
        handle = transformer.register_forward_pre_hook(pre, with_kwargs=True)
    pipe = make_pipe(transformer)
    with torch.inference_mode():
        latent = pipe(prompt_embeds=[caption.to(transformer.dtype)], width=size, height=size, num_inference_steps=8,
                      guidance_scale=0.0, generator=torch.Generator("cpu").manual_seed(1), output_type="latent").images
    if record is not None:
        handle.remove()
        record.extend(calls[i] for i in RECORD_STEPS if i < len(calls))
    return latent.float()


def decode(latent):
    import numpy as np
    import torch

    from pipeline.models import tiny

    vae = tiny.build_tiny_vae().float()
    with torch.inference_mode():
        pixels = vae.decode(latent / vae.config.scaling_factor + vae.config.shift_factor).sample
    return np.clip((pixels[0].permute(1, 2, 0).numpy() + 1) * 127.5, 0, 255).round()


def psnr(a, b, peak):
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="main blocks [4; the real model has 30]")
    parser.add_argument("--refiners", type=int, default=1, help="refiner blocks per stream [1; real: 2]")
    parser.add_argument("--size", type=int, default=256, help="picture size [256]")
    parser.add_argument("--variants", default="bf16,int8,int8+adaln,fp8,torchao")
    args = parser.parse_args(argv)

    import torch

    torch.manual_seed(0)
    started = time.perf_counter()
    reference, config = build_reference(args.layers, args.refiners)
    params = sum(p.numel() for p in reference.parameters())
    print(f"transformer: dim {config['dim']}, {args.layers} main + {args.refiners}+{args.refiners} refiner blocks, "
          f"{params / 1e9:.2f} B parameters (real: 30 + 2+2, 6.15 B); {args.size}², 8 steps; reference fp32; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    caption = torch.randn(77, config["cap_feat_dim"])  # like a text encoder's hidden states (~unit RMS)
    normalise_velocity(reference, caption, args.size)
    calls = []
    ref_latent = render(reference, caption, args.size, record=calls)
    ref_blocks = block_outputs(reference, calls)
    ref_pixels = decode(ref_latent)
    latent_range = float(ref_latent.max() - ref_latent.min())
    print(f"\n{'variant':<12} {'block err median':>16} {'block err max':>14} {'output err':>11} "
          f"{'latent PSNR':>12} {'pixel PSNR':>11}  weights")
    results = {}
    for name in args.variants.split(","):
        try:
            model = variant(name, reference, config)
        except ImportError as err:
            print(f"{name:<12} skipped: {err}")
            continue
        outs = block_outputs(model, [cast_call(c, torch.bfloat16) for c in calls])
        errors, final = [], []
        for ref, got in zip(ref_blocks, outs):
            for key in ref:
                err = float((got[key] - ref[key]).norm() / ref[key].norm())
                (final if key == "output" else errors).append(err)
        latent = render(model, caption, args.size)
        pixels = decode(latent)
        weight_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        row = dict(block_median=statistics.median(errors), block_max=max(errors), output=max(final),
                   latent_psnr=psnr(latent, ref_latent, latent_range), pixel_psnr=psnr(pixels, ref_pixels, 255.0),
                   gib=weight_bytes / 1024**3)
        results[name] = row
        print(f"{name:<12} {row['block_median']:>16.4f} {row['block_max']:>14.4f} {row['output']:>11.4f} "
              f"{row['latent_psnr']:>10.1f}dB {row['pixel_psnr']:>9.1f}dB  {row['gib']:.2f} GiB", flush=True)
        del model
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return results


if __name__ == "__main__":
    main()
