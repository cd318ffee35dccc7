"""A run config's ``inpaint:`` section: the fixes to make after explore (and refine), as ``pipeline inpaint`` takes
them; the face pass after refine or upscale is their ``detail_faces`` key. Imports no torch."""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import Field, model_validator

from ..core.errors import UserError
from ..stages.inpaint_spec import InpaintSpec
from ..stages.specs import build
from .schema import Section


class InpaintSection(Section):
    picks: list[Union[int, str]] = Field(min_length=1, description="the run's pictures to fix: 42, 42v3, 42i1")
    source: Literal["explore", "refine", "upscale", "inpaint"] = Field(
        default="explore", description="which stage's pictures the picks name (its other name: from)")
    mask: Optional[str] = Field(default=None, description="mask file (white = re-draw; or transparent pixels), "
                                                          "relative to the current folder")
    prompt: Optional[str] = Field(default=None, description="what to draw there [default: the picture's prompt]")
    strength: Optional[float] = Field(default=None, gt=0, le=1,
                                      description="how much is re-drawn [default: 0.75; faces 0.35; extend 1]")
    mask_blur: int = Field(default=4, ge=0, le=256, description="px the mask fades out over")
    area: Literal["masked", "whole"] = Field(default="masked", description="masked (the mask's box at the working "
                                                                           "size) or whole (the picture)")
    padding: int = Field(default=32, ge=0, le=4096, description="masked: px of context around the mask's box")
    work: int = Field(default=1024, ge=64, le=4096, description="masked: the crop renders at about work² px")
    extend: Optional[str] = Field(default=None, description="outpaint: left:256,bottom:128")
    faces: bool = Field(default=False, description="re-draw each face found (no mask needed)")
    face_prompt: Optional[str] = Field(default=None, description="faces: the prompt [default: the picture's]")
    face_confidence: float = Field(default=0.3, ge=0, le=10, description="faces: the detector's score a face needs")
    crop_factor: float = Field(default=2.5, ge=1, le=10, description="faces: the crop around a face, × its box")

    @model_validator(mode="before")
    @classmethod
    def _other_names(cls, value):
        if isinstance(value, dict):
            if "from" in value:
                if "source" in value:
                    raise ValueError("give from (or its other name source), not both")
                value = {("source" if k == "from" else k): v for k, v in value.items()}
            if isinstance(value.get("picks"), (int, str)) and not isinstance(value.get("picks"), bool):
                picks = value["picks"]
                value = {**value, "picks": [p.strip() for p in picks.split(",")] if isinstance(picks, str)
                         else [picks]}
        return value

    @model_validator(mode="after")
    def _as_the_cli_takes_it(self):
        try:
            self.spec()
        except UserError as err:
            raise ValueError(str(err)) from None
        return self

    def spec(self) -> InpaintSpec:
        values = self.model_dump(exclude={"picks"})
        return build(InpaintSpec, seeds=[str(p) for p in self.picks], **values)
