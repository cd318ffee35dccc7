"""Run configs: a YAML file that says what to explore, refine and upscale.

The sections are pydantic models whose fields are the stage specs' own fields (defaults,
bounds, descriptions copied from ``specs.py``), and every prompt's explore and refine are
built into the real ``ExploreSpec``/``RefineSpec`` when the file loads: one source of truth.

    cfg = load_config("configs/fox.yaml", overrides=["refine.picks=42,97"])
    cfg.runs()          # one PromptRun per prompt: its run name, ExploreSpec, refine seeds

Errors name the file, the line and the key path (``configs/fox.yaml:12: refine.strength:
must be between 0 and 1``); all of them are reported at once, before anything runs.
Imports no torch.
"""
from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema,
                      field_validator, model_validator)

from .config_source import (ConfigError, Source, apply_override, error_message, key_path,  # noqa: F401
                            parse_override, parse_yaml, problem, read_yaml, walk)
from .errors import UserError
from .jobs import MAX_SEED, MAX_SEEDS_PER_SPEC, seeds_from_count, seed_ranges
from .runs import check_run_name, slugify
from .specs import DEFAULT_REFINE_SCALE, DEFAULT_STEPS, ExploreSpec, RefineSpec, _prompt_text, _seeds, _size, build

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
BatchField = Annotated[object, BeforeValidator(_batch),
                       WithJsonSchema({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1, "maximum": 64}],
                                       "description": "pictures denoised together (auto: by device and memory)"})]


def _from(spec, name: str, **changes):
    """A copy of a stage spec's field (default, bounds, description) for a config section."""
    info = copy.copy(spec.model_fields[name])
    for key, value in changes.items():
        setattr(info, key, value)
    return info


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
    seed: int = Field(ge=0, le=MAX_SEED)

    @model_validator(mode="before")
    @classmethod
    def _forms(cls, value):
        if isinstance(value, bool):
            raise ValueError(f"cannot read pick {value!r}: use a seed like 42, or PROMPT:SEED like fox:42")
        if isinstance(value, int):
            return {"seed": value}
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(?:([^:]+?)\s*:\s*)?(\d+)\s*", value)
            if not match:
                raise ValueError(f"cannot read pick {value!r}: use a seed like 42, or PROMPT:SEED like fox:42")
            prompt = match.group(1)
            return {"seed": int(match.group(2)), **({"prompt": prompt} if prompt is not None else {})}
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


UPSCALE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class UpscaleSection(Section):
    model: Optional[str] = Field(default=None, min_length=1, max_length=4096,
                                 description="realesrgan-x4plus (default), realesrgan-x4plus-anime, "
                                             "realesr-animevideov3, or a weights file")
    scale: Optional[float] = Field(default=None, gt=0.0, le=16.0,
                                   description="output size / input size [default: the model's, e.g. 4]")
    tile: Optional[int] = Field(default=None, ge=0, description="tile size in input pixels; 0 = whole image "
                                                                "[default: by memory]")
    overlap: Optional[int] = Field(default=None, ge=0, le=256, description="overlap between tiles [default: 24]")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(default="auto")

    @field_validator("tile")
    @classmethod
    def _tile(cls, value):
        if value is not None and value != 0 and value < 16:
            raise ValueError(f"must be 0 (whole image) or at least 16, not {value}")
        return value

    @field_validator("model")
    @classmethod
    def _weights(cls, value):
        if value is None:
            return value
        from .engines.weights import PRESETS, WEIGHT_SUFFIXES

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


