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

from ..core.errors import UserError

log = logging.getLogger("pipeline")

GiB = 1024**3
PROFILES = ("full", "balanced", "low", "minimal")
MEMORY_CHOICES = ("auto",) + PROFILES
WEIGHTS_DTYPES = ("int8", "fp8")
# The next lower profile, suggested after an out-of-memory error.
LOWER = {"full": "balanced", "balanced": "low", "low": "minimal"}
VAE_TILE = 1024  # the Flux VAE's sample_size: tiled decoding cuts a picture into tiles this large
TILING_PIXELS = 1024 * 1024  # VAE tiling on low profiles from this size up


@dataclass(frozen=True)
class ModelSizes:
    """What the estimates need to know about a model (bytes of the weights as stored)."""

    transformer: int
    text_encoder: int
    vae: int
    transformer_blocks: int  # repeated blocks the transformer streams one at a time
    act_per_token: int  # transformer activation bytes per token (peak inside one block)
    vae_act_per_pixel: int  # VAE decode activation bytes per output pixel
    vae_act_base: int = 0  # VAE decode bytes independent of the size
    caption_tokens: int = 128
    weights: str = "bf16"  # how the transformer's weights are stored: bf16/fp16/fp32, int8, fp8

    @property
    def eight_bit(self) -> bool:
        return self.weights in ("int8", "fp8")

    def with_weights(self, weights: str) -> "ModelSizes":
        """These sizes with the transformer stored in ``weights`` (int8/fp8: ~half of bf16)."""
        if weights == self.weights:
            return self
        factor = EIGHT_BIT_FACTOR if weights in ("int8", "fp8") else 1.0
        base = self.transformer / (EIGHT_BIT_FACTOR if self.eight_bit else 1.0)
        return ModelSizes(**{**self.__dict__, "transformer": int(base * factor), "weights": weights})


# Peaks measured on an H200 (benchmarks/results/gpu_profiles_h200_quick.txt, torch.cuda.max_memory_allocated,
# GiB; the prompt is short: 32 caption tokens). The estimates below are fitted to these, and
# tests/test_memory.py checks that every estimate lies within 10 % above its measurement.
MEASURED_PEAK_GIB = {  # (profile, size, batch): GiB
    ("full", 512, 1): 12.36, ("full", 512, 4): 12.37, ("full", 1024, 1): 14.15, ("full", 1024, 4): 14.17,
    ("low", 512, 1): 1.01, ("low", 512, 4): 1.37, ("low", 1024, 1): 2.57, ("low", 1024, 4): 2.77,
}
MEASURED_CAPTION_TOKENS = 32
# Seconds per image on the same H200, same run: what the log quotes when streaming is chosen.
MEASURED_SECONDS_H200 = {
    ("full", 512, 1): 0.397, ("full", 512, 4): 0.315, ("full", 1024, 1): 1.296, ("full", 1024, 4): 1.255,
    ("low", 512, 1): 1.953, ("low", 512, 4): 0.522, ("low", 1024, 1): 2.049, ("low", 1024, 4): 1.348,
}
# int8 weights + bf16 scales per output row + the bf16 layers kept (embedders, norms): 5.75 of 11.46 GiB.
EIGHT_BIT_FACTOR = 0.5012

# Z-Image-Turbo in bf16: 6.15 B transformer parameters, Qwen3-4B, Flux VAE (84 M).
# Fitted to MEASURED_PEAK_GIB: low's batch 4 − batch 1 at 512² gives 122 KB per token inside a block
# (125 KB kept); full's 512² and 1024² peaks (the VAE decode, batch-independent thanks to sliced
# decoding) give 0.15 GiB + 2450 B per output pixel; low's 512² batch 1 peak leaves 0.73 GiB for the
# blocks it keeps on the device while streaming (the running one, the prefetched one, ~2.2 blocks).
ZIMAGE_TURBO = ModelSizes(
    transformer=int(6.15e9 * 2), text_encoder=int(4.02e9 * 2), vae=int(84e6 * 2),
    transformer_blocks=34, act_per_token=125_000, vae_act_per_pixel=2_450, vae_act_base=int(0.15 * GiB),
)
LOW_RESIDENT_BLOCKS = 2.2  # fitted (see above)
MINIMAL_RESIDENT_BLOCKS = 0.5  # not measured: leaf-level offload keeps a few matrices


