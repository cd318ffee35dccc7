"""The inpaint job: a picture re-drawn under a mask (``pipeline inpaint``, the face detail pass). Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass

from .jobs import RenderJob, optional


@dataclass(frozen=True)
class InpaintJob(RenderJob):
    """``width``/``height``: the result's size (the parent's, or its canvas when extended); ``seed``: the
    first region's noise seed (region i draws with seed + i); ``mask`` (RenderJob's): the mask's digest
    (``masks.mask_digest``, on the canvas when extended)."""

    kind = "inpaint"
    strength: float = 0.75
    parent: str = ""  # sha256 of the parent picture's file
    area: str = "masked"  # "masked": each region's box + padding at the working size; "whole": the picture
    blur: int = 4  # px the mask fades out over, outside it
    padding: int | None = optional(None)  # "masked": px around the mask's box (None with "whole")
    work: int | None = optional(None)  # "masked": each crop renders at about work² px (None with "whole")
    extend: str = optional("")  # outpaint: "left:256,bottom:128"
    detector: str = optional("")  # the detail pass: detector, confidence, crop factor ("": a drawn mask)