class RunConfig(Section):
    """A run config: the model and its settings, the prompts, and the stages to run."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="pipeline run config")

    model: Optional[str] = Field(default=None, description="Hugging Face repo id, local diffusers folder, or "
                                                           "tiny-random [default: $PIPELINE_MODEL or "
                                                           "Tongyi-MAI/Z-Image-Turbo]")
    memory: Literal["auto", "full", "balanced", "low", "minimal"] = Field(default="auto",
                                                                         description="GPU memory profile")
    device: Optional[str] = Field(default=None, description="cuda, cuda:1, mps or cpu [default: best available]")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(default="auto", description="compute precision")
    out: Optional[str] = Field(default=None, description="output folder, relative to the current folder "
                                                         "[default: $PIPELINE_OUT or outputs]")
    transformer: Optional[str] = Field(default=None, description="single-file transformer (.safetensors/.gguf)")
    text_encoder: Optional[str] = Field(default=None, description="single-file Qwen3-4B text encoder (.safetensors)")
    vae: Optional[str] = Field(default=None, description="single-file Flux VAE (.safetensors)")
    weights_dtype: Optional[Literal["fp8"]] = Field(default=None, description="fp8: transformer weights in float8")
    compile: bool = Field(default=False, description="torch.compile the transformer")
    attention: Optional[str] = Field(default=None, description="attention backend, e.g. flash, sage")
    prompts: list[PromptEntry] = Field(min_length=1, json_schema_extra=_prompts_schema)
    explore: Optional[ExploreSection] = None
    refine: Optional[RefineSection] = None
    upscale: Optional[UpscaleSection] = None

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_forms(cls, value):
        if isinstance(value, str):
            return [{"text": value}]
        if isinstance(value, list):
            return [{"text": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value):
        if value is None:
            return value
        from .models import check_model

        return _user_errors_as_value_errors(check_model)(value)

    # ------------------------------------------------------------ derived

    def run_names(self) -> list[str]:
        """Each prompt's run folder name: its ``name``, else a slug of its text (``-2``… when repeated)."""
        names, taken = [], {p.name for p in self.prompts if p.name}
        for prompt in self.prompts:
            if prompt.name:
                names.append(prompt.name)
                continue
            base = slugify(prompt.text)
            name, n = base, 2
            while name in taken:
                name, n = f"{base}-{n}", n + 1
            taken.add(name)
            names.append(name)
        return names

    def out_dir(self) -> Path:
        return Path(self.out or os.environ.get("PIPELINE_OUT") or "outputs")

    def runs(self) -> list["PromptRun"]:
        names = self.run_names()
        picks = self.picks_by_prompt()
        runs = []
        for index, (prompt, name) in enumerate(zip(self.prompts, names)):
            spec = None
            if self.explore is not None:
                e = self.explore
                spec = build(ExploreSpec, prompt=prompt.text, negative=prompt.negative, seeds=e.resolved_seeds(),
                             size=e.size, steps=e.steps, guidance=e.guidance, batch=e.batch)
            runs.append(PromptRun(index, name, prompt.text, prompt.negative, spec, picks.get(index)))
        return runs

    def picks_by_prompt(self) -> dict[int, list[int]]:
        """{prompt index: seeds to refine}. Assumes ``check`` passed."""
        result: dict[int, list[int]] = {}
        if self.refine is None:
            return result
        for pick in self.refine.picks:
            index = self.prompt_index(pick.prompt)
            seeds = result.setdefault(index, [])
            if pick.seed not in seeds:
                seeds.append(pick.seed)
        return result

    def prompt_index(self, ref) -> int | None:
        if ref is None:
            return 0 if len(self.prompts) == 1 else None
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            index = int(ref)
            return index if 0 <= index < len(self.prompts) else None
        names = self.run_names()
        return names.index(ref) if ref in names else None

    def refine_spec(self, seeds: list[int]) -> RefineSpec:
        r = self.refine
        return build(RefineSpec, seeds=seeds, size=r.size, scale=r.scale, mode=r.mode, strength=r.strength,
                     steps=r.steps, guidance=r.guidance, upscaler=r.upscaler, batch=r.batch)

    def check(self) -> list[tuple[tuple, str]]:
        """Checks across sections: (key path, message) for each problem."""
        problems: list[tuple[tuple, str]] = []
        names = self.run_names()
        seen: dict[str, int] = {}
        for index, prompt in enumerate(self.prompts):
            if prompt.name and prompt.name in seen:
                problems.append((("prompts", index, "name"),
                                 f"name {prompt.name!r} is already the name of prompts[{seen[prompt.name]}]"))
            seen.setdefault(names[index], index)
        if self.refine is None:
            return problems
        explore_seeds = set(self.explore.resolved_seeds()) if self.explore is not None else None
        for i, pick in enumerate(self.refine.picks):
            where = ("refine", "picks", i)
            index = self.prompt_index(pick.prompt)
            if pick.prompt is None and index is None:
                problems.append((where, f"with several prompts, say which prompt seed {pick.seed} belongs to: "
                                        f"{names[0]}:{pick.seed} or {{prompt: 0, seed: {pick.seed}}}"))
            elif index is None:
                close = difflib.get_close_matches(str(pick.prompt), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (prompts: {', '.join(names)})"
                problems.append((where, f"no prompt {pick.prompt!r}{hint}"))
            elif explore_seeds is not None and pick.seed not in explore_seeds:
                problems.append((where, f"seed {pick.seed} is not among explore's seeds "
                                        f"({seed_ranges(sorted(explore_seeds))})"))
        return problems

    # ------------------------------------------------------------ display

    def resolved(self) -> dict:
        """The config with defaults filled in, as plain data (``pipeline config show``)."""
        from .models import default_model

        names = self.run_names()
        data: dict[str, Any] = {
            "model": self.model or default_model(), "memory": self.memory, "device": self.device,
            "dtype": self.dtype, "out": str(self.out_dir()), "transformer": self.transformer,
            "text_encoder": self.text_encoder, "vae": self.vae, "weights_dtype": self.weights_dtype, "compile": self.compile, "attention": self.attention,
            "prompts": [{"text": p.text, "negative": p.negative, "name": name} for p, name in zip(self.prompts, names)],
        }
        if self.explore is not None:
            e = self.explore
            data["explore"] = {"seeds": seed_ranges(e.resolved_seeds(), sep=","), "size": size_text(e.size),
                               "steps": e.steps, "guidance": e.guidance, "batch": e.batch}
        if self.refine is not None:
            r = self.refine
            picks = [(names[self.prompt_index(p.prompt)], p.seed) for p in self.refine.picks]
            data["refine"] = {
                "picks": [seed for _, seed in picks] if len(self.prompts) == 1 else
                         [f"{name}:{seed}" for name, seed in picks],
                "size": size_text(r.size) if r.size else None,
                "scale": r.scale if r.scale is not None or r.size is not None else DEFAULT_REFINE_SCALE,
                "mode": r.mode, "strength": r.strength, "steps": r.steps or DEFAULT_STEPS, "guidance": r.guidance,
                "upscaler": r.upscaler, "batch": r.batch,
            }
        if self.upscale is not None:
            u = self.upscale
            from .engines.weights import DEFAULT_WEIGHTS

            data["upscale"] = {"model": u.model or DEFAULT_WEIGHTS, "scale": u.scale, "tile": u.tile,
                               "overlap": u.overlap, "precision": u.precision}
        return data


@dataclass
class PromptRun:
    """What one prompt of a config does."""

    index: int
    name: str  # the run folder's name under out/
    prompt: str
    negative: str
    explore: ExploreSpec | None
    refine_seeds: list[int] | None  # None: nothing to refine for this prompt


def size_text(size) -> str:
    return f"{size[0]}x{size[1]}"




def json_schema() -> dict:
    schema = RunConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


@dataclass
class LoadedConfig:
    config: RunConfig
    source: Source

    def where(self, path: tuple) -> str:
        return problem(self.source, path, "").rstrip(": ")

    def error(self, path: tuple, message: str) -> ConfigError:
        return ConfigError([problem(self.source, path, message)])


def load_config(path: str | Path, overrides=()) -> LoadedConfig:
    """Read, override (``KEY=VALUE`` strings) and validate a config file."""
    data, source = read_yaml(path)
    return parse_config(data, source, overrides)


def parse_config(data, source: Source, overrides=()) -> LoadedConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source.where(())}: a config is a mapping of keys (model:, prompts:, explore:, ...), "
                           f"not a {type(data).__name__}"])
    data = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        apply_override(data, parts, value, text)
        source.overrides[parts] = f"--set {text}"
    data = {k: v for k, v in data.items()}
    problems = [(source.order(p), problem(source, p, m)) for p, m in unknown_keys(data)]
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        problems += describe_errors(err, data, source)
    if problems:
        raise ConfigError([text for _, text in sorted(problems, key=lambda p: p[0])])
    problems = [problem(source, p, m) for p, m in config.check()]
    if not problems:
        try:
            config.runs()  # builds every ExploreSpec: the specs' own validation
            for seeds in config.picks_by_prompt().values():
                config.refine_spec(seeds)
        except UserError as err:
            problems.append(f"{source.label}: {err}")
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, source)


