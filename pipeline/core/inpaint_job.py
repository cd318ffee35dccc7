"""The inpaint job: a picture re-drawn under a mask (``pipeline inpaint``, the face detail pass). Imports no torch."""
from __future__ import annotations

from dataclasses import dataclass

from .jobs import RenderJob


@dataclass(frozen=True)
class InpaintJob(RenderJob):
    """``width``/``height``: the result's size (the parent's, or its canvas when extended); ``seed``: the
    first region's noise seed (region i draws with seed + i)."""

    kind = "inpaint"
    strength: float = 0.75
    parent: str = ""  # sha256 of the parent picture's file
    mask: str = ""  # masks.mask_digest of the mask (on the canvas when extended)
    area: str = "masked"  # "masked": each region's box + padding at the working size; "whole": the picture
    padding: int = 32  # px around the mask's box ("masked")
    blur: int = 4  # px the mask fades out over, outside it
    work: int = 1024  # "masked": each crop renders at about work² px
    extend: str = ""  # outpaint: "left:256,bottom:128"; "": none (no field in the key)
    detector: str = ""  # the detail pass: detector, confidence, crop factor; "": a drawn mask (no field in the key)

    def fields(self) -> dict:
        data = super().fields()
        for name in ("extend", "detector"):
            if not data.get(name):
                data.pop(name, None)
        if data["area"] == "whole":
            data.pop("padding", None)  # "whole" renders the picture itself: no crop, no working size
            data.pop("work", None)
        return data
