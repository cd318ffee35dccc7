"""Stage specs: the validated parameters of each stage, shared by the CLI, the API and configs.

One source of truth for defaults and validation (pydantic models).
"""
from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..core.errors import UserError
from ..core.seeds import JS_SAFE_SEEDS, parse_seeds
from ..core.sizes import check_size
from .control_spec import ControlSpec  # a file of its own: specs.py is long

DEFAULT_STEPS = 8  # Z-Image-Turbo: 8 transformer calls
DEFAULT_GUIDANCE = 0.0  # Turbo is distilled without classifier-free guidance
DEFAULT_EXPLORE_SIZE = (512, 512)
DEFAULT_REFINE_STRENGTH = 0.5
DEFAULT_REFINE_SCALE = 2.0
# --variance: off by default; share and steps as ComfyUI's SeedVarianceEnhancer defaults
# (randomize_percent 50, steps_switchover_percent 20); see engines/variance.py
DEFAULT_VARIANCE_SHARE = 0.5
DEFAULT_VARIANCE_STEPS = 0.2
MAX_VARIANCE = 2.0  # InvokeAI's range (0-2 × the embedding's standard deviation)
# pipeline vary: Fooocus's Vary (Subtle) and Vary (Strong) denoising strengths
VARY_STRENGTHS = {"subtle": 0.5, "strong": 0.85}

Dtype = Literal["bf16", "fp16", "fp32"]
Batch = Union[Literal["auto"], int]


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seeds(value):
    """Seeds of new pictures: below 2**53, so the seed written into each picture is exact in a JavaScript
    number (A1111's and ComfyUI's seed boxes). Pictures made before with larger seeds stay usable: refine,
    vary and upscale take any seed (``parse_seeds``)."""
    if value is None:
        return value
    return [_new_seed(seed) for seed in parse_seeds(value)]


def _new_seed(seed):
    if seed is not None and seed >= JS_SAFE_SEEDS:
        raise UserError(f"seed {seed} is too large for a new picture: seeds go from 0 to {JS_SAFE_SEEDS - 1} "
                        f"(2^53 - 1), the largest that A1111, ComfyUI and other JavaScript pages read back exactly")
    return seed


def _picks(value):
    """Seeds or variation ids (42, 42v3) of a run's candidates."""
    if value is None:
        return value
    return parse_seeds(value, variations=True)


def _variance(value):
    if value is None:
        return 0.0
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number: use 0 (off) to {MAX_VARIANCE:g}, e.g. 0.3") from None
    if not 0.0 <= number <= MAX_VARIANCE:
        raise ValueError(f"{value!r} is out of range: use 0 (off) to {MAX_VARIANCE:g}; 0.1 to 0.5 are typical")
    return number


def _fraction(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number: give a fraction above 0 and up to 1") from None
    if not 0.0 < number <= 1.0:
        raise ValueError(f"{value!r} is out of range: give a fraction above 0 and up to 1, e.g. 0.5")
    return number


def _loras(value):
    """LoRAs as (name or file, weight) pairs: from ``"style:0.8"``, ``("style", 0.8)`` or ``{name, weight}``;
    None stays None (refine/vary: the candidate's own LoRAs)."""
    if value is None:
        return None
    from ..models.loras import parse_lora

    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"loras must be a list like [style:0.8, other], not {value!r}")
    return [parse_lora(item) for item in value]


def _prompt_text(value: str) -> str:
    if not value.strip():
        raise ValueError("the prompt is empty")
    if "\0" in value:
        raise ValueError("the prompt contains a NUL character")
    return value


def _batch(value):
    if value != "auto" and not 1 <= value <= 64:
        raise ValueError(f"batch must be auto or a whole number from 1 to 64, not {value!r}")
    return value


def _size(value):
    if isinstance(value, (tuple, list)) and len(value) == 2:
        try:
            width, height = int(value[0]), int(value[1])
        except (TypeError, ValueError, OverflowError):  # e.g. [null, null] in a config: one clear error
            raise ValueError(f"size {list(value)!r} must be two whole numbers, like [512, 768]") from None
        check_size(width, height)
        return (width, height)
    from ..core.sizes import parse_size

    return parse_size(value)


def _control(value):
    return None if value is None or value is False else value


