"""Write a LoRA that fits the tiny-random model, to try the LoRA path offline (the pictures are noise).

    python scripts/make_tiny_lora.py                         # weights/loras/tiny-ink.safetensors
    python scripts/make_tiny_lora.py PATH [--seed N] [--rank R] [--scale S]
    pipeline explore "a red fox in snow" --model tiny-random --size 128 --seeds 1-4 --lora tiny-ink:0.8

The file is in the diffusers layout (``transformer.<module>.lora_A/B.weight``), random low-rank
matrices for each attention and feed-forward layer and the final layer of the tiny transformer.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_lora(rank: int = 4, seed: int = 0, scale: float = 0.2) -> dict:
    """{key: tensor} of a LoRA for every Linear layer of the tiny transformer's blocks and final layer."""
    import torch

    from pipeline.models.tiny import build_tiny_transformer

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, module in build_tiny_transformer().named_modules():
        if not isinstance(module, torch.nn.Linear) or not (name.startswith("layers.") or "final_layer" in name):
            continue
        down = torch.randn(rank, module.in_features, generator=generator) * scale
        up = torch.randn(module.out_features, rank, generator=generator) * scale
        state[f"transformer.{name}.lora_A.weight"] = down.contiguous()
        state[f"transformer.{name}.lora_B.weight"] = up.contiguous()
    return state


def main(argv=None) -> int:
    from pipeline.models.upscaler_weights import weights_dir

    parser = argparse.ArgumentParser(description="Write a LoRA that fits the tiny-random model.")
    parser.add_argument("path", nargs="?", type=Path, default=None,
                        help="where to write it [default: weights/loras/tiny-ink.safetensors]")
    parser.add_argument("--seed", type=int, default=0, help="random seed of its matrices [0]")
    parser.add_argument("--rank", type=int, default=4, help="its rank [4]")
    parser.add_argument("--scale", type=float, default=0.2, help="size of its random values [0.2]")
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    path = args.path or weights_dir() / "loras" / "tiny-ink.safetensors"
    if path.suffix != ".safetensors":
        parser.error(f"{path}: a LoRA file ends in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tiny_lora(args.rank, args.seed, args.scale), str(path))
    print(f"{path}: use it with --model tiny-random --lora {path.stem if path.parent.name == 'loras' else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