# ---------------------------------------------------------------- unknown keys

_CHILDREN = {
    "RunConfig": {"explore": ExploreSection, "refine": RefineSection, "upscale": UpscaleSection,
                  "prompts": [PromptEntry]},
    "RefineSection": {"picks": [Pick]},
}
_ALIASES = {"RefineSection": {"seeds"}}


def _all_keys() -> dict[str, str]:
    """{key: section.key} for a hint when a key is in the wrong section."""
    found = {}
    for name, section in (("explore", ExploreSection), ("refine", RefineSection), ("upscale", UpscaleSection)):
        for key in section.model_fields:
            found.setdefault(key, f"{name}.{key}")
    return found


def unknown_keys(data: dict, model=RunConfig, path: tuple = ()) -> list[tuple[tuple, str]]:
    problems = []
    if not isinstance(data, dict):
        return problems
    known = list(model.model_fields)
    allowed = set(known) | _ALIASES.get(model.__name__, set())
    for key in data:
        if key in allowed:
            continue
        name = str(key)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif path == () and difflib.get_close_matches(name, list(_all_keys()), n=1, cutoff=0.75):
            other = _all_keys()[difflib.get_close_matches(name, list(_all_keys()), n=1, cutoff=0.75)[0]]
            hint = f"; did you mean {other!r} (in the {other.split('.')[0]} section)?"
        else:
            hint = f"; known keys: {', '.join(known)}"
        problems.append((path + (key,), f"unknown key{hint}"))
    for key, child in _CHILDREN.get(model.__name__, {}).items():
        value = data.get(key)
        if key == "picks" and value is None:
            value = data.get("seeds")
            key = "seeds"
        if isinstance(child, list):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    problems += unknown_keys(item, child[0], path + (key, index))
        else:
            problems += unknown_keys(value, child, path + (key,))
    return problems


