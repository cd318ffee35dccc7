"""The sections of a run config (prompts, explore, refine, upscale) as pydantic models.

Their fields are the stage specs' own fields (defaults, bounds, descriptions copied from
``specs.py``), so a config and the CLI accept the same values. Imports no torch.
"""
from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from ..core.errors import UserError
from ..core.seeds import MAX_SEED, MAX_SEEDS_PER_SPEC, parse_seeds, seeds_from_count
from ..core.runs import check_run_name
from ..stages.specs import (DEFAULT_REFINE_SCALE, DEFAULT_STEPS, DEFAULT_VARIANCE_SHARE, DEFAULT_VARIANCE_STEPS, MAX_VARIANCE,
                    ControlSpec, ExploreSpec, RefineSpec, VarySpec, _loras, _prompt_text, _seeds, _size, vary_strength)

DEFAULT_COUNT = 16


# ---------------------------------------------------------------- field types

def _user_errors_as_value_errors(func):
    """Spec parsers raise UserError; inside pydantic they must be ValueErrors to get a location."""

    def wrapper(value):
        try:
            return func(value)
        except UserError as err:
            raise ValueError(str(err)) from None

    return wrapper


def _batch(value):
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64):
        return value
    raise ValueError(f"must be auto or a whole number from 1 to 64, not {value!r}")


_SIZE_SCHEMA = {
    "description": "512, WIDTHxHEIGHT like 512x768, a preset (square, portrait, landscape, tall, wide), "
                   "or [width, height]; each side a multiple of 16 from 64 to 4096",
    "anyOf": [{"type": "integer"}, {"type": "string"},
              {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}],
}
_SEEDS_SCHEMA = {
    "description": "seeds and inclusive ranges: 1,2,10-20 or [1, 2, \"10-20\"]",
    "anyOf": [{"type": "integer"}, {"type": "string"},
              {"type": "array", "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}],
}
Size = Annotated[tuple[int, int], BeforeValidator(_user_errors_as_value_errors(_size)), WithJsonSchema(_SIZE_SCHEMA)]
Seeds = Annotated[list[int], BeforeValidator(_user_errors_as_value_errors(_seeds)), WithJsonSchema(_SEEDS_SCHEMA)]
_LORAS_SCHEMA = {
    "description": "LoRAs: NAME_OR_FILE[:WEIGHT] (weight 1 by default), or {name, weight}; a name is looked up in "
                   "weights/loras/, $PIPELINE_LORAS and a ComfyUI install's models/loras/; [] = none",
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": [
        {"type": "string"}, {"type": "object", "properties": {"name": {"type": "string"}, "weight": {"type": "number"}},
                             "required": ["name"], "additionalProperties": False}]}}],
}
Loras = Annotated[Optional[list[tuple[str, float]]], BeforeValidator(_user_errors_as_value_errors(_loras)),
                  WithJsonSchema(_LORAS_SCHEMA)]
def _control(value):
    """A stage's ``control:`` (an image path, or {image, type, strength, start, end, model}); None: none."""
    if value is None or isinstance(value, ControlSpec):
        return value
    if not isinstance(value, (str, dict)):
        raise ValueError("must be the control image's path or {image, type, strength, start, end, model}")
    try:
        return ControlSpec.model_validate(value)
    except UserError as err:
        raise ValueError(str(err)) from None


_CONTROL_SCHEMA = {
    "description": "a ControlNet: the control image's path, or {image, type (canny, gray, tile, map), strength, "
                   "start, end, model}; refine and upscale default to type tile (the picture as its own control)",
    "anyOf": [{"type": "string"}, {"type": "object", "properties": {
        "image": {"type": "string"}, "type": {"enum": ["canny", "gray", "tile", "map"]},
        "strength": {"type": "number"}, "start": {"type": "number"}, "end": {"type": "number"},
        "model": {"type": "string"}}, "additionalProperties": False}],
}
Control = Annotated[Optional[object], BeforeValidator(_control), WithJsonSchema(_CONTROL_SCHEMA)]
BatchField = Annotated[object, BeforeValidator(_batch),
                       WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1, "maximum": 64}],
                                       "description": "pictures denoised together (auto: by device and memory)"})]


def _from(spec, name: str, **changes):
    """A copy of a stage spec's field (default, bounds, description) for a config section."""
    info = copy.copy(spec.model_fields[name])
    for key, value in changes.items():
        setattr(info, key, value)
    return info


DETAIL_FACES = ("then re-draw each face found at this strength (0 = off; 0.3-0.4 typical; needs "
                "pip install 'pipeline[faces]'); the fixes join the run as 42i1")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- sections

def _prompts_schema(schema: dict) -> None:
    item = schema.get("items", {})
    schema.clear()
    schema.update({"description": "one prompt, or a list of prompts (text, or {text, negative, name}); "
                                  "each prompt is one run",
                   "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1,
                                                  "items": {"anyOf": [{"type": "string"}, item]}}]})