def _tokens(width: int, height: int, sizes: ModelSizes) -> int:
    return (width // 16) * (height // 16) + sizes.caption_tokens


def vae_activation(width: int, height: int, batch: int, sizes: ModelSizes, *, tiled: bool, sliced: bool) -> int:
    pixels = min(width * height, VAE_TILE * VAE_TILE) if tiled else width * height
    return sizes.vae_act_base + pixels * sizes.vae_act_per_pixel * (1 if sliced else batch)


def needed_bytes(profile: str, width: int, height: int, batch: int, sizes: ModelSizes = ZIMAGE_TURBO) -> int:
    """Estimated peak device bytes of the denoise + decode phase under ``profile``.

    The transformer runs first (its weights on the device as the profile keeps them, plus activations),
    then the VAE decodes; under ``full`` the transformer stays on the device while the VAE decodes.
    """
    act = _tokens(width, height, sizes) * sizes.act_per_token * batch
    block = sizes.transformer // max(1, sizes.transformer_blocks)
    tiled = profile in ("low", "minimal") and width * height >= TILING_PIXELS
    vae_act = vae_activation(width, height, batch, sizes, tiled=tiled, sliced=batch > 1)
    if profile == "full":
        return sizes.transformer + sizes.vae + max(act, vae_act)
    if profile == "balanced":  # one whole component at a time
        return max(sizes.transformer + act, sizes.vae + vae_act)
    if profile == "low":
        return sizes.vae + max(int(LOW_RESIDENT_BLOCKS * block) + act, vae_act)
    if profile == "minimal":
        return sizes.vae + max(int(MINIMAL_RESIDENT_BLOCKS * block) + act, vae_act)
    raise ValueError(f"unknown memory profile {profile!r}")


def reserve_bytes(total_bytes: int) -> int:
    """Head room kept free: allocator fragmentation, cuBLAS workspaces, other programs."""
    return int(0.5 * GiB + 0.06 * total_bytes)


def choose_profile(free_bytes: int, total_bytes: int, width: int, height: int, batch: int,
                   sizes: ModelSizes = ZIMAGE_TURBO) -> str:
    """The fastest profile whose estimated peak fits in ``free_bytes`` (``minimal`` if none does)."""
    return choose_profile_with_reason(free_bytes, total_bytes, width, height, batch, sizes)[0]


def choose_profile_with_reason(free_bytes: int, total_bytes: int, width: int, height: int, batch: int,
                               sizes: ModelSizes = ZIMAGE_TURBO) -> tuple[str, str]:
    """(profile, why): the fastest profile that fits, and one line saying why, for the log.

    ``balanced`` moves the whole transformer onto the device, so it is never chosen when the
    transformer alone (with its activations) does not fit. Quantization is never chosen here: it
    changes pixels and so the pictures' keys, which are fixed before any device is looked at; when
    streaming is chosen for bf16 weights, the reason says what ``--weights-dtype int8`` would give.
    """
    budget = free_bytes - reserve_bytes(total_bytes)
    usable = f"{budget / GiB:.1f} GiB usable ({free_bytes / GiB:.1f} GiB free less {reserve_bytes(total_bytes) / GiB:.1f} head room)"
    weights = f"the {sizes.weights} transformer ({sizes.transformer / GiB:.1f} GiB)"
    chosen = "minimal"
    for profile in PROFILES:
        if profile == "balanced" and sizes.transformer + _tokens(width, height, sizes) * sizes.act_per_token * batch > budget:
            continue
        if needed_bytes(profile, width, height, batch, sizes) <= budget:
            chosen = profile
            break
    need = needed_bytes(chosen, width, height, batch, sizes)
    if chosen == "full":
        why = f"{weights} stays on the device: needs ~{need / GiB:.1f} GiB, {usable}"
    else:
        full = needed_bytes("full", width, height, batch, sizes)
        why = (f"{weights} does not stay on the device (~{full / GiB:.1f} GiB needed, {usable}); "
               f"'{chosen}' needs ~{need / GiB:.1f} GiB")
    if chosen in ("low", "minimal") and not sizes.eight_bit:
        eight = sizes.with_weights("int8")
        if needed_bytes("full", width, height, batch, eight) <= budget:
            why += "; " + eight_bit_hint(width, height, batch)
    return chosen, why


def eight_bit_hint(width: int, height: int, batch: int) -> str:
    """What keeping an 8-bit transformer resident would give instead of streaming it."""
    size = 512 if width * height <= 640 * 640 else 1024
    nearest = 1 if batch < 3 else 4
    full, low = MEASURED_SECONDS_H200[("full", size, nearest)], MEASURED_SECONDS_H200[("low", size, nearest)]
    return (f"--weights-dtype int8 would keep the transformer on the device ({EIGHT_BIT_FACTOR * 11.46:.1f} GiB): "
            f"resident ran {low / full:.1f}x faster than streaming at {size}² batch {nearest} on an H200 "
            f"({full:.3f} vs {low:.3f} s/img, bf16; int8's own speed is not measured yet); "
            "pictures then differ slightly, so it is not chosen by itself")


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
    weights_dtype: str | None = None  # "int8" / "fp8": 8-bit transformer weights, compute in the session dtype
    compile: bool = False
    attention: str | None = None
    text_encoder: str | None = None  # single-file Qwen3-4B (.safetensors, ComfyUI's keys or transformers')
    vae: str | None = None  # single-file VAE (.safetensors, the Flux ae layout or diffusers')

    # single-file components: option name -> accepted suffixes (see models/single_file.py)
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
            raise UserError(f"--weights-dtype {self.weights_dtype} cannot be combined with a GGUF --transformer "
                            "(it is quantized already)")

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


def sizes_of(pipe, text_encoder_bytes: int | None = None, weights: str = "bf16") -> ModelSizes:
    """Sizes of a loaded pipeline's components, scaling the activation figures by its width.
    ``weights``: how the transformer is stored (``int8``/``fp8`` or the compute dtype's name)."""
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
        vae_act_base=int(ZIMAGE_TURBO.vae_act_base * vae_channels / 128), weights=weights,
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
