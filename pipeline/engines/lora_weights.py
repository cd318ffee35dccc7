"""LoRA weights on the Z-Image transformer: read, convert, check, apply. Torch lives here.

Reading: ``.safetensors`` only (``models/loras.py`` refuses pickles before we get here). The layouts
are converted by diffusers' own Z-Image conversion (``ZImageLoraLoaderMixin.lora_state_dict``):
diffusers/PEFT (``transformer.<module>.lora_A/B``), ComfyUI/ai-toolkit (``diffusion_model.<module>.
lora_A/B`` or ``lora_down/up`` + ``alpha``) and Kohya (``lora_unet_<module_with_underscores>.
lora_down/up`` + ``alpha``); the conversion folds ``alpha / rank`` into the two matrices.

Applying: not through peft. Each targeted layer gets a forward hook that adds
``x @ A.T @ B.T`` (the LoRAs of one layer concatenated, each B scaled by its weight), so

- the base weights are never touched: switching LoRAs removes and adds hooks (no reload, and with
  ``--weights-dtype int8`` nothing is re-quantized: the hook adds to the ``Int8Linear``'s output,
  a layer peft cannot wrap);
- it works the same under every memory profile: the LoRA matrices (megabytes) stay on the device
  while group offload streams the base weights block by block;
- ``--compile``: dynamo traces the hooks of the blocks it compiles; a switch of LoRAs resets the
  compiled code (the next render compiles again), since traced graphs may keep the old matrices.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import UserError

log = logging.getLogger("pipeline")

TEXT_ENCODER_PREFIXES = ("text_encoder.", "text_encoders.", "lora_te", "te.", "te1.", "te2.", "cond_stage_model.",
                         "conditioner.", "text_model.")
# (pattern in the keys, the model such a LoRA is made for), tried in order
ARCHITECTURES = (
    (r"lora_te2_|text_encoder_2\.|conditioner\.embedders\.1", "SDXL"),
    (r"double_blocks|single_blocks|single_transformer_blocks", "Flux"),
    (r"joint_blocks|context_block\.", "Stable Diffusion 3"),
    (r"img_mlp|txt_mlp|img_mod|txt_mod", "Qwen-Image"),
    (r"down_blocks|up_blocks|mid_block|input_blocks|output_blocks|middle_block", "Stable Diffusion 1.x/2.x or SDXL"),
    (r"blocks\.\d+\.(self_attn|cross_attn|ffn)\.", "Wan"),
)


@dataclass
class Adapter:
    """One LoRA file as the transformer's layers take it: module name -> (A: rank×in, B: out×rank)."""

    name: str
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]


def _targets(transformer) -> dict[str, nn.Module]:
    from .quantize import Int8Linear

    return {name: module for name, module in transformer.named_modules() if isinstance(module, (nn.Linear, Int8Linear))}


def guess_architecture(keys, metadata: dict | None = None) -> str | None:
    meta = metadata or {}
    for field in ("modelspec.architecture", "ss_base_model_version"):
        value = meta.get(field)
        if isinstance(value, str) and value and "z-image" not in value.lower() and "zimage" not in value.lower():
            return value
    text = "\n".join(keys)
    for pattern, name in ARCHITECTURES:
        if re.search(pattern, text):
            return name
    return None


