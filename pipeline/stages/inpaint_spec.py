"""The inpaint spec: what ``pipeline inpaint``, ``Pipeline.inpaint`` and the ``inpaint:`` config section take."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..core.errors import UserError
from ..core.masks import extend_text, parse_extend
from .specs import Spec, _loras

DEFAULT_STRENGTH = 0.75  # a drawn mask
DEFAULT_FACE_STRENGTH = 0.35  # the detail pass (Impact Pack on Z-Image: 0.30-0.40)
DEFAULT_EXTEND_STRENGTH = 1.0  # outpainting: the new border starts from repeated edge pixels only
SOURCE_STAGES = ("explore", "refine", "upscale", "inpaint")


class InpaintSpec(Spec):
    """One fix of a run's pictures (``seeds``) or of a file (``image``)."""

    seeds: list[str] | None = None  # the run's pictures: 42, 42v3, 42i1
    image: str | None = None  # any picture file instead
    source: Literal["explore", "refine", "upscale", "inpaint"] = "explore"  # --from: which of the run's pictures
    mask: str | None = None  # white = re-draw; or an RGBA picture's alpha (transparent = re-draw)
    prompt: str | None = None  # default: the picture's own
    strength: float | None = Field(default=None, gt=0, le=1)  # default: 0.75, faces 0.35, --extend 1
    mask_blur: int = Field(default=4, ge=0, le=256)
    area: Literal["masked", "whole"] = "masked"
    padding: int = Field(default=32, ge=0, le=4096)
    work: int = Field(default=1024, ge=64, le=4096)  # "masked": the side of the working area
    extend: str | None = None  # outpaint: left:256,bottom:128
    faces: bool = False
    hands: bool = False
    face_prompt: str | None = None
    face_confidence: float = Field(default=0.3, ge=0, le=10)
    crop_factor: float = Field(default=2.5, ge=1, le=10)
    seed: int | None = Field(default=None, ge=0, lt=2**53)  # default: the picture's own
    steps: int | None = Field(default=None, ge=1, le=200)  # default: the picture's (8)
    loras: list[tuple[str, float]] | None = None  # None: the picture's own; []: none

    _check_loras = field_validator("loras", mode="before")(_loras)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seed_list(cls, value):
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
        items = [item.strip().lower() for item in items]
        if not items or any(not item for item in items):
            raise ValueError("give the pictures as a list like 42,97v2,42i1")
        return list(dict.fromkeys(items))

    @field_validator("extend", mode="before")
    @classmethod
    def _extend(cls, value):
        return extend_text(parse_extend(value)) or None if value is not None else None

    @model_validator(mode="after")
    def _what(self):
        if (self.seeds is None) == (self.image is None):
            raise UserError("give either the run's pictures (--seeds) or an IMAGE, not both" if self.seeds
                             else "give the picture to fix: --seeds of a run, or an IMAGE")
        if self.hands:
            from ..engines.faces import HANDS_NOT_OFFERED

            raise UserError(HANDS_NOT_OFFERED)
        if self.faces and (self.mask or self.extend):
            raise UserError("--faces finds its own mask: give it without --mask and --extend")
        if not (self.mask or self.faces or self.extend):
            raise UserError("say what to re-draw: --mask MASK.png, --faces, or --extend SIDE:PX")
        return self

    @property
    def chosen_strength(self) -> float:
        if self.strength is not None:
            return self.strength
        return DEFAULT_FACE_STRENGTH if self.faces else DEFAULT_EXTEND_STRENGTH if self.extend and not self.mask \
            else DEFAULT_STRENGTH
