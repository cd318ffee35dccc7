"""Masks for inpaint and the detail pass: what is re-drawn, how it fades, where it is rendered. numpy + PIL
(and OpenCV's distance transform); imports no torch.

    mask     bool HxW, True = re-draw: white in a mask file, transparent in an RGBA picture's alpha
    weight   float32 HxW in [0, 1]: 1 on the mask, fading to 0 across ``blur`` px outside it, 0 beyond;
             where it is 0 the result is the parent's pixel, byte for byte
    region   one part to re-draw: its mask and the padding around it ("only masked" renders the box of
             the weight's support plus the padding, at the model's working size, and pastes it back)

Outpainting is the same thing on a larger canvas: the parent in its place, the new border as the mask.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

SIDES = ("left", "top", "right", "bottom")
ASPECT_TOLERANCE = 0.01  # a mask within 1 % of the picture's aspect is the same shape, resized
MULTIPLE = 16  # Z-Image renders sizes divisible by 16 (VAE factor 8 × patch 2)


@dataclass(frozen=True)
class Region:
    """A part of the picture to re-draw on its own: its mask and the padding (px) around its box."""

    mask: np.ndarray
    padding: int


def read_mask(source, size: tuple[int, int], name: str = "the mask") -> tuple[np.ndarray, list[str]]:
    """The re-draw mask (bool, picture-sized) from a mask file or image, and notes for the user (a resize).

    White (>= 128) is re-drawn; an image whose alpha has transparent pixels is read by its alpha instead
    (transparent, < 128, is re-drawn). Refused in one sentence: not an image, another aspect, empty."""
    if isinstance(source, Image.Image):
        image = source
        image.load()
    else:
        from .image_files import opened_image

        with opened_image(Path(source), name) as opened:
            opened.load()
            image = opened.copy()
    mask = _mask_of(image)
    width, height = size
    notes = []
    if mask.shape[::-1] != (width, height):
        mask_w, mask_h = mask.shape[1], mask.shape[0]
        if abs((mask_w / mask_h) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise UserError(f"{name} is {mask_w}x{mask_h} but the picture is {width}x{height}: a mask must have "
                            f"the picture's shape (only a size difference is resized)")
        scaled = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.NEAREST)
        mask = np.asarray(scaled) >= 128
        notes.append(f"{name} ({mask_w}x{mask_h}) was resized to the picture's {width}x{height}")
    if not mask.any():
        raise UserError(f"{name} has no white (or transparent) pixel: nothing to re-draw")
    return mask, notes


def _mask_of(image: Image.Image) -> np.ndarray:
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            return alpha < 128
    return np.asarray(image.convert("L")) >= 128


def feather(mask: np.ndarray, blur: int) -> np.ndarray:
    """The blend weight: 1 on the mask, a smooth fall to 0 across ``blur`` px outside it, 0 beyond."""
    if blur <= 0:
        return mask.astype(np.float32)
    import cv2

    outside = np.where(mask, 0, 1).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ramp = np.clip(1.0 - distance / float(blur), 0.0, 1.0).astype(np.float32)
    return ramp * ramp * (3 - 2 * ramp)  # smoothstep: no visible edge where the band starts or ends


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the True pixels, x1/y1 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_box(support: np.ndarray, padding: int) -> tuple[int, int, int, int]:
    """"Only masked": the box of the re-drawn pixels grown by ``padding`` on every side, inside the picture."""
    x0, y0, x1, y1 = bbox(support)
    height, width = support.shape
    return max(0, x0 - padding), max(0, y0 - padding), min(width, x1 + padding), min(height, y1 + padding)


def working_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size a ``width``×``height`` crop is rendered at: about ``side``² pixels in the crop's aspect,
    each side a multiple of 16."""
    scale = side / math.sqrt(width * height)
    return (max(MULTIPLE, round(width * scale / MULTIPLE) * MULTIPLE),
            max(MULTIPLE, round(height * scale / MULTIPLE) * MULTIPLE))


