"""Inpaint: re-draw the masked part of a picture with ``ZImageInpaintPipeline``, keep every other pixel.

    for each region (one for a mask; one per face for the detail pass):
        weight  = feather(region mask, blur)          1 on the mask, 0 beyond the feather band
        area "masked": box = support(weight) + padding, rendered at about work² px in its aspect
        area "whole":  the picture, rendered at its own size (rounded up to multiples of 16)
        out     = ZImageInpaintPipeline(crop, mask = support(weight), strength)
        picture = composite(picture, out resized back into its box, weight)

Where the weight is 0 the result is the parent's pixel byte for byte: the diffusion model's VAE round trip
never reaches those pixels. The render is the engine's task ``inpaint`` (``engines.tasks``): diffusers'
``ZImageInpaintPipeline`` built once from the loaded components. Imports no torch at module level.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..core import masks
from . import tasks
from .request import Picture, RenderRequest


@dataclass(frozen=True)
class Crop:
    """One render of an inpaint: where it comes from, the size it is rendered at, what it is given."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the picture (the canvas of an outpaint)
    size: tuple[int, int]  # width, height rendered
    image: Image.Image  # the picture's pixels in the box, at ``size``
    mask: Image.Image  # what the model re-draws (the weight's support), at ``size``
    weight: np.ndarray  # the blend weight inside the box (box-sized)
    whole: bool = False  # rendered at the picture's own size (padded): cut back, not resized


def plan_crops(pixels: np.ndarray, regions: list[masks.Region], *, area: str, work: int, blur: int) -> list[Crop]:
    """The renders an inpaint makes of ``pixels`` (uint8 HxWx3): one per region."""
    height, width = pixels.shape[:2]
    crops = []
    for region in regions:
        weight = masks.feather(region.mask, blur)
        support = weight > 0
        if area == "whole":
            box = (0, 0, width, height)
            size = masks.padded_size(width, height)
            image = Image.fromarray(masks.pad_edges(pixels, *size))
            mask = Image.fromarray(masks.pad_edges(support, *size).astype(np.uint8) * 255, mode="L")
        else:
            box = masks.crop_box(support, region.padding)
            x0, y0, x1, y1 = box
            size = masks.working_size(x1 - x0, y1 - y0, work)
            image = Image.fromarray(pixels[y0:y1, x0:x1]).resize(size, Image.LANCZOS)
            cut = Image.fromarray(support[y0:y1, x0:x1].astype(np.uint8) * 255, mode="L")
            mask = cut.resize(size, Image.NEAREST)
        x0, y0, x1, y1 = box
        crops.append(Crop(box, size, image, mask, weight[y0:y1, x0:x1], whole=area == "whole"))
    return crops


def paste(pixels: np.ndarray, crop: Crop, rendered: Image.Image) -> np.ndarray:
    """``rendered`` (at ``crop.size``) put back into ``pixels`` through the crop's weight."""
    x0, y0, x1, y1 = crop.box
    if crop.whole:
        back = np.asarray(rendered.convert("RGB"))[:y1 - y0, :x1 - x0]  # whole: cut the padding off
    else:
        back = np.asarray(rendered.convert("RGB").resize((x1 - x0, y1 - y0), Image.LANCZOS))
    result = pixels.copy()
    result[y0:y1, x0:x1] = masks.composite(pixels[y0:y1, x0:x1], back, crop.weight)
    return result


def inpaint_pixels(pixels: np.ndarray, regions: list[masks.Region], render: Callable[[Crop, int], Image.Image], *,
                   area: str, work: int, blur: int) -> tuple[np.ndarray, list[Crop]]:
    """The picture with each region re-drawn by ``render(crop, index)``; the crops it rendered.
    Every crop is cut from the parent, so regions do not see each other's result."""
    crops = plan_crops(pixels, regions, area=area, work=work, blur=blur)
    result = pixels
    for index, crop in enumerate(crops):
        result = paste(result, crop, render(crop, index))
    return result, crops


# ---------------------------------------------------------------- the diffusion model


@dataclass(frozen=True)
class InpaintMask:
    """What an inpaint request re-draws: one mask (white = re-draw) per picture, at the request's size."""

    images: tuple


def _build(pipe):
    from diffusers import ZImageInpaintPipeline

    return ZImageInpaintPipeline(**pipe.components)  # the loaded components: no second load


def _call_args(request) -> dict:
    return {"image": list(request.init_images), "mask_image": list(request.mask.images), "strength": request.strength}


TASK = tasks.register(tasks.Task("inpaint", build=_build, call_args=_call_args,
                                 needs=("init_images", "mask", "strength")))


def render_crop(engine, job, crop: Crop, seed: int) -> Image.Image:
    """One crop re-drawn by the model at the job's strength (the crop's size, the given seed)."""
    width, height = crop.size
    variance = job.variance  # the picture's own conditioning, whatever the region
    request = RenderRequest((Picture(job.prompt, job.negative, seed, variance),), width=width, height=height,
                            steps=job.steps, guidance=job.guidance, loras=job.loras, init_images=(crop.image,),
                            strength=job.strength, mask=InpaintMask((crop.mask,)))
    return engine.render(request, TASK.name)[0]