class ExploreSpec(Spec):
    prompt: str = Field(min_length=1, max_length=20_000)
    negative: str = Field(default="", max_length=20_000)
    seeds: list[int] = Field(min_length=1)
    size: tuple[int, int] = DEFAULT_EXPLORE_SIZE
    steps: int = Field(default=DEFAULT_STEPS, ge=1, le=200)
    guidance: float = Field(default=DEFAULT_GUIDANCE, ge=0.0, le=30.0)
    batch: Batch = "auto"
    variance: float = 0.0
    variance_share: float = DEFAULT_VARIANCE_SHARE
    variance_steps: float = DEFAULT_VARIANCE_STEPS
    loras: list[tuple[str, float]] = []  # (name or file, weight)
    control: ControlSpec | None = None

    _check_seeds = field_validator("seeds", mode="before")(_seeds)
    _check_control = field_validator("control", mode="before")(_control)
    _check_loras = field_validator("loras", mode="before")(lambda v: _loras(v) or [])
    _check_size = field_validator("size", mode="before")(_size)
    _check_variance = field_validator("variance", mode="before")(_variance)
    _check_fractions = field_validator("variance_share", "variance_steps", mode="before")(_fraction)

    def variance_settings(self) -> dict | None:
        """The run's --variance settings as run.json records them; None when off."""
        if not self.variance:
            return None
        return {"strength": self.variance, "share": self.variance_share, "steps": self.variance_steps}

    _check_prompt = field_validator("prompt")(_prompt_text)

    _check_batch = field_validator("batch")(_batch)


class RefineSpec(Spec):
    """Refine picked candidates of a run (``seeds``) or one image (``source``) at a larger size.

    ``None`` means "take it from the run or the image's metadata, else the default".
    """

    seeds: list[int | str] | None = None  # seeds and variation ids (42v3)
    source: str | None = None  # --from IMAGE
    prompt: str | None = Field(default=None, max_length=20_000)
    negative: str | None = Field(default=None, max_length=20_000)
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    size: tuple[int, int] | None = None

    _check_seed = field_validator("seed")(_new_seed)
    scale: float | None = Field(default=None, gt=0.0, le=16.0)
    mode: Literal["hires", "rerender"] = "hires"
    strength: float = Field(default=DEFAULT_REFINE_STRENGTH, gt=0.0, le=1.0)
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance: float | None = Field(default=None, ge=0.0, le=30.0)
    upscaler: str = Field(default="lanczos", min_length=1, max_length=4096)
    batch: Batch = "auto"
    loras: list[tuple[str, float]] | None = None  # None: the candidate's own; []: none
    control: ControlSpec | None = None  # default type: tile, the candidate its own control

    _check_seeds = field_validator("seeds", mode="before")(_picks)
    _check_loras = field_validator("loras", mode="before")(_loras)
    _check_control = field_validator("control", mode="before")(_control)

    @field_validator("size", mode="before")
    @classmethod
    def _refine_size(cls, value):
        return None if value is None else _size(value)

    _check_batch = field_validator("batch")(_batch)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.seeds is None) == (self.source is None):
            raise ValueError("give the seeds to refine (--seeds) or one image (--from), not both")
        if self.size is not None and self.scale is not None:
            raise ValueError("give --size or --scale, not both")
        if self.seeds is not None and (self.prompt is not None or self.seed is not None):
            raise ValueError("--prompt and --seed go with --from; a run's candidates keep their own")
        if self.prompt is not None and (not self.prompt.strip() or "\0" in self.prompt):
            raise ValueError("the prompt is empty or contains a NUL character")
        return self


def vary_strength(value) -> float:
    """subtle, strong, or a number above 0 and below 1 (how much of the candidate is re-drawn)."""
    if isinstance(value, str) and value.strip().lower() in VARY_STRENGTHS:
        return VARY_STRENGTHS[value.strip().lower()]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not subtle, strong or a number between 0 and 1") from None
    if not 0.0 < number < 1.0:
        raise ValueError(f"{number:g} is out of range: use subtle (0.5), strong (0.85) or a number above 0 and "
                         f"below 1")
    return number


class VarySpec(Spec):
    """More candidates like picked ones: image-to-image from each stored candidate at its own size."""

    seeds: list[int | str] = Field(min_length=1)  # the parents: seeds or variation ids
    count: int = Field(default=4, ge=1, le=1000)
    strength: float = VARY_STRENGTHS["subtle"]  # subtle, strong, or a number above 0 and below 1
    steps: int | None = Field(default=None, ge=1, le=200)  # default: the run's
    batch: Batch = "auto"
    loras: list[tuple[str, float]] | None = None  # None: the candidate's own; []: none
    control: ControlSpec | None = None  # every variation follows it (default type: canny)

    _check_seeds = field_validator("seeds", mode="before")(_picks)
    _check_loras = field_validator("loras", mode="before")(_loras)
    _check_control = field_validator("control", mode="before")(_control)
    _check_batch = field_validator("batch")(_batch)

    _check_strength = field_validator("strength", mode="before")(vary_strength)


UPSCALE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEFAULT_DETAIL_TILE = 1024
MIN_DETAIL_TILE = 64


