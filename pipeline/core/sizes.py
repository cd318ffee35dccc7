"""Picture sizes: the user's size specs ('512', '512x768', a preset) and the bounds Z-Image takes.
Imports no torch."""
from __future__ import annotations

import re

from .errors import UserError

MIN_SIDE, MAX_SIDE = 64, 4096
SIZE_MULTIPLE = 16  # Z-Image: VAE downsamples ×8, the transformer patches 2×2

SIZE_PRESETS = {
    "square": (512, 512),
    "portrait": (512, 768),
    "landscape": (768, 512),
    "tall": (512, 912),
    "wide": (912, 512),
}


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
