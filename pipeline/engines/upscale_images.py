"""The pictures an upscaler takes and gives: load a file (EXIF orientation; missing, non-image, truncated
and decompression-bomb files refused in one sentence), split any Pillow mode into float colour and
alpha planes and rebuild that mode after (16-bit gray stays 16-bit), and resize to a scale of the
original (``--scale 2`` from an x4 model). Imports no torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from pipeline.core.image_files import opened_image


def load_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image, honouring its EXIF orientation; a missing, non-image, truncated or
    decompression-bomb file is one ``UserError`` sentence (``core.image_files``)."""
    with opened_image(Path(path)) as opened:
        opened.load()
        return ImageOps.exif_transpose(opened)


def resize_to(image: Image.Image, scale: float, *, base_size: tuple[int, int] | None = None) -> Image.Image:
    """Resize ``image`` to ``scale`` × ``base_size`` (default: its own size),
    with area averaging when shrinking and Lanczos when growing.  E.g. a 2×
    result from an x4 model: ``resize_to(out, 2, base_size=original.size)``."""
    base_w, base_h = base_size or image.size
    size = (max(1, round(base_w * scale)), max(1, round(base_h * scale)))
    if size == image.size:
        return image
    shrinking = size[0] <= image.width and size[1] <= image.height
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image.convert("I"), dtype=np.float32)
        resized = Image.fromarray(array).resize(size, Image.Resampling.BOX if shrinking
                                                          else Image.Resampling.LANCZOS)
        out = np.clip(np.rint(np.asarray(resized)), 0, 65535).astype(np.uint16)
        return Image.fromarray(out)
    return image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.LANCZOS)


def to_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Split an image into float32 colour (H, W, 3) and alpha (H, W) in [0, 1],
    plus the output mode to rebuild."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        gray = np.asarray(image.convert("I") if mode != "F" else image, dtype=np.float32)
        gray = np.clip(gray / (65535.0 if mode != "F" else 1.0), 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None, "I;16" if mode != "F" else "F"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "1":
        image = image.convert("L")
    elif mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.float32) / 255.0
    if image.mode in ("L", "LA"):
        gray = array if image.mode == "L" else array[..., 0]
        alpha = None if image.mode == "L" else array[..., 1]
        return np.repeat(gray[..., None], 3, axis=2), alpha, image.mode
    if image.mode == "RGBA":
        return array[..., :3], array[..., 3], "RGBA"
    return array, None, "RGB"


def from_planes(color: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """Rebuild an image of ``mode`` from float planes in [0, 1] (reuses ``color``)."""
    if mode in ("I;16", "F", "L", "LA"):
        gray = color.mean(axis=2)
        if mode == "I;16":
            return Image.fromarray(np.rint(gray * 65535).astype(np.uint16))
        if mode == "F":
            return Image.fromarray(gray.astype(np.float32))
        color = gray[..., None]
    if alpha is not None:
        color = np.concatenate([color, alpha[..., None]], axis=2)
    color *= 255
    np.rint(color, out=color)
    array = color.astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