def _picks_schema(schema: dict) -> None:
    item = schema.get("items", {})
    schema.clear()
    schema.update({"description": "the candidates to refine: [42, 97] with one prompt; fox:42 or "
                                  "{prompt: 0, seed: 42} with several",
                   "anyOf": [{"type": "integer"}, {"type": "string"},
                             {"type": "array", "minItems": 1,
                              "items": {"anyOf": [{"type": "integer"}, {"type": "string"}, item]}}]})


class PromptEntry(Section):
    text: str = _from(ExploreSpec, "prompt", description="what to draw")
    negative: str = _from(ExploreSpec, "negative", description="negative prompt (used only with guidance > 0)")
    name: Optional[str] = Field(default=None, max_length=200,
                                description="run folder name, and the prompt's name in picks "
                                            "[default: a slug of the text]")

    _check_text = field_validator("text")(_prompt_text)

    @field_validator("name")
    @classmethod
    def _name(cls, value):
        if value is None:
            return value
        _user_errors_as_value_errors(check_run_name)(value)
        if value.isdigit() or ":" in value or "," in value:
            raise ValueError(f"name {value!r} must not be a number or contain ':' or ','")
        return value


class Pick(Section):
    """One candidate to refine: its seed, and (with several prompts) which prompt's run."""

    prompt: Optional[int | str] = Field(default=None, description="the prompt's name, or its index from 0")
    seed: int | str = Field(description="a seed, or a variation id like 42v3 (made by vary)")

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"cannot read pick {value!r}: use a seed like 42 or a variation id like 42v3")
        if isinstance(value, int) and not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed {value} is out of range: seeds go from 0 to {MAX_SEED}")
        picks = _user_errors_as_value_errors(lambda v: parse_seeds(v, variations=True))(str(value))
        if len(picks) != 1:
            raise ValueError(f"cannot read pick {value!r}: give one seed or variation id per pick")
        return picks[0]

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value):
        if isinstance(value, bool):
            raise ValueError(f"cannot read pick {value!r}: use a seed like 42, or PROMPT:SEED like fox:42")
        if isinstance(value, int):
            return {"seed": value}
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(?:([^:]+?)\s*:\s*)?(\d+(?:[vV]\d+)*)\s*", value)
            if not match:
                raise ValueError(f"cannot read pick {value!r}: use a seed like 42, or PROMPT:SEED like fox:42")
            prompt, seed = match.group(1), match.group(2)
            return {"seed": int(seed) if seed.isdigit() else seed, **({"prompt": prompt} if prompt is not None else {})}
        return value


