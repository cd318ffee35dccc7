"""The ControlNet part of a stage's spec (``--control`` and friends; a config's ``control:``)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..core.errors import UserError


class ControlSpec(BaseModel):
    """A ControlNet for a stage (``--control`` and friends, a config's ``control:``). ``type`` None: the stage's
    default (canny on explore and vary, tile on refine and the detail pass); ``strength`` None: the type's;
    ``image`` None: only with tile, where the picture being refined or upscaled is its own control."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # as every stage spec's (specs.Spec)

    image: str | None = Field(default=None, min_length=1, max_length=4096)
    type: str | None = None
    strength: float | None = None
    start: float = 0.0
    end: float = 1.0
    model: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, value):
        return {"image": value} if isinstance(value, str) else value

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value):
        from ..core.control import check_type

        return None if value is None else check_type(value)

    @field_validator("strength", mode="before")
    @classmethod
    def _strength(cls, value):
        from ..core.control import check_strength

        return None if value is None else check_strength(value, "canny")

    @model_validator(mode="after")
    def _window(self):
        from ..core.control import check_window

        check_window(self.start, self.end)
        return self

    def kind(self, default: str) -> str:
        return self.type or default

    def strength_for(self, default_type: str) -> float:
        from ..core.control import check_strength

        return check_strength(self.strength, self.kind(default_type))

    def needs_image(self, default_type: str, stage: str, has_picture: bool) -> None:
        """Only tile on a stage that has a picture (refine, the detail pass) goes without a control image."""
        if self.image is None and not (has_picture and self.kind(default_type) == "tile"):
            where = "" if has_picture else " (only refine and upscale --detail use the picture itself as control)"
            raise UserError(f"--control-type {self.kind(default_type)} on {stage} needs --control IMAGE{where}")