# ---------------------------------------------------------------- pydantic's errors, in the config's words

def _bounds(loc) -> dict:
    """The numeric bounds of the field at ``loc`` (ge/gt/le/lt), looked up in the section models."""
    model = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        fields = model.model_fields
        if part not in fields:
            return {}
        info = fields[part]
        child = _CHILDREN.get(model.__name__, {}).get(part)
        if child is None:
            bounds = {}
            for meta in info.metadata:
                for name in ("ge", "gt", "le", "lt"):
                    if getattr(meta, name, None) is not None:
                        bounds[name] = getattr(meta, name)
            return bounds
        model = child[0] if isinstance(child, list) else child
    return {}


def describe_errors(err: ValidationError, data: dict, source: Source) -> list[tuple]:
    """(sort key, `where: key.path: message`) for each of pydantic's errors, one per key."""
    problems: list[tuple] = []
    seen: set = set()
    for error in err.errors():
        if error["type"] == "extra_forbidden":
            continue  # reported by unknown_keys, with a suggestion
        found, rest = walk(data, error["loc"])
        path = found + rest if error["type"] == "missing" else found
        if path in seen:
            continue  # one message per key (a union reports each of its members)
        seen.add(path)
        where = source.where(found)
        text = f"{where}: {key_path(path)}: {error_message(error, _bounds)}" if path else f"{where}: {error_message(error, _bounds)}"
        problems.append((source.order(found), text))
    return problems