class ExploreSection(Section):
    seeds: Optional[Seeds] = Field(default=None)
    count: Optional[int] = Field(default=None, ge=1, le=MAX_SEEDS_PER_SPEC,
                                 description=f"render COUNT seeds from seed [default: {DEFAULT_COUNT}]")
    seed: Optional[int] = Field(default=None, ge=0, le=MAX_SEED, description="first seed for count [default: 0]")
    size: Size = _from(ExploreSpec, "size")
    steps: int = _from(ExploreSpec, "steps", description="denoising steps (transformer calls)")
    guidance: float = _from(ExploreSpec, "guidance", description="CFG scale; > 0 doubles the cost")
    batch: BatchField = _from(ExploreSpec, "batch")
    variance: float = Field(default=0.0, ge=0.0, le=MAX_VARIANCE,
                            description="seeded noise on the prompt embedding in the first steps, so seeds differ "
                                        "more (0 = off; 0.1-0.5 typical)")
    variance_share: float = Field(default=DEFAULT_VARIANCE_SHARE, gt=0.0, le=1.0,
                                  description="share of the embedding's values that get noise")
    variance_steps: float = Field(default=DEFAULT_VARIANCE_STEPS, gt=0.0, le=1.0,
                                  description="share of the steps that see the noisy embedding")
    loras: Loras = Field(default=None, description="LoRAs for the candidates [default: the top-level loras]")
    control: Control = None

    @model_validator(mode="after")
    def _seeds_or_count(self):
        if self.seeds is not None and (self.count is not None or self.seed is not None):
            raise ValueError("give seeds, or count (and seed), not both")
        return self

    def resolved_seeds(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        return seeds_from_count(self.count or DEFAULT_COUNT, self.seed or 0)


class RefineSection(Section):
    picks: list[Pick] = Field(min_length=1, json_schema_extra=_picks_schema)
    size: Optional[Size] = _from(RefineSpec, "size", description="target size [default: candidate × scale]")
    scale: Optional[float] = _from(RefineSpec, "scale",
                                   description=f"target = candidate size × scale [default: {DEFAULT_REFINE_SCALE:g}]")
    mode: Literal["hires", "rerender"] = _from(RefineSpec, "mode",
                                               description="hires keeps the composition; rerender renders anew")
    strength: float = _from(RefineSpec, "strength", description="hires: how much is re-drawn")
    steps: Optional[int] = _from(RefineSpec, "steps", description=f"steps of a full render [default: {DEFAULT_STEPS}]")
    guidance: Optional[float] = _from(RefineSpec, "guidance", description="CFG scale [default: the run's]")
    upscaler: str = _from(RefineSpec, "upscaler", description="hires: lanczos or Real-ESRGAN weights")
    batch: BatchField = _from(RefineSpec, "batch")
    loras: Loras = Field(default=None, description="LoRAs instead of the candidate's own ([] = none) "
                                                   "[default: the candidate's]")
    detail_faces: float = Field(default=0.0, ge=0.0, le=1.0, description=DETAIL_FACES)
    control: Control = None

    @model_validator(mode="before")
    @classmethod
    def _seeds_alias(cls, value):
        if isinstance(value, dict) and "seeds" in value:
            if "picks" in value:
                raise ValueError("give picks (or its other name seeds), not both")
            value = {("picks" if k == "seeds" else k): v for k, v in value.items()}
        if isinstance(value, dict) and isinstance(value.get("picks"), (int, str)) \
                and not isinstance(value.get("picks"), bool):
            picks = value["picks"]
            value = {**value, "picks": [p.strip() for p in picks.split(",")] if isinstance(picks, str) else [picks]}
        return value

    @model_validator(mode="after")
    def _size_or_scale(self):
        if self.size is not None and self.scale is not None:
            raise ValueError("give size or scale, not both")
        return self


class VarySection(Section):
    picks: list[Pick] = Field(min_length=1, json_schema_extra=_picks_schema)
    count: int = _from(VarySpec, "count", description="variations of each pick")
    strength: Annotated[float, BeforeValidator(vary_strength),
                        WithJsonSchema({"anyOf": [{"enum": ["subtle", "strong"]}, {"type": "number"}],
                                        "description": "subtle (0.5), strong (0.85), or a number in (0, 1)"})] = 0.5
    steps: Optional[int] = _from(VarySpec, "steps", description="steps of a full render [default: the run's]")
    batch: BatchField = _from(VarySpec, "batch")
    loras: Loras = Field(default=None, description="LoRAs instead of the candidate's own ([] = none) "
                                                   "[default: the candidate's]")
    control: Control = None

    @model_validator(mode="before")
    @classmethod
    def _seeds_alias(cls, value):
        return RefineSection._seeds_alias(value)  # picks: 42,97v1 or a list; seeds: as another name


class UpscaleSection(Section):
    upscaler: Optional[str] = Field(default=None, min_length=1, max_length=4096,
                                    description="realesrgan-x4plus (default), realesrgan-x4plus-anime, "
                                                "realesr-animevideov3, or a weights file")
    scale: Optional[float] = Field(default=None, gt=0.0, le=16.0,
                                   description="output size / input size [default: the model's, e.g. 4]")
    tile: Optional[int] = Field(default=None, ge=0, description="tile size in input pixels; 0 = whole image "
                                                                "[default: by memory]")
    overlap: Optional[int] = Field(default=None, ge=0, le=256,
                                   description="input pixels shared by neighbouring tiles [default: 64; 96 under "
                                               "128-px tiles; 36 for realesr-animevideov3]")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto")
    detail: float = Field(default=0.0, ge=0.0, le=1.0,
                          description="re-draw detail with the diffusion model at this img2img strength after "
                                      "upscaling (0 = off; 0.2-0.4 typical; the scale defaults to 2 then)")
    detail_tile: int = Field(default=1024, ge=64, le=4096, description="detail tiles: at most this many output pixels")
    detail_faces: float = Field(default=0.0, ge=0.0, le=1.0, description=DETAIL_FACES)
    control: Control = None

    @model_validator(mode="after")
    def _control_needs_detail(self):
        if self.control is not None and not self.detail > 0:
            raise ValueError("control needs detail above 0: the ControlNet draws in the detail pass")
        return self

    @field_validator("tile")
    @classmethod
    def _tile(cls, value):
        if value is not None and value != 0 and value < 16:
            raise ValueError(f"must be 0 (whole image) or at least 16, not {value}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data):
        """``model`` was the old name of ``upscaler`` (removed with ``detail``: the diffusion model is the config's)."""
        if isinstance(data, dict) and "model" in data:
            raise ValueError("upscale.model was the old name of upscale.upscaler: rename it upscale.upscaler "
                             "(the diffusion model that detail draws with is the config's top-level model)")
        return data

    @field_validator("upscaler")
    @classmethod
    def _weights(cls, value):
        if value is None:
            return value
        from ..models.upscaler_weights import PRESETS, WEIGHT_SUFFIXES

        if value in PRESETS:
            return value
        path = Path(value).expanduser()
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            if not path.is_file():
                raise ValueError(f"weights file {value} does not exist")
            return value
        close = difflib.get_close_matches(value, list(PRESETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(PRESETS)} or a weights file"
        raise ValueError(f"unknown upscaler {value!r}{hint}")


