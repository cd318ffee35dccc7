"""8-bit transformer weights: int8 weight-only, one scale per output channel, compute in bf16/fp32.

Why this scheme (measured in ``benchmarks/quant_error.py``, numbers in the README):
- per-output-channel symmetric int8 keeps ~8 bits of every weight row; float8 e4m3 (layerwise
  casting) keeps 3 mantissa bits, and its per-layer error is several times larger;
- the matmul runs on ``weight.to(compute dtype)`` and the scale multiplies the *output*
  (``y = (x @ q.T) * s``), the same arithmetic as torchao's ``Int8WeightOnlyConfig`` in eager
  mode, without a dependency that must match the torch build (the GPU image carries wheels);
- the weights are plain int8 buffers, so block-level group offload streams them too (half the
  bytes of bf16) and ``safetensors`` can hold them.

Layers the model declares precision-sensitive (``_skip_layerwise_casting_patterns``: the timestep
and caption embedders) stay in the compute dtype, as diffusers does for float8.

``load_int8_transformer`` reads a diffusers transformer folder (safetensors shards) tensor by
tensor with plain reads (no mmap) and quantizes each weight as it arrives, so the process never
holds the bf16 transformer: peak RAM is the int8 model plus one tensor.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

METHOD = "int8"  # what enters the model fingerprint and the metadata ("weights:int8")
_ROWS = 256
_TRIM_EVERY = 16 * 1024**2  # bytes read between two returns of freed heap pages to the OS


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights and one scale per output channel (in the compute dtype)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, compute_dtype, device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", torch.empty(out_features, in_features, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.empty(out_features, dtype=compute_dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=compute_dtype, device=device),
                                 requires_grad=False) if bias else None

    def set_weight(self, weight: torch.Tensor) -> None:
        """Quantize a float weight (out, in) into this layer."""
        self.weight, self.weight_scale = quantize_weight(weight, self.weight_scale.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight.to(x.dtype)) * self.weight_scale.to(x.dtype)
        return y + self.bias.to(x.dtype) if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def quantize_weight(weight: torch.Tensor, compute_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight, scale) with ``weight ≈ q * scale[:, None]``. The scale is rounded to the compute
    dtype *before* quantizing, so the only error left is the rounding of ``q``."""
    w = weight.detach()
    scale = (w.abs().amax(dim=1).float() / 127.0).clamp_min(1e-12).to(compute_dtype)
    q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
    for start in range(0, w.shape[0], _ROWS):  # in slices: a few MB of float32 temporaries, not 4 bytes a weight
        rows = slice(start, start + _ROWS)
        q[rows] = torch.round(w[rows].float() / scale[rows].float()[:, None]).clamp_(-127, 127)
    return q, scale


def skip_patterns(model) -> tuple[str, ...]:
    return tuple(getattr(model, "_skip_layerwise_casting_patterns", None) or ())


def _quantized_names(model, skip: tuple[str, ...]) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not any(re.search(p, name) for p in skip)]


def _swap(model, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def quantize_int8_(model, compute_dtype=None, skip: tuple[str, ...] | None = None):
    """Replace ``model``'s ``nn.Linear`` layers in place by ``Int8Linear`` (except ``skip`` patterns)."""
    skip = skip_patterns(model) if skip is None else skip
    for name in _quantized_names(model, skip):
        linear = model.get_submodule(name)
        dtype = compute_dtype or linear.weight.dtype
        new = Int8Linear(linear.in_features, linear.out_features, linear.bias is not None, dtype,
                         device=linear.weight.device)
        new.set_weight(linear.weight)
        if linear.bias is not None:
            new.bias.data.copy_(linear.bias.detach().to(dtype))
        _swap(model, name, new)
        del linear
    _return_freed_memory()
    return model


def is_quantized(model) -> bool:
    return any(isinstance(m, Int8Linear) for m in model.modules())


# ---------------------------------------------------------------- loading without a bf16 copy

_SAFETENSORS_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
                       "I8": torch.int8, "U8": torch.uint8, "I32": torch.int32, "I64": torch.int64,
                       "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}


def read_safetensors(path: Path):
    """Yield (name, tensor) from a .safetensors file with plain reads: one tensor in RAM at a time,
    no mapping of the file (a mapped shard counts in the process's RSS while it is read)."""
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        base = 8 + size
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            buffer = torch.empty(end - start, dtype=torch.uint8)
            f.seek(base + start)
            f.readinto(memoryview(buffer.numpy()))
            yield name, buffer.view(_SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])


def _return_freed_memory() -> None:
    """Hand the heap's freed pages back to the OS (glibc keeps the read buffers of tensors smaller than
    its mmap threshold, which would count in RSS as if a second copy were held)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        pass


def weight_files(folder: Path) -> list[Path]:
    index = sorted(folder.glob("*.safetensors.index.json"))
    if index:
        shards = sorted(set(json.loads(index[0].read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    return files


def load_transformer_streaming(folder: str | Path, compute_dtype, *, int8: bool, work_device: str | None = None):
    """A ``ZImageTransformer2DModel`` (on the CPU) from a diffusers folder, one tensor at a time, each cast
    to ``compute_dtype`` (or quantized to int8 when ``int8``) as it is read. ``work_device`` (a GPU):
    quantize there, seconds instead of a minute of CPU for the 6 B transformer."""
    from diffusers import ZImageTransformer2DModel

    folder = Path(folder)
    config = ZImageTransformer2DModel.load_config(folder)
    with torch.device("meta"):
        model = ZImageTransformer2DModel.from_config(config)
    int8_layers = set(_quantized_names(model, skip_patterns(model))) if int8 else set()
    for name in int8_layers:
        linear = model.get_submodule(name)
        _swap(model, name, Int8Linear(linear.in_features, linear.out_features, linear.bias is not None,
                                      compute_dtype, device="meta"))
    read = 0
    for path in weight_files(folder):
        for key, tensor in read_safetensors(path):
            module_name, _, attr = key.rpartition(".")
            module = model.get_submodule(module_name)
            if module_name in int8_layers and attr == "weight":
                module.set_weight(tensor.to(work_device) if work_device else tensor)
                if work_device:
                    module.weight, module.weight_scale = module.weight.cpu(), module.weight_scale.cpu()
            elif attr in module._parameters:
                module._parameters[attr] = nn.Parameter(tensor.to(compute_dtype), requires_grad=False)
            elif attr in module._buffers:
                module._buffers[attr] = tensor.to(compute_dtype)
            else:
                raise KeyError(f"{path.name} holds {key}, which the Z-Image transformer does not have")
            read += tensor.numel() * tensor.element_size()
            del tensor
            if read > _TRIM_EVERY:
                _return_freed_memory()
                read = 0
    _return_freed_memory()
    missing = sorted({n.removesuffix("_scale") for n, t in list(model.named_parameters()) + list(model.named_buffers())
                      if t.is_meta})  # an int8 layer's weight_scale comes from its weight
    if missing:
        raise KeyError(f"the weights in {folder} lack {len(missing)} tensors, e.g. {missing[0]}")
    return model.eval()