class UpscaleSpec(Spec):
    """Super-resolution (``upscaler`` weights to ``scale``, in tiles of ``tile`` input pixels sharing ``overlap``)
    and, when ``detail`` > 0, the detail pass: the diffusion ``model`` (default: the session's) re-draws the
    upscaled picture image-to-image at that strength over tiles of at most ``detail_tile`` output pixels, with
    the picture's prompt (``prompt`` for a file that carries none). Each check is one sentence naming its option.
    """

    upscaler: str | None = None  # a preset name or a weights file; None: the default preset
    scale: float | None = None  # output size / input size; None: the model's (2 with detail)
    tile: int | None = None  # input pixels; 0 = whole image; None: chosen from free memory
    overlap: int | None = None
    precision: str = "auto"
    detail: float = 0.0
    detail_tile: int = DEFAULT_DETAIL_TILE
    prompt: str | None = None
    model: str | None = None
    control: ControlSpec | None = None  # with detail only: the Tile ControlNet (or another) over each tile

    _check_control = field_validator("control", mode="before")(_control)

    @model_validator(mode="after")
    def _one_sentence_each(self):
        # UserError, not ValueError: pydantic passes it through, so the sentence is the user's as written here
        _refuse_upscaler_as_model(self.model)
        if self.control is not None and not self.detail > 0:
            raise UserError("--control on upscale needs --detail: the ControlNet draws in the detail pass "
                            "(e.g. --detail 0.4 --control-type tile)")
        if not 0 <= self.detail <= 1:
            raise UserError(f"--detail must be from 0 (off) to 1, not {self.detail:g}")
        if self.detail_tile < MIN_DETAIL_TILE or self.detail_tile > 4096:
            raise UserError(f"--detail-tile must be {MIN_DETAIL_TILE} to 4096 output pixels, not {self.detail_tile}")
        if self.scale is not None and not 0 < self.scale <= 16:
            raise UserError(f"--scale must be above 0 and at most 16, not {self.scale:g}")
        if self.tile is not None and self.tile != 0 and self.tile < 16:
            raise UserError(f"--tile must be 0 (whole image) or at least 16, not {self.tile}")
        if self.overlap is not None and not 0 <= self.overlap <= 256:
            raise UserError(f"--tile-overlap must be 0 to 256, not {self.overlap}")
        if self.precision not in UPSCALE_PRECISIONS:
            raise UserError(f"--precision must be {', '.join(UPSCALE_PRECISIONS[:-1])} or {UPSCALE_PRECISIONS[-1]}, "
                            f"not {self.precision!r}")
        return self

    @property
    def with_detail(self) -> bool:
        return self.detail > 0


def _refuse_upscaler_as_model(model) -> None:
    """``model`` names the diffusion model since ``--detail``; an upscaler there is a mistake."""
    from pathlib import Path

    from ..models.upscaler_weights import PRESETS, WEIGHT_SUFFIXES

    if model is not None and (str(model).lower() in PRESETS or Path(str(model)).suffix.lower() in WEIGHT_SUFFIXES):
        raise UserError(f"{model} is an upscaler: give it as --upscaler {model} (upscaler=...); --model (model=) names "
                        "the diffusion model that --detail draws with")


def build(spec_class, **values):
    """Build a spec, turning pydantic's report into one clear sentence."""
    try:
        return spec_class(**values)
    except ValidationError as err:
        raise UserError(_out_of_range(err, spec_class) or _field_message(err, spec_class)
                        or describe_validation_error(err)) from None


def _field_message(err: ValidationError, spec_class) -> str | None:
    """An error of one field in words a person uses (not pydantic's): an empty prompt, a sentence
    our own validators wrote that already names its subject."""
    first = err.errors()[0]
    loc = first.get("loc", ())
    if len(loc) != 1 or loc[0] not in spec_class.model_fields:
        return None
    name, kind = str(loc[0]), first["type"]
    if kind == "string_too_short":
        return 'the prompt is empty: give the text to render, e.g. "a red fox in snow"' if name == "prompt" \
            else f"{name} is empty"
    if kind == "string_too_long":
        return f"the {name} is too long (at most {(first.get('ctx') or {}).get('max_length')} characters)"
    message = first.get("msg", "")
    if kind == "value_error" and message.startswith("Value error, "):
        message = message[len("Value error, "):]
        if message.startswith((name, "the ", "size ")):  # already a sentence about the field
            return message
    return None


def _out_of_range(err: ValidationError, spec_class) -> str | None:
    """A number outside its field's bounds, named as its option: `--strength must be between 0 and 1, not 1.5`."""
    from ..core.validation import error_message

    first = err.errors()[0]
    loc = first.get("loc", ())
    if not first["type"].startswith(("greater_than", "less_than")) or len(loc) != 1 \
            or loc[0] not in spec_class.model_fields:
        return None
    bounds = {name: getattr(meta, name) for meta in spec_class.model_fields[loc[0]].metadata
              for name in ("ge", "gt", "le", "lt") if getattr(meta, name, None) is not None}
    return f"--{str(loc[0]).replace('_', '-')} {error_message(first, lambda _loc: bounds)}"


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    message = first.get("msg", "is invalid")
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if where:
        where = prefix + where
        return f"{where}: {message}"
    return message
