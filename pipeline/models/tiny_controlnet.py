"""A tiny ``ZImageControlNetModel`` (the real diffusers class, random seeded weights) that fits tiny-random.

Its layout is the Union/Tile 2.1 one (``add_control_noise_refiner="control_noise_refiner"``, 33 control
channels: the control image's latent padded with zeros, as diffusers' pipeline does), shrunk to tiny-random's
width. Saved two ways, as the tests need: a diffusers folder (``config.json`` +
``diffusion_pytorch_model.safetensors``) and one ``.safetensors`` file in the key layout alibaba-pai ships
(``control_layers.N.…``, ``control_all_x_embedder.2-1.…``, ``control_noise_refiner.N.…`` — diffusers' own
module names, which ``ZImageControlNetModel.from_single_file`` reads as they are).

ControlNets start with zero-initialised projections (``before_proj``/``after_proj``), which would make a
random one add nothing; here they are drawn like the other layers, scaled down, so control changes the picture.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .tiny import TINY_TRANSFORMER_CONFIG, _quiet_diffusers

SEED = 1004
PROJECTION_SCALE = 2.0
TINY_CONTROLNET_CONFIG: dict[str, Any] = {
    "control_layers_places": [0, 1],  # tiny-random has 2 layers
    "control_refiner_layers_places": [0],  # and 1 noise refiner layer
    "control_in_dim": 33,
    "add_control_noise_refiner": "control_noise_refiner",
    "all_patch_size": list(TINY_TRANSFORMER_CONFIG["all_patch_size"]),
    "all_f_patch_size": list(TINY_TRANSFORMER_CONFIG["all_f_patch_size"]),
    "dim": TINY_TRANSFORMER_CONFIG["dim"],
    "n_refiner_layers": 1,
    "n_heads": TINY_TRANSFORMER_CONFIG["n_heads"],
    "n_kv_heads": TINY_TRANSFORMER_CONFIG["n_kv_heads"],
    "norm_eps": TINY_TRANSFORMER_CONFIG["norm_eps"],
    "qk_norm": TINY_TRANSFORMER_CONFIG["qk_norm"],
}


def build_tiny_controlnet(seed: int = SEED):
    """The tiny ControlNet in float32; equal seeds give bit-identical weights in any process."""
    import torch
    from diffusers import ZImageControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ZImageControlNetModel(**TINY_CONTROLNET_CONFIG)
        with torch.no_grad():
            for name, module in model.named_modules():
                if name.endswith(("before_proj", "after_proj")):
                    torch.nn.init.normal_(module.weight, std=PROJECTION_SCALE / module.weight.shape[1] ** 0.5)
                    torch.nn.init.normal_(module.bias, std=0.01)
    return model.eval()


def save_tiny_controlnet_folder(folder: Path, seed: int = SEED) -> Path:
    """A diffusers folder (what ``ZImageControlNetModel.from_pretrained`` reads)."""
    with _quiet_diffusers():
        build_tiny_controlnet(seed).save_pretrained(str(folder), safe_serialization=True)
    return Path(folder)


def save_tiny_controlnet_file(path: Path, seed: int = SEED, dtype: str = "bf16", name: str = "") -> Path:
    """One ``.safetensors`` in alibaba-pai's layout, in bf16 as they ship it (``dtype="fp32"`` keeps float32)."""
    import torch
    from safetensors.torch import save_file

    cast = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    state = {k: v.to(cast).contiguous() for k, v in build_tiny_controlnet(seed).state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", **({"name": name} if name else {})})
    return path


def config_json() -> str:
    return json.dumps({"_class_name": "ZImageControlNetModel", **TINY_CONTROLNET_CONFIG})
