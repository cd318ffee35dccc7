"""LoRA files for the tiny model, built in code in the three layouts the loader reads."""
from __future__ import annotations

from pathlib import Path

TARGETS = [f"layers.{i}.{part}" for i in range(2) for part in
           ("attention.to_q", "attention.to_k", "attention.to_v", "attention.to_out.0", "feed_forward.w1",
            "feed_forward.w2", "feed_forward.w3")] + ["all_final_layer.2-1.linear"]
# The tiny model's blocks barely move its pictures (their gates start near 0); its final layer does.
LAYOUTS = ("diffusers", "comfyui", "kohya")


def lora_tensors(rank: int = 4, seed: int = 0, scale: float = 0.2, targets=TARGETS) -> dict:
    """{module: (A rank×in, B out×rank)} for the tiny transformer's layers (dim 64, feed-forward 170)."""
    import torch

    from pipeline.models.tiny import build_tiny_transformer

    shapes = {name: (m.in_features, m.out_features) for name, m in build_tiny_transformer().named_modules()
              if name in targets}
    generator = torch.Generator().manual_seed(seed)
    return {name: (torch.randn(rank, fan_in, generator=generator) * scale,
                   torch.randn(fan_out, rank, generator=generator) * scale)
            for name, (fan_in, fan_out) in shapes.items()}


def _kohya_name(module: str) -> str:
    return "lora_unet_" + module.replace(".", "_")


def write_lora(path: Path, layout: str, tensors: dict, alpha: float | None = None, metadata: dict | None = None) -> Path:
    """Save ``tensors`` as a .safetensors LoRA in ``layout``: diffusers (``transformer.X.lora_A/B``, no
    alpha), comfyui (``diffusion_model.X.lora_down/up`` + ``alpha``; ``to_out.0`` as ComfyUI's ``out``),
    kohya (``lora_unet_X_with_underscores.lora_down/up`` + ``alpha``)."""
    import torch
    from safetensors.torch import save_file

    state = {}
    for module, (down, up) in tensors.items():
        rank = down.shape[0]
        if layout == "diffusers":
            state[f"transformer.{module}.lora_A.weight"] = down.contiguous()
            state[f"transformer.{module}.lora_B.weight"] = up.contiguous()
            continue
        name = (f"diffusion_model.{module.replace('to_out.0', 'out')}" if layout == "comfyui"
                else _kohya_name(module))
        state[f"{name}.lora_down.weight"] = down.contiguous()
        state[f"{name}.lora_up.weight"] = up.contiguous()
        state[f"{name}.alpha"] = torch.tensor(float(alpha if alpha is not None else rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


def scale_of(layout: str, tensors: dict, alpha: float | None) -> float:
    """alpha / rank as the layout applies it (the diffusers layout has no alpha: 1)."""
    rank = next(iter(tensors.values()))[0].shape[0]
    return 1.0 if layout == "diffusers" or alpha is None else alpha / rank
