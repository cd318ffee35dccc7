"""Jobs: frozen values that fully determine an output picture, and their keys.

Also the parsers for the user's seed specs and sizes. Imports no torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

from .errors import UserError

MAX_SEED = 2**64 - 1
MAX_SEEDS_PER_SPEC = 100_000
MIN_SIDE, MAX_SIDE = 64, 4096
SIZE_MULTIPLE = 16  # Z-Image: VAE downsamples ×8, the transformer patches 2×2

SIZE_PRESETS = {
    "square": (512, 512),
    "portrait": (512, 768),
    "landscape": (768, 512),
    "tall": (512, 912),
    "wide": (912, 512),
}


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Job:
    """Base of all jobs. Subclasses list every field that changes the output pixels."""

    kind = "job"
    version = 1  # bump in a subclass when its computation changes

    def fields(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def key(self) -> str:
        payload = {"kind": self.kind, "version": self.version, **self.fields()}
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version, **self.fields()}


@dataclass(frozen=True)
class RenderJob(Job):
    """Text-to-image with Z-Image: everything that determines the picture."""

    kind = "explore"
    model: str  # model fingerprint
    prompt: str
    negative: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    dtype: str

    def batch_group(self) -> tuple:
        """Jobs with equal groups can be denoised together in one batch."""
        return (self.model, self.width, self.height, self.steps, self.guidance, self.dtype)


@dataclass(frozen=True)
class RefineJob(RenderJob):
    """Re-render of a picked candidate at a larger size."""

    kind = "refine"
    mode: str = "hires"  # "hires" (img2img from the parent) or "rerender" (txt2img)
    strength: float = 0.0
    parent: str = ""  # digest of the parent image (hires only)
    enlarge: str = "lanczos"  # how the parent is enlarged before img2img

    def batch_group(self) -> tuple:
        return super().batch_group() + (self.mode, self.strength)


@dataclass(frozen=True)
class UpscaleJob(Job):
    """Super-resolution of one input image."""

    kind = "upscale"
    version = 2  # 2: windows keep only the inner part of shared bands; A1111 postprocessing/extras chunks
    input: str  # sha256 of the input image file
    weights: str  # sha256 of the upscaler weights file
    scale: float  # output size / input size
    tile: int  # input tile size; 0 = whole image, -1 = chosen from free memory
    overlap: int  # -1 = default
    precision: str  # concrete: fp32, bf16 or fp16

    def batch_group(self) -> tuple:
        return (self.weights, self.tile, self.overlap, self.precision)


def render_fields(*, model, prompt, negative, width, height, steps, guidance, seed, dtype) -> dict:
    """Normalise render parameters so equal pictures get equal keys.

    The negative prompt only matters when classifier-free guidance is on (guidance > 0),
    so it is dropped from the key otherwise.
    """
    guidance = float(guidance)
    return dict(
        model=model,
        prompt=prompt,
        negative=negative if guidance > 0 else "",
        width=int(width),
        height=int(height),
        steps=int(steps),
        guidance=guidance,
        seed=int(seed),
        dtype=dtype,
    )


# ---------------------------------------------------------------- seed specs

_SEED_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(spec: str | int | list) -> list[int]:
    """Parse '1,2,10-20' (ranges inclusive) into a list of distinct seeds, in order."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        items = [str(spec)]
    elif isinstance(spec, (list, tuple, range)):
        items = [str(s) for s in spec]
    elif isinstance(spec, str):
        items = spec.split(",")
    else:
        raise UserError(f"seeds must be a list like 1,2,10-20, not {type(spec).__name__}")
    seeds: list[int] = []
    seen: set[int] = set()
    for item in items:
        text = item.strip()
        if not text:
            raise UserError(f"empty item in seed list {spec!r}: use a form like 1,2,10-20")
        if text.startswith("-") or text.startswith("−"):
            raise UserError(f"seed {text!r} is negative: seeds are whole numbers from 0 to {MAX_SEED}")
        match = _SEED_ITEM.match(text)
        if not match:
            raise UserError(f"cannot read seed {text!r}: use whole numbers and ranges like 1,2,10-20")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise UserError(f"seed range {text!r} runs backwards: write it as {last}-{first}")
        if last > MAX_SEED:
            raise UserError(f"seed {last} is too large: seeds go from 0 to {MAX_SEED}")
        if last - first + 1 + len(seeds) > MAX_SEEDS_PER_SPEC:
            raise UserError(f"seed list {spec!r} has more than {MAX_SEEDS_PER_SPEC} seeds")
        for seed in range(first, last + 1):
            if seed not in seen:
                seen.add(seed)
                seeds.append(seed)
    if not seeds:
        raise UserError("no seeds given: use a form like 1,2,10-20")
    return seeds


def seeds_from_count(count: int, base: int) -> list[int]:
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    if count > MAX_SEEDS_PER_SPEC:
        raise UserError(f"--count {count} is more than {MAX_SEEDS_PER_SPEC} candidates")
    if base < 0 or base + count - 1 > MAX_SEED:
        raise UserError(f"base seed {base} is out of range: seeds go from 0 to {MAX_SEED}")
    return list(range(base, base + count))


def seed_ranges(seeds: list[int], sep: str = ", ") -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts: list[str] = []
    start = prev = None
    for seed in seeds:
        if start is not None and seed == prev + 1:
            prev = seed
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = seed
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    return sep.join(parts)


# ---------------------------------------------------------------- sizes


def _nearest_multiple(value: int) -> int:
    return max(SIZE_MULTIPLE, int(round(value / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def parse_size(text: str | int | tuple) -> tuple[int, int]:
    """'512' → (512, 512); '512x768' → (512, 768); presets by name. Returns (width, height)."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        width, height = (int(v) for v in text)
    else:
        raw = str(text).strip().lower()
        if raw in SIZE_PRESETS:
            return SIZE_PRESETS[raw]
        match = re.fullmatch(r"(\d{1,6})(?:\s*[x×*,]\s*(\d{1,6}))?", raw)
        if not match:
            presets = ", ".join(SIZE_PRESETS)
            raise UserError(f"cannot read size {text!r}: use 512, WIDTHxHEIGHT like 512x768, or one of {presets}")
        width = int(match.group(1))
        height = int(match.group(2)) if match.group(2) else width
    check_size(width, height)
    return width, height


def check_size(width: int, height: int) -> None:
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise UserError(f"size {width}x{height} is out of range: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        near = f"{_nearest_multiple(width)}x{_nearest_multiple(height)}"
        raise UserError(f"size {width}x{height} is not a multiple of {SIZE_MULTIPLE} on each side: try {near}")
