"""Hires refine: how the parent becomes the picture the image-to-image pass starts from, and when
that pass is A1111's hires fix of it (so its text says so) rather than an img2img.

A1111's hires fix enlarges its first pass and, for ``Hires resize`` to another aspect, enlarges it to
cover the target at its own aspect and cuts the target out of the middle (``calculate_target_resolution``
and ``sample_hr_pass``); its img2img stretches the init image to ``Size`` ("Just resize", the default).
A hires refine does what the form its text is written in would make A1111 do: it crops when it is a
hires fix and the aspect changes (the job's ``crop``), and stretches otherwise. Imports no torch.
"""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path

from ..core.jobs import RefineJob, variance_from_record


def as_hires_fix(job: RefineJob, parent: dict | None) -> tuple[RefineJob, dict | None]:
    """A hires refine whose parent is our own text-to-image picture (an explore candidate, not a variation,
    an upscaled or a refined picture) with this prompt, seed, model, variance and LoRAs, at another size,
    is A1111's hires fix of it: returns the job, cropped as A1111 crops when the aspect changes, and the
    first pass's settings for its text. Anything else (a LoRA candidate refined without its LoRA too) is
    an img2img (None), resized as A1111's img2img does."""
    from ..core.images import a1111_hires_crop, a1111_hires_scale

    if job.mode != "hires" or not isinstance(parent, dict) or parent.get("kind") != "explore" or "upscale" in parent:
        return job, None
    first_size = (parent.get("width"), parent.get("height"))
    same = (parent.get("prompt") == job.prompt and parent.get("seed") == job.seed and parent.get("model") == job.model
            and variance_from_record(parent.get("variance")) == job.variance
            and _lora_uses(parent.get("loras")) == _lora_uses(job.describe().get("loras")))
    if not same or not all(isinstance(side, int) and side > 0 for side in first_size) \
            or first_size == (job.width, job.height) or not isinstance(parent.get("steps"), int):
        return job, None  # A1111 turns its hires fix off when the size stays: an img2img
    first = {"width": first_size[0], "height": first_size[1], "steps": parent["steps"],
             "guidance": float(parent.get("guidance") or 0.0), "negative": str(parent.get("negative") or "")}
    target = (job.width, job.height)
    if a1111_hires_scale(first_size, target) is None:
        (cover_w, cover_h), (x, y) = a1111_hires_crop(first_size, target)
        if (cover_w, cover_h) != target:
            job = dataclasses.replace(job, crop=f"{cover_w}x{cover_h}+{x}+{y}")
    return job, first


def _lora_uses(loras) -> list:
    """LoRAs as (sha256, weight) pairs, from a job's description or a picture's record."""
    if not isinstance(loras, (list, tuple)):
        return []
    return sorted((str(r.get("sha256")), float(r.get("weight") or 0)) for r in loras if isinstance(r, dict))


def parent_size(pick) -> list[int]:
    """The parent's size as shown (recorded as ``parent_size``); reads the header only."""
    return image_size(pick.parent_data if pick.parent_data is not None else pick.parent_path)


def image_size(source: bytes | Path) -> list[int]:
    """An image's [width, height] as shown (EXIF orientation applied); reads the header only."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        width, height = image.size
        turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap the sides
    return [height, width] if turned else [width, height]


def enlarge_parents(session, spec, misses: list) -> dict:
    """Each miss's parent enlarged to its target size (the upscaler, if any, loads once, here), or to the
    size that covers it and cropped, for a job with ``crop``."""
    from PIL import Image, ImageOps

    upscaler = None
    if spec.upscaler.lower() != "lanczos":
        from ..engines.upscaler import load_upscaler

        upscaler = load_upscaler(spec.upscaler, session.device or "auto", "auto")
    enlarged = {}
    for pick in misses:
        with Image.open(io.BytesIO(pick.parent_data) if pick.parent_data is not None else pick.parent_path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
        size = (pick.job.width, pick.job.height)
        cover, (x, y) = crop_of(pick.job)
        if upscaler is not None:
            image = upscaler.upscale(image)
        image = image if image.size == cover else image.resize(cover, Image.Resampling.LANCZOS)
        enlarged[pick.name] = image if cover == size else image.crop((x, y, x + size[0], y + size[1]))
    return enlarged


def crop_of(job: RefineJob) -> tuple[tuple[int, int], tuple[int, int]]:
    """(enlarged size, offset of the target in it) from the job's ``crop`` ("WxH+X+Y"); no crop: the target."""
    if not job.crop:
        return (job.width, job.height), (0, 0)
    size, x, y = job.crop.split("+")
    width, height = size.split("x")
    return (int(width), int(height)), (int(x), int(y))
