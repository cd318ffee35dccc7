"""Memory profiles: which one fits (pure arithmetic, no torch) and how to apply it to a pipeline.

Profiles, from fastest to most frugal:

    full      every component stays on the device
    balanced  a whole component moves to the device only while it runs (model offload)
    low       the transformer streams to the device one block at a time (block-level
              group offload with CUDA streams); the VAE stays; the text encoder is streamed too
    minimal   leaf-level group offload: only a few weight matrices on the device at a time

Thanks to phase separation (prompts are encoded and the text encoder is freed before the
transformer is placed), the text encoder is never resident together with the transformer,
so it does not enter the estimates of the denoising phase.

Everything above the ``# --- applying`` line imports no torch and is what the CLI's cheap
paths (and the tests) may use.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

log = logging.getLogger("pipeline")

GiB = 1024**3
PROFILES = ("full", "balanced", "low", "minimal")
MEMORY_CHOICES = ("auto",) + PROFILES
WEIGHTS_DTYPES = ("fp8",)
# The next lower profile, suggested after an out-of-memory error.
LOWER = {"full": "balanced", "balanced": "low", "low": "minimal"}
TILING_PIXELS = 1024 * 1024  # VAE tiling on low profiles from this size up


@dataclass(frozen=True)
class ModelSizes:
    """What the estimates need to know about a model (bytes at the compute dtype)."""

    transformer: int
    text_encoder: int
    vae: int
    transformer_blocks: int  # repeated blocks the transformer streams one at a time
    act_per_token: int  # transformer activation bytes per token (peak inside one block, with slack)
    vae_act_per_pixel: int  # VAE decode activation bytes per output pixel
    caption_tokens: int = 128


# Z-Image-Turbo in bf16: 6.15 B transformer parameters, Qwen3-4B, Flux VAE (84 M).
# Activation figures: dim 3840 and FFN 10240 give ~110 KB per token inside a block, ×1.5 slack;
# the Flux VAE decoder peaks near 3 KB per output pixel in bf16.
ZIMAGE_TURBO = ModelSizes(
    transformer=int(6.15e9 * 2), text_encoder=int(4.02e9 * 2), vae=int(84e6 * 2),
    transformer_blocks=34, act_per_token=160_000, vae_act_per_pixel=3_000,
)


def _tokens(width: int, height: int, sizes: ModelSizes) -> int:
    return (width // 16) * (height // 16) + sizes.caption_tokens


def vae_activation(width: int, height: int, batch: int, sizes: ModelSizes, *, tiled: bool, sliced: bool) -> int:
    pixels = min(width * height, 512 * 512) if tiled else width * height
    return pixels * sizes.vae_act_per_pixel * (1 if sliced else batch)


def needed_bytes(profile: str, width: int, height: int, batch: int, sizes: ModelSizes = ZIMAGE_TURBO) -> int:
    """Estimated peak device bytes of the denoise + decode phase under ``profile``."""
    act = _tokens(width, height, sizes) * sizes.act_per_token * batch
    block = sizes.transformer // max(1, sizes.transformer_blocks)
    tiled = profile in ("low", "minimal") and width * height >= TILING_PIXELS
    vae_act = vae_activation(width, height, batch, sizes, tiled=tiled, sliced=batch > 1)
    if profile == "full":
        return sizes.transformer + sizes.vae + max(act, vae_act)
    if profile == "balanced":
        return max(sizes.transformer + act, sizes.vae + vae_act)
    if profile == "low":  # the running block, the prefetched one, and the small non-block layers
        return 3 * block + sizes.vae + max(act, vae_act)
    if profile == "minimal":
        return block // 2 + sizes.vae + max(act, vae_act)
    raise ValueError(f"unknown memory profile {profile!r}")


def reserve_bytes(total_bytes: int) -> int:
    """Head room kept free: allocator fragmentation, cuBLAS workspaces, other programs."""
    return int(0.5 * GiB + 0.06 * total_bytes)


def choose_profile(free_bytes: int, total_bytes: int, width: int, height: int, batch: int,
                   sizes: ModelSizes = ZIMAGE_TURBO) -> str:
    """The fastest profile whose estimated peak fits in ``free_bytes`` (``minimal`` if none does)."""
    budget = free_bytes - reserve_bytes(total_bytes)
    for profile in PROFILES:
        if needed_bytes(profile, width, height, batch, sizes) <= budget:
            return profile
    return "minimal"


def choose_batch(free_bytes: int, total_bytes: int, width: int, height: int, profile: str,
                 sizes: ModelSizes = ZIMAGE_TURBO, limit: int = 8) -> int:
    """The largest batch (≤ ``limit``) whose estimated peak under ``profile`` fits; at least 1."""
    budget = free_bytes - reserve_bytes(total_bytes)
    best = 1
    for batch in range(1, limit + 1):
        if needed_bytes(profile, width, height, batch, sizes) <= budget:
            best = batch
    return best


def text_encoder_fits(free_bytes: int, total_bytes: int, sizes: ModelSizes = ZIMAGE_TURBO) -> bool:
    """Can the whole text encoder sit on the device while it encodes (else it is streamed)?"""
    return sizes.text_encoder + int(0.5 * GiB) <= free_bytes - reserve_bytes(total_bytes)


def lower_profile_hint(profile: str) -> str:
    lower = LOWER.get(profile)
    if lower:
        return f"try --memory {lower} (or a smaller --batch or --size)"
    return "try --batch 1 or a smaller --size"


# ---------------------------------------------------------------- engine options (torch-free)


@dataclass(frozen=True)
class EngineOptions:
    """Optional engine switches. Those that change pixels enter the model fingerprint."""

    transformer: str | None = None  # single-file .safetensors or .gguf checkpoint
    weights_dtype: str | None = None  # "fp8": float8 storage, compute in the session dtype
    compile: bool = False
    attention: str | None = None
    text_encoder: str | None = None  # single-file Qwen3-4B (.safetensors, ComfyUI's keys or transformers')
    vae: str | None = None  # single-file VAE (.safetensors, the Flux ae layout or diffusers')

    # single-file components: option name -> accepted suffixes (see engines/single_file.py)
    FILES = {"transformer": (".safetensors", ".gguf"), "text_encoder": (".safetensors",), "vae": (".safetensors",)}

    def __post_init__(self):
        for name, suffixes in self.FILES.items():
            value = getattr(self, name)
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            path = Path(value).expanduser()
            if not path.is_file():
                raise UserError(f"{flag} {value} is not a file")
            if path.suffix.lower() not in suffixes:
                raise UserError(f"{flag} takes a {' or '.join(suffixes)} file, not {path.name}")
            object.__setattr__(self, name, str(path.resolve()))
        if self.weights_dtype in ("", "auto", "none"):
            object.__setattr__(self, "weights_dtype", None)
        if self.weights_dtype is not None and self.weights_dtype not in WEIGHTS_DTYPES:
            raise UserError(f"--weights-dtype must be one of {', '.join(WEIGHTS_DTYPES)}, not {self.weights_dtype!r}")
        if self.weights_dtype and self.transformer and self.transformer.lower().endswith(".gguf"):
            raise UserError("--weights-dtype fp8 cannot be combined with a GGUF --transformer (it is quantized already)")

    def fingerprint_suffix(self) -> str:
        """What these options add to the model fingerprint (empty when they change no pixel)."""
        parts = []
        for name in self.FILES:
            if getattr(self, name):
                stat = Path(getattr(self, name)).stat()
                ident = f"{Path(getattr(self, name)).name}\0{stat.st_size}\0{stat.st_mtime_ns}"
                parts.append(f"{name}:{hashlib.sha256(ident.encode()).hexdigest()[:16]}")
        if self.weights_dtype:
            parts.append(f"weights:{self.weights_dtype}")
        return "".join(f"+{p}" for p in parts)

    def as_kwargs(self) -> dict:
        return {"transformer": self.transformer, "weights_dtype": self.weights_dtype, "compile": self.compile,
                "attention": self.attention, "text_encoder": self.text_encoder, "vae": self.vae}


# --- applying (torch from here on, imported inside the functions)


def device_memory(device: str) -> tuple[int, int]:
    """(free, total) bytes of a CUDA device (of the machine's RAM for the CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        import os

        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_AVPHYS_PAGES") * page, os.sysconf("SC_PHYS_PAGES") * page
    free, total = torch.cuda.mem_get_info(torch.device(device))
    return int(free), int(total)


def allocated_bytes(device: str) -> int:
    import torch

    return int(torch.cuda.memory_allocated(device)) if torch.device(device).type == "cuda" else 0


def module_bytes(module) -> int:
    if module is None:
        return 0
    return sum(p.numel() * p.element_size() for p in module.parameters()) + \
        sum(b.numel() * b.element_size() for b in module.buffers())


def sizes_of(pipe, text_encoder_bytes: int | None = None) -> ModelSizes:
    """Sizes of a loaded pipeline's components, scaling the activation figures by its width."""
    transformer = pipe.transformer
    dim = getattr(transformer.config, "dim", 3840)
    scale = dim / 3840
    blocks = sum(len(getattr(transformer, name, ()) or ()) for name in ("layers", "noise_refiner", "context_refiner"))
    vae_channels = max(getattr(pipe.vae.config, "block_out_channels", [128])[:1] or [128])
    return ModelSizes(
        transformer=module_bytes(transformer), text_encoder=text_encoder_bytes or ZIMAGE_TURBO.text_encoder,
        vae=module_bytes(pipe.vae), transformer_blocks=max(1, blocks),
        act_per_token=int(ZIMAGE_TURBO.act_per_token * scale) + 1,
        vae_act_per_pixel=int(ZIMAGE_TURBO.vae_act_per_pixel * vae_channels / 128) + 1,
    )


def group_offload(module, device: str, leaf: bool) -> None:
    """Stream ``module``'s weights to ``device`` block by block (or leaf by leaf), with CUDA streams."""
    import torch
    from diffusers.hooks import apply_group_offloading

    use_stream = torch.device(device).type == "cuda"
    if leaf:
        apply_group_offloading(module, onload_device=torch.device(device), offload_device=torch.device("cpu"),
                               offload_type="leaf_level", use_stream=use_stream)
    else:
        apply_group_offloading(module, onload_device=torch.device(device), offload_device=torch.device("cpu"),
                               offload_type="block_level", num_blocks_per_group=1, use_stream=use_stream)


def apply_profile(pipe, profile: str, device: str, width: int, height: int, batch: int) -> None:
    """Place a ``ZImagePipeline``'s transformer and VAE on ``device`` according to ``profile``.

    The text encoder is not handled here: it is loaded and placed only while prompts are encoded.
    """
    import torch

    if profile == "full":
        pipe.transformer.to(device)
        pipe.vae.to(device)
    elif profile == "balanced":
        pipe.enable_model_cpu_offload(device=torch.device(device))
    elif profile in ("low", "minimal"):
        group_offload(pipe.transformer, device, leaf=profile == "minimal")
        pipe.vae.to(device)
    else:
        raise ValueError(f"unknown memory profile {profile!r}")
    configure_vae(pipe, profile, width, height, batch)


def configure_vae(pipe, profile: str, width: int, height: int, batch: int) -> None:
    """Tiled decoding at ≥ 1024² on low profiles; sliced decoding of batches on any accelerator profile."""
    vae = pipe.vae
    if profile in ("low", "minimal") and width * height >= TILING_PIXELS:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    if batch > 1:
        vae.enable_slicing()


def unplace(pipe, profile: str) -> None:
    """Undo ``full`` or ``balanced`` (back to the CPU) so a lower profile can be applied."""
    if profile == "balanced":
        pipe.remove_all_hooks()
    pipe.transformer.to("cpu")
    pipe.vae.to("cpu")


def release_device_memory(device: str) -> None:
    """Give freed accelerator memory back. On the CPU reference counting already freed the
    tensors, and a full ``gc.collect()`` would cost ~0.3 s per prompt for nothing."""
    import gc

    import torch

    if torch.device(device).type == "cpu":
        return
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
