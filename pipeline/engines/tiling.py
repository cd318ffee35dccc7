"""Where the upscaler's windows go and how their outputs are put together.

The image is cut into windows of ``tile + overlap`` input pixels whose starts
are spread evenly, so neighbours share at least ``overlap`` pixels.  A window's
output is least right near its edges, where the model saw less of the picture
than it does untiled; so each window keeps only the inner part of the shared
band: its weight is 0 over the outer ``(1 - BLEND) / 2`` of the band, rises
linearly across the middle ``BLEND`` of it and is 1 beyond, and the weights of
neighbours sum to 1.  Every kept pixel thus has at least
``overlap * (1 - BLEND) / 2`` pixels of context on each side.  Sides on the
image border are never ramped: there the window sees exactly what the untiled
model sees.

Measured (realesrgan-x4plus fp32, 32-px tiles, 128² crops of 8 photographs
bundled with scikit-image that the tests had not used; PSNR against the
untiled output; benchmarks/README_upscale.md): on motorcycle_left the old
default (overlap 24, ramp over the middle half: 6 px of context at the first
weighted pixel) 35.2 dB; a cut in the middle with overlap 32 (16 px of
context) 39.1 dB, overlap 48 (24 px) 43.0 dB, overlap 64 (32 px) 53.0 dB.
Overlap 64 on all 8: 43.0-57.3 dB (grass, the worst, 43.0; 55.5 dB with
overlap 96 on a 160² crop), hence 96 for small tiles, where seams are dense.
x4plus sees far, so context matters more than blending.  The price is
arithmetic: at 256-px tiles a window computes (256 + 64)² for 256² kept pixels.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_OVERLAP = 64  # input pixels shared by neighbouring windows: 32 px of context on each side
SMALL_TILE_OVERLAP = 96  # tiles under SMALL_TILE: seams are dense, so 48 px of context
SMALL_TILE = 128
BLEND = 0.0  # fraction of the shared band over which neighbours cross-fade (0 = cut in the middle)


def default_overlap(tile: int) -> int:
    """The overlap for ``tile`` when none is given: more context for small, seam-dense tiles."""
    return SMALL_TILE_OVERLAP if 0 < tile < SMALL_TILE else DEFAULT_OVERLAP


def tile_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Window size and evenly spread window starts covering ``length`` pixels
    with cores of ``tile`` and at least ``overlap`` shared pixels."""
    window = tile + overlap
    if length <= window:
        return length, [0]
    count = math.ceil((length - overlap) / tile)
    return window, [round(i * (length - window) / (count - 1)) for i in range(count)]


def band_weights(size: int, scale: int, left: int, right: int, blend: float = BLEND) -> np.ndarray:
    """1-D weights over a window's ``size * scale`` output pixels, given the
    bands of ``left``/``right`` input pixels it shares with its neighbours
    (0 = image border)."""
    p = (np.arange(size * scale, dtype=np.float64) + 0.5) / scale  # output pixel centres, in input pixels
    weights = np.ones_like(p)
    for band, distance in ((left, p), (right, size - p)):
        if not band:
            continue
        width = band * blend
        start = (band - width) / 2
        if width > 0:
            weights *= np.clip((distance - start) / width, 0, 1)
        else:
            weights *= distance >= band / 2
    return weights


def axis_plan(length: int, tile: int, overlap: int, scale: int) -> list[tuple[int, np.ndarray]]:
    """(start, output weights) of each window along one axis."""
    window, starts = tile_starts(length, tile, overlap)
    plan = []
    for i, start in enumerate(starts):
        left = starts[i - 1] + window - start if i > 0 else 0
        right = start + window - starts[i + 1] if i + 1 < len(starts) else 0
        plan.append((start, band_weights(window, scale, left, right)))
    return plan


def window_count(width: int, height: int, tile: int, overlap: int) -> int:
    """How many windows an image of ``width`` × ``height`` is cut into (tile 0: one)."""
    if tile == 0:
        return 1
    return len(tile_starts(height, tile, overlap)[1]) * len(tile_starts(width, tile, overlap)[1])


def window_pixels(width: int, height: int, tile: int, overlap: int) -> int:
    """Input pixels the model computes for an image, windows' overlaps included."""
    if tile == 0:
        return width * height
    win_h, starts_h = tile_starts(height, tile, overlap)
    win_w, starts_w = tile_starts(width, tile, overlap)
    return win_h * len(starts_h) * win_w * len(starts_w)


# ------------------------------------------------------------------ detail (diffusion) tiles
# ``upscale --detail`` re-draws the super-resolved canvas with the diffusion model over tiles of at
# most ``tile`` output pixels.  Tiles sit on the latent grid (multiples of ALIGN px), neighbours share
# at least about ``overlap`` px, and the shared band is cross-faded linearly over its whole width
# (both sides denoised the same canvas noise there, so neither is better: ``detail_weights``).
ALIGN = 16  # Z-Image: the VAE downsamples x8 and the transformer patches 2x2


def detail_overlap(tile: int) -> int:
    """Output pixels neighbouring diffusion tiles share by default: an eighth of the tile (128 at 1024),
    at least 32, at most a quarter of it, on the grid."""
    return max(ALIGN, min(tile // 4, max(32, tile // 8)) // ALIGN * ALIGN)


def detail_starts(length: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """Window length and starts (multiples of ALIGN) covering ``length`` (a multiple of ALIGN)."""
    window = min(length, tile // ALIGN * ALIGN)
    if window >= length:
        return length, [0]
    count = math.ceil((length - overlap) / (window - overlap))
    # the smallest equal windows that still share ``overlap`` (2048 px in tiles of 1024: three of 768)
    window = min(window, math.ceil((length + (count - 1) * overlap) / count / ALIGN) * ALIGN)
    step = (length - window) / (count - 1)
    return window, [int(round(i * step / ALIGN)) * ALIGN for i in range(count)]


def detail_tiles(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of each diffusion tile over a ``width`` x ``height`` canvas (multiples of ALIGN)."""
    win_w, xs = detail_starts(width, tile, overlap)
    win_h, ys = detail_starts(height, tile, overlap)
    return [(x, y, win_w, win_h) for y in ys for x in xs]


def detail_weights(rect: tuple[int, int, int, int], width: int, height: int,
                   tiles: list[tuple[int, int, int, int]], blend: float = 1.0) -> np.ndarray:
    """(h, w) float32 weights of one tile: 1 inside, a linear ramp from 0 at the tile's edge across the band
    each side shares with a neighbour, 1 up to a canvas border (``blend=0``: a cut in the middle of the band,
    for comparison)."""
    x, y, w, h = rect
    weights = []
    for start, size, length, axis in ((x, w, width, 0), (y, h, height, 1)):
        others = sorted({t[axis] for t in tiles})
        i = others.index(start)
        left = others[i - 1] + size - start if i > 0 else 0
        right = start + size - others[i + 1] if i + 1 < len(others) else 0
        weights.append(band_weights(size, 1, left, right, blend=blend))
    return np.outer(weights[1], weights[0]).astype(np.float32)


def padded(size: int) -> int:
    """``size`` rounded up to the latent grid (the canvas is padded with its edge pixels, then cropped)."""
    return -(-size // ALIGN) * ALIGN


def detail_rects(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the diffusion tiles of a ``width`` x ``height`` output, clipped to the picture."""
    return [(x, y, min(w, width - x), min(h, height - y))
            for x, y, w, h in detail_tiles(padded(width), padded(height), tile, overlap)]
