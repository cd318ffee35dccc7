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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import describe_errors, unknown_keys
from .schema import (DEFAULT_COUNT, ExploreSection, Loras, Pick, PromptEntry, RefineSection, VarySection,  # noqa: F401
                            Section, UpscaleSection, _prompts_schema, _user_errors_as_value_errors)
from .source import (ConfigError, Source, apply_override, error_message, key_path,  # noqa: F401
                            parse_override, parse_yaml, problem, read_yaml, walk)
from ..core.errors import UserError
from ..core.seeds import pick_root, seed_ranges
from ..core.runs import slugify
from .inpaint_section import InpaintSection
from ..stages.specs import DEFAULT_REFINE_SCALE, DEFAULT_STEPS, ExploreSpec, RefineSpec, VarySpec, build


MODEL_FILES = ("transformer", "text_encoder", "vae")  # single files a config's model: section may name


class RunConfig(Section):
    """A run config: the model and its settings, the prompts, and the stages to run."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="pipeline run config")

    model: Optional[str] = Field(default=None, description="Hugging Face repo id (ORG/NAME[@REVISION]), local "
                                                           "diffusers folder, ComfyUI install, or tiny-random "
                                                           "[default: $PIPELINE_MODEL or Tongyi-MAI/Z-Image-Turbo]; "
                                                           "or a mapping of source, transformer, text_encoder, vae")
    memory: Literal["auto", "full", "balanced", "low", "minimal"] = Field(default="auto",
                                                                         description="GPU memory profile")
    device: Optional[str] = Field(default=None, description="cuda, cuda:1, mps or cpu [default: best available]")
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(default="auto", description="compute precision")
    out: Optional[str] = Field(default=None, description="output folder, relative to the current folder "
                                                         "[default: $PIPELINE_OUT or outputs]")
    transformer: Optional[str] = Field(default=None, description="single-file transformer (.safetensors/.gguf)")
    text_encoder: Optional[str] = Field(default=None, description="single-file Qwen3-4B text encoder (.safetensors)")
    vae: Optional[str] = Field(default=None, description="single-file Flux VAE (.safetensors)")
    weights_dtype: Optional[Literal["int8", "fp8"]] = Field(default=None, description="int8 / fp8: transformer "
                                                                                     "weights in 8 bits")
    compile: bool = Field(default=False, description="torch.compile the transformer")
    attention: Optional[str] = Field(default=None, description="attention backend, e.g. flash, sage")
    loras: Loras = Field(default=None, description="LoRAs for every stage (explore's; refine and vary use the "
                                                   "candidate's); a stage's own loras replace them")
    prompts: list[PromptEntry] = Field(min_length=1, json_schema_extra=_prompts_schema)
    explore: Optional[ExploreSection] = None
    vary: Optional[VarySection] = None
    refine: Optional[RefineSection] = None
    upscale: Optional[UpscaleSection] = None
    inpaint: Optional[InpaintSection] = None  # after explore and refine, before upscale

    @model_validator(mode="before")
    @classmethod
    def _model_section(cls, data):
        """``model: {source: ..., transformer: ..., text_encoder: ..., vae: ...}`` is the top-level keys' other form."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            return data
        data, section = dict(data), dict(data["model"])
        unknown = sorted(set(section) - {"source", *MODEL_FILES})
        if unknown:
            raise ValueError(f"model: unknown key {unknown[0]!r} (a model section has source, "
                             f"{', '.join(MODEL_FILES)})")
        for key in MODEL_FILES:
            if key in section:
                if data.get(key) is not None:
                    raise ValueError(f"{key} is given twice, at the top level and under model:")
                data[key] = section[key]
        data["model"] = section.get("source")
        return data

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_forms(cls, value):
        if isinstance(value, str):
            return [{"text": value}]
        if isinstance(value, list):
            return [{"text": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value):
        from ..core.hardware import check_device

        return _user_errors_as_value_errors(check_device)(value)

    @field_validator("model")
    @classmethod
    def _model(cls, value):
        if value is None:
            return value
        from ..models.names import check_model

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
        vary_picks = self.picks_by_prompt("vary")
        runs = []
        for index, (prompt, name) in enumerate(zip(self.prompts, names)):
            spec = None
            if self.explore is not None:
                e = self.explore
                spec = build(ExploreSpec, prompt=prompt.text, negative=prompt.negative, seeds=e.resolved_seeds(),
                             size=e.size, steps=e.steps, guidance=e.guidance, batch=e.batch, variance=e.variance,
                             variance_share=e.variance_share, variance_steps=e.variance_steps,
                             loras=e.loras if e.loras is not None else self.loras or [], control=e.control)
            runs.append(PromptRun(index, name, prompt.text, prompt.negative, spec, picks.get(index),
                                  vary_picks.get(index)))
        return runs

    def picks_by_prompt(self, section: str = "refine") -> dict[int, list]:
        """{prompt index: seeds (or variation ids) to refine, or to vary}. Assumes ``check`` passed."""
        result: dict[int, list] = {}
        if getattr(self, section) is None:
            return result
        for pick in getattr(self, section).picks:
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

    def vary_spec(self, seeds: list) -> VarySpec:
        v = self.vary
        return build(VarySpec, seeds=seeds, count=v.count, strength=v.strength, steps=v.steps, batch=v.batch,
                     loras=v.loras, control=v.control)

    def refine_spec(self, seeds: list[int]) -> RefineSpec:
        r = self.refine
        return build(RefineSpec, seeds=seeds, size=r.size, scale=r.scale, mode=r.mode, strength=r.strength,
                     steps=r.steps, guidance=r.guidance, upscaler=r.upscaler, batch=r.batch, loras=r.loras,
                     control=r.control)

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
        explore_seeds = set(self.explore.resolved_seeds()) if self.explore is not None else None
        for section in ("vary", "refine"):
            if getattr(self, section) is not None:
                problems += self._check_picks(section, names, explore_seeds)
        return problems

    def _check_picks(self, section: str, names: list[str], explore_seeds: set | None) -> list[tuple[tuple, str]]:
        problems: list[tuple[tuple, str]] = []
        for i, pick in enumerate(getattr(self, section).picks):
            where = (section, "picks", i)
            index = self.prompt_index(pick.prompt)
            if pick.prompt is None and index is None:
                problems.append((where, f"with several prompts, say which prompt seed {pick.seed} belongs to: "
                                        f"{names[0]}:{pick.seed} or {{prompt: 0, seed: {pick.seed}}}"))
            elif index is None:
                close = difflib.get_close_matches(str(pick.prompt), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (prompts: {', '.join(names)})"
                problems.append((where, f"no prompt {pick.prompt!r}{hint}"))
            elif explore_seeds is not None and pick_root(pick.seed) not in explore_seeds:
                problems.append((where, f"seed {pick_root(pick.seed)} is not among explore's seeds "
                                        f"({seed_ranges(sorted(explore_seeds))})"))
        return problems

    # ------------------------------------------------------------ display

    def resolved(self) -> dict:
        """The config with defaults filled in, as plain data (``pipeline config show``)."""
        from ..models.names import default_model

        names = self.run_names()
        data: dict[str, Any] = {
            "model": self.model or default_model(), "memory": self.memory, "device": self.device,
            "dtype": self.dtype, "out": str(self.out_dir()), "transformer": self.transformer,
            "text_encoder": self.text_encoder, "vae": self.vae, "weights_dtype": self.weights_dtype,
            "compile": self.compile, "attention": self.attention,
            "prompts": [{"text": p.text, "negative": p.negative, "name": name} for p, name in zip(self.prompts, names)],
        }
        if self.explore is not None:
            e = self.explore
            data["explore"] = {"seeds": seed_ranges(e.resolved_seeds(), sep=","), "size": size_text(e.size),
                               "steps": e.steps, "guidance": e.guidance, "batch": e.batch}
            if e.variance:
                data["explore"].update(variance=e.variance, variance_share=e.variance_share,
                                       variance_steps=e.variance_steps)
        if self.vary is not None:
            v = self.vary
            picks = [(names[self.prompt_index(p.prompt)], p.seed) for p in v.picks]
            data["vary"] = {"picks": [seed for _, seed in picks] if len(self.prompts) == 1 else
                                     [f"{name}:{seed}" for name, seed in picks],
                            "count": v.count, "strength": v.strength, "steps": v.steps, "batch": v.batch}
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
                **({"detail_faces": r.detail_faces} if r.detail_faces else {}),
            }
        if self.upscale is not None:
            u = self.upscale
            from ..models.upscaler_weights import DEFAULT_WEIGHTS

            data["upscale"] = {"upscaler": u.upscaler or DEFAULT_WEIGHTS, "scale": u.scale, "tile": u.tile,
                               "overlap": u.overlap, "precision": u.precision,
                               **({"detail": u.detail, "detail_tile": u.detail_tile} if u.detail else {}),
                               **({"detail_faces": u.detail_faces} if u.detail_faces else {})}
        if self.inpaint is not None:
            data["inpaint"] = self.inpaint.model_dump()
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
    vary_seeds: list | None = None  # None: nothing to vary for this prompt


def size_text(size) -> str:
    return f"{size[0]}x{size[1]}"




def json_schema() -> dict:
    schema = RunConfig.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


@dataclass
class LoadedConfig:
    config: RunConfig
    source: Source
    resolved: bool = False  # what it names (files, LoRAs, weights, model) was looked for (config_resolve)
    unresolved: list = field(default_factory=list)  # (order, ``file:line: key: sentence``) of what was not found

    def raise_unresolved(self) -> None:
        """A config whose files were looked for is refused here when any was not found (``pipeline run``
        lists them with the run folders' problems instead: see ``runner.preflight``)."""
        if self.unresolved:
            raise ConfigError([text for _, text in sorted(self.unresolved, key=lambda p: p[0])])

    def where(self, path: tuple) -> str:
        return problem(self.source, path, "").rstrip(": ")

    def error(self, path: tuple, message: str) -> ConfigError:
        return ConfigError([problem(self.source, path, message)])


def load_config(path: str | Path, overrides=(), *, resolve: bool = False) -> LoadedConfig:
    """Read, override (``KEY=VALUE`` strings) and validate a config file; with ``resolve``, also find
    everything it names (LoRAs, weights, model, single files), its problems listed with the others."""
    data, source = read_yaml(path)
    return parse_config(data, source, overrides, resolve=resolve)


def parse_config(data, source: Source, overrides=(), *, resolve: bool = False) -> LoadedConfig:
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
    unknown = unknown_keys(data, RunConfig)
    problems = [(source.order(p), problem(source, p, m)) for p, m in unknown]
    bad = [p for p, _ in unknown]
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as err:
        described = describe_errors(err, data, source, RunConfig)
        problems += [(order, text) for order, text, _ in described]
        bad += [path for _, _, path in described]
        config = _without(data, bad)  # to check the rest too: every problem is reported at once
    if config is not None:
        problems += [(source.order(p), problem(source, p, m)) for p, m in config.check()]
    unresolved = []
    if config is not None and resolve:
        unresolved = [(source.order(p), text) for p, text in resolved_problems(config, source)]
    texts = [text for _, text in sorted(problems + (unresolved if problems else []), key=lambda p: p[0])]
    if config is not None and not texts:
        texts = _spec_problems(config, source)
    if texts:
        raise ConfigError(texts)
    return LoadedConfig(config, source, resolved=resolve, unresolved=unresolved)


def resolved_problems(config: RunConfig, source: Source) -> list[tuple[tuple, str]]:
    """(key path, ``file:line: key: sentence``) for each file, LoRA, weights or model the config names
    that cannot be found (``config_resolve.RESOLVERS``: ControlNets and masks add theirs there)."""
    from .resolve import resolve_problems

    found = []
    for path, message in resolve_problems(config):
        if path and path not in source.lines and ("model", *path) in source.lines:
            path = ("model", *path)  # a single file given under `model:` (its mapping form)
        found.append((path, problem(source, path, message)))
    return found


def _spec_problems(config: RunConfig, source: Source) -> list[str]:
    """What the stage specs' own validation says of the config's explore and refine."""
    try:
        config.runs()  # builds every ExploreSpec
        for seeds in config.picks_by_prompt().values():
            config.refine_spec(seeds)
    except UserError as err:
        return [f"{source.label}: {err}"]
    return []


def _without(data: dict, paths: list[tuple]) -> RunConfig | None:
    """The config with the keys at ``paths`` left out, if what remains is valid; else None."""
    data = copy.deepcopy(data)
    for path in paths:
        parent = data
        for part in path[:-1]:
            parent = parent[part] if isinstance(parent, (dict, list)) and _has(parent, part) else None
        if isinstance(parent, dict) and path and path[-1] in parent:
            del parent[path[-1]]
        elif path:
            return None  # a bad list item: leaving it out would renumber the others
    try:
        return RunConfig.model_validate(data)
    except ValidationError:
        return None


def _has(container, part) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(part, int) and 0 <= part < len(container)