def padded_size(width: int, height: int) -> tuple[int, int]:
    """The picture's size rounded up to multiples of 16 (``whole`` renders that, edge pixels repeated)."""
    return -(-width // MULTIPLE) * MULTIPLE, -(-height // MULTIPLE) * MULTIPLE


def pad_edges(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` (HxW or HxWxC) grown to ``width``×``height`` on the right and bottom by repeating edges."""
    grow = [(0, height - pixels.shape[0]), (0, width - pixels.shape[1])] + [(0, 0)] * (pixels.ndim - 2)
    return np.pad(pixels, grow, mode="edge")


def composite(parent: np.ndarray, rendered: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``rendered`` over ``parent`` (uint8 HxWx3) through ``weight``; where it is 0, the parent's bytes."""
    blended = parent.astype(np.float32) * (1 - weight[..., None]) + rendered.astype(np.float32) * weight[..., None]
    blended = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return np.where(weight[..., None] > 0, blended, parent)


def mask_digest(mask: np.ndarray) -> str:
    """The sha256 of a mask (its size and bits): what a job's key carries, whatever file it came from."""
    height, width = mask.shape
    return hashlib.sha256(f"{width}x{height}:".encode() + np.packbits(mask).tobytes()).hexdigest()


def mask_image(mask: np.ndarray) -> Image.Image:
    """The mask as people see it beside the picture: white = re-drawn."""
    return Image.fromarray(mask.astype(np.uint8) * 255, mode="L")


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """A picture-sized mask of one box (x0, y0, x1, y1), clipped to the picture."""
    width, height = size
    mask = np.zeros((height, width), bool)
    x0, y0, x1, y1 = box
    mask[max(0, y0):min(height, y1), max(0, x0):min(width, x1)] = True
    return mask


# ---------------------------------------------------------------- outpainting

_EXTEND_ITEM = re.compile(r"^\s*(left|top|right|bottom)\s*:\s*(\d+)\s*$", re.IGNORECASE)


def parse_extend(text: str | None) -> dict[str, int]:
    """``left:256,bottom:128`` as {side: px} (sides left out are 0); "" or None: no extension.
    Refused in one sentence: an unknown side, a number that is not whole and positive, nothing to add."""
    if text is None or not str(text).strip():
        return {}
    sides: dict[str, int] = {}
    for item in str(text).split(","):
        match = _EXTEND_ITEM.match(item)
        if not match:
            raise UserError(f"cannot read --extend item {item.strip()!r}: use SIDE:PX with SIDE one of "
                            f"{', '.join(SIDES)}, as in left:256,bottom:128")
        side, px = match.group(1).lower(), int(match.group(2))
        if side in sides:
            raise UserError(f"--extend names {side} twice")
        if px > 4096:
            raise UserError(f"--extend {side}:{px} adds too much: at most 4096 px a side")
        sides[side] = px
    if not any(sides.values()):
        raise UserError("--extend adds nothing: give at least one side a number of pixels above 0")
    return {side: sides[side] for side in SIDES if sides.get(side)}


def extend_text(sides: dict[str, int]) -> str:
    """The canonical ``--extend`` (what a key and the metadata carry): sides in a fixed order, zeros left out."""
    return ",".join(f"{side}:{sides[side]}" for side in SIDES if sides.get(side))


def extend_canvas(pixels: np.ndarray, sides: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(canvas, mask): the parent's pixels in their place on the larger canvas, the new border filled by
    repeating the parent's edges (a start the pass re-draws), and the border as the mask."""
    left, top = sides.get("left", 0), sides.get("top", 0)
    right, bottom = sides.get("right", 0), sides.get("bottom", 0)
    canvas = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.ones(canvas.shape[:2], bool)
    mask[top:top + pixels.shape[0], left:left + pixels.shape[1]] = False
    return canvas, mask