def read_adapter(path: Path, transformer) -> Adapter:
    """The LoRA in ``path`` converted and checked against ``transformer``; a LoRA that matches none of its
    layers is a UserError; a partial match and text-encoder keys are warnings (with the counts)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"cannot read LoRA {path}: {str(err).splitlines()[0]}") from None
    original_keys = list(state)
    text_keys = [k for k in state if k.startswith(TEXT_ENCODER_PREFIXES)]
    state = {k: v for k, v in state.items() if k not in set(text_keys)}
    converted, others = _convert(state)
    _peft_alpha(converted, metadata)
    targets = _targets(transformer)
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    unmatched = 0
    for module, (down, up) in converted.items():
        target = targets.get(module)
        ok = (target is not None and down.ndim == 2 and up.ndim == 2 and down.shape[0] == up.shape[1]
              and down.shape[1] == target.in_features and up.shape[0] == target.out_features)
        if ok:
            layers[module] = (down, up)
        else:
            unmatched += 1
    unmatched += others
    if not layers:
        made_for = guess_architecture(original_keys, metadata)
        if text_keys and not converted:
            raise UserError(f"LoRA {path.name} holds only text-encoder weights, which are not applied; it changes "
                            f"nothing on Z-Image")
        why = f"it seems made for {made_for}" if made_for else "it was made for another model"
        raise UserError(f"LoRA {path.name} matches no layer of Z-Image's transformer ({why}); use a Z-Image LoRA")
    if unmatched:
        rest = "the other one is not applied" if unmatched == 1 else f"the other {unmatched} are not applied"
        log.warning("LoRA %s: %d of its %d layers match Z-Image's transformer; %s",
                    path.name, len(layers), len(layers) + unmatched, rest)
    if text_keys:
        log.warning("LoRA %s also holds %d text-encoder weights; they are not applied (only the transformer's are)",
                    path.name, len(text_keys))
    return Adapter(path.stem, layers)


def _pair_key(key: str) -> tuple[str, str] | None:
    for suffix, which in ((".lora_A.weight", "A"), (".lora_B.weight", "B")):
        if key.endswith(suffix):
            name = key[: -len(suffix)]
            return (name.removeprefix("transformer."), which)
    return None


def _peft_alpha(converted: dict, metadata: dict) -> None:
    """A diffusers/PEFT file keeps ``lora_alpha`` and ``r`` in its ``lora_adapter_metadata`` (as
    diffusers saves it): fold alpha / r into B, as peft scales the layer."""
    import json

    try:
        config = json.loads(metadata.get("lora_adapter_metadata", "{}"))
    except ValueError:
        return
    if not isinstance(config, dict):
        return
    alpha = config.get("lora_alpha", config.get("transformer.lora_alpha"))
    rank = config.get("r", config.get("transformer.r"))
    if not isinstance(alpha, (int, float)) or not isinstance(rank, (int, float)) or not rank or alpha == rank:
        return
    for name, (down, up) in converted.items():
        converted[name] = (down, up * (alpha / rank))


def _convert(state: dict) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], int]:
    """(module name -> (A, B) with alpha/rank folded in, by diffusers' Z-Image conversion; how many other
    entries there were: layer kinds this loader does not apply, such as LoKr)."""
    if not state:
        return {}, 0
    from diffusers import ZImagePipeline

    try:
        converted = ZImagePipeline.lora_state_dict(dict(state))
    except Exception as err:  # noqa: BLE001 - a foreign layout may break the conversion: then nothing matches
        log.info("diffusers could not convert the LoRA (%s); reading its keys as they are", err)
        converted = state
    halves: dict[str, dict[str, torch.Tensor]] = {}
    others = set()
    for key, tensor in converted.items():
        pair = _pair_key(key)
        if pair is not None:
            halves.setdefault(pair[0], {})[pair[1]] = tensor
        elif not key.endswith(".alpha"):
            others.add(key.rsplit(".", 2)[0])
    pairs = {name: (h["A"], h["B"]) for name, h in halves.items() if "A" in h and "B" in h}
    return pairs, len(others) + sum(1 for h in halves.values() if len(h) == 1)


DOWN, UP = "lora_down", "lora_up"  # the non-persistent buffers a targeted layer holds while a LoRA is on


def _add_lora(module, args, output):
    """The forward hook of a targeted layer: output + x @ A.T @ B.T, all of its LoRAs at once.

    A and B are the layer's own (non-persistent) buffers, so they follow the layer when a profile moves
    it (balanced), and stay on the device while group offload streams the base weights (low)."""
    x = args[0]
    down, up = getattr(module, DOWN), getattr(module, UP)
    if down.device != x.device:
        down, up = down.to(x.device), up.to(x.device)
    delta = F.linear(F.linear(x.to(down.dtype), down), up)
    return output + delta.to(output.dtype)


class LoraSet:
    """The LoRAs on a transformer, switched without touching its weights.

    ``activate(uses, paths)``: ``uses`` is a job's ``loras`` (sha256 + weight), ``paths`` maps a sha256 to
    its file. Files are read once per engine (kept on the CPU, ``cache`` of them at most).
    """

    def __init__(self, transformer, device: str, dtype: torch.dtype, cache: int = 8, compiled: bool = False):
        self.transformer = transformer
        self.compiled = compiled
        self.device = torch.device(device)
        self.dtype = dtype
        self.cache_size = cache
        self._adapters: dict[str, Adapter] = {}
        self._handles: list = []
        self.active: tuple = ()

    def adapter(self, sha256: str, path: Path) -> Adapter:
        if sha256 not in self._adapters:
            if len(self._adapters) >= self.cache_size:
                self._adapters.pop(next(iter(self._adapters)))
            self._adapters[sha256] = read_adapter(Path(path), self.transformer)
        return self._adapters[sha256]

    def check(self, uses, paths: dict) -> None:
        """Read and check every LoRA of ``uses`` (so a bad one fails before the first picture)."""
        for use in uses or ():
            self.adapter(use.sha256, _path(paths, use.sha256))

    def activate(self, uses, paths: dict) -> None:
        uses = tuple(uses or ())
        if uses == self.active:
            return
        self.clear()
        if self.compiled:
            # Compiled blocks may hold on to the matrices they were traced with, and a new tensor can
            # reuse a freed one's id, passing dynamo's guards: start the compiled code afresh.
            torch._dynamo.reset()
        per_layer: dict[str, list] = {}
        for use in uses:
            adapter = self.adapter(use.sha256, _path(paths, use.sha256))
            for name, (down, up) in adapter.layers.items():
                per_layer.setdefault(name, []).append((down, up, use.weight))
        for name, entries in per_layer.items():
            down = torch.cat([d.float() for d, _, _ in entries], dim=0)
            up = torch.cat([u.float() * w for _, u, w in entries], dim=1)
            layer = self.transformer.get_submodule(name)
            layer.register_buffer(DOWN, down.to(self.device, self.dtype), persistent=False)
            layer.register_buffer(UP, up.to(self.device, self.dtype), persistent=False)
            self._handles.append((layer, layer.register_forward_hook(_add_lora)))
        self.active = uses
        if uses:
            log.info("LoRAs on: %s", ", ".join(f"{u.sha256[:12]}×{u.weight:g}" for u in uses))

    def clear(self) -> None:
        for layer, handle in self._handles:
            handle.remove()
            for name in (DOWN, UP):
                layer._buffers.pop(name, None)
        self._handles = []
        self.active = ()


def _path(paths: dict, sha256: str) -> Path:
    path = paths.get(sha256)
    if path is None:
        raise UserError(f"the LoRA with sha256 {sha256[:12]}… is not known to this session; give it with --lora")
    return Path(path)


def merge_by_hand(transformer, path: Path, weight: float) -> None:
    """W += weight · B · A on every layer the LoRA targets (plain ``nn.Linear`` only): the reference the
    tests compare the hooks with, and the "fused" case of the benchmark."""
    adapter = read_adapter(Path(path), transformer)
    with torch.no_grad():
        for name, (down, up) in adapter.layers.items():
            layer = transformer.get_submodule(name)
            layer.weight += (weight * up.float() @ down.float()).to(layer.weight.dtype)
