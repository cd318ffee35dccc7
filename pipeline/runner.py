"""Run a config: each prompt's explore → refine → upscale, through one Pipeline (the model loads once).

    from pipeline.config import load_config
    from pipeline.runner import run_config
    result = run_config(load_config("configs/smoke.yaml"))
    result.runs[0].stages["refine"].paths

Everything that can be checked is checked before anything runs (the config, and the run
folders it names on disk). A dry run reports, per stage, how many jobs are stored and how
many would be computed, without loading a model; a stage whose inputs do not exist yet
(refine before its candidates are rendered) reports its size and says its counts wait.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .core import registry
from .core.errors import UserError
from .config.loader import ConfigError, LoadedConfig, PromptRun, RunConfig, Source, size_text
from .core.runs import load_run, stage_pictures
from .stages.common import StageResult

STAGES = registry.names()


@dataclass
class PendingStage:
    """A dry-run stage whose stored/computed counts are known only after an earlier stage has run."""

    stage: str
    planned: int
    waits_for: str

    stored = None
    computed = None
    items: tuple = ()
    run_dir = None

    def to_json(self) -> dict:
        return {"stage": self.stage, "run_dir": None, "planned": self.planned, "stored": None, "computed": None,
                "dry_run": True, "waits_for": self.waits_for, "items": []}


@dataclass
class RunOutcome:
    """What one prompt of the config did (or, in a dry run, would do)."""

    name: str
    prompt: str
    run_dir: Path
    stages: dict = field(default_factory=dict)  # stage name -> StageResult | PendingStage

    def to_json(self) -> dict:
        return {"name": self.name, "prompt": self.prompt, "run_dir": str(self.run_dir),
                "stages": {name: result.to_json() for name, result in self.stages.items()}}


@dataclass
class ConfigResult:
    runs: list[RunOutcome]
    dry_run: bool
    out: Path
    config: str = ""

    def totals(self) -> dict:
        """{stage: {planned, stored, computed}}; stored/computed are None when some are not known yet."""
        totals = {}
        for stage in STAGES:
            results = [run.stages[stage] for run in self.runs if stage in run.stages]
            if not results:
                continue
            known = all(r.stored is not None for r in results)
            totals[stage] = {"planned": sum(r.planned for r in results),
                             "stored": sum(r.stored for r in results) if known else None,
                             "computed": sum(r.computed for r in results) if known else None}
        return totals

    @property
    def computed(self) -> int:
        return sum(t["computed"] or 0 for t in self.totals().values())

    def to_json(self) -> dict:
        return {"config": self.config, "out": str(self.out), "dry_run": self.dry_run, "totals": self.totals(),
                "runs": [run.to_json() for run in self.runs]}


def pipeline_for(config: RunConfig, progress: bool = False, ray: str | None = None):
    from .api import Pipeline

    return Pipeline(model=config.model, out=config.out_dir(), device=config.device, dtype=config.dtype,
                    memory=config.memory, progress=progress, transformer=config.transformer,
                    weights_dtype=config.weights_dtype, compile=config.compile, attention=config.attention,
                    text_encoder=config.text_encoder, vae=config.vae, ray=ray)


def run_config(loaded: LoadedConfig | RunConfig, *, dry_run: bool = False, progress: bool = False,
               pipeline=None, ray: str | None = None) -> ConfigResult:
    """Run (or plan, with ``dry_run``) a config. ``pipeline``: a Pipeline to reuse (its model stays loaded);
    ``ray``: render on a Ray pool (``Pipeline(ray=...)``)."""
    if isinstance(loaded, RunConfig):
        loaded = LoadedConfig(loaded, Source("<config>"))
    config = loaded.config
    problems = resolve(loaded)  # everything the config names, before a model or a folder is touched
    owned = pipeline is None
    try:
        p = pipeline if pipeline is not None else pipeline_for(config, progress, ray)
    except UserError:
        if problems:  # e.g. its model: what the config names says it better, and all at once
            raise ConfigError(problems) from None
        raise
    try:
        runs = config.runs()
        preflight(loaded, p.session, runs, problems)
        step = _plan_one if dry_run else _run_one
        outcomes = [step(config, p, run) for run in runs]
    finally:
        if owned:
            p.close()
    return ConfigResult(outcomes, dry_run, p.session.out, loaded.source.label)


# ---------------------------------------------------------------- checks before anything runs

_HEADER = ("prompt", "negative", "model", "width", "height", "steps", "guidance")


def resolve(loaded: LoadedConfig) -> list[str]:
    """``file:line: key: sentence`` for each file, LoRA, weights or model the config names that cannot
    be found (``config_resolve.RESOLVERS``), in the file's order; looked for now unless the config
    was loaded with ``resolve``."""
    from .config.loader import resolved_problems

    if loaded.resolved:
        found = loaded.unresolved
    else:
        found = [(loaded.source.order(path), text) for path, text in resolved_problems(loaded.config, loaded.source)]
    return [text for _, text in sorted(found, key=lambda f: f[0])]


def preflight(loaded: LoadedConfig, session, runs: list[PromptRun], problems: list[str] | None = None) -> None:
    """What the config asks of the run folders on disk, checked before any stage runs; ``problems``
    (already found, e.g. by ``resolve``) are listed with them."""
    config, problems = loaded.config, list(problems or [])
    for run in runs:
        run_dir = session.out / run.name
        try:
            data = load_run(run_dir)
        except OSError:  # e.g. out is a file: the resolvers said so
            data = {}
        here = ("prompts", run.index)
        if run.explore is not None:
            if data:
                spec = run.explore
                wanted = {"prompt": spec.prompt, "negative": spec.negative, "model": session.model,
                          "width": spec.size[0], "height": spec.size[1], "steps": spec.steps,
                          "guidance": spec.guidance}
                changed = [k for k in _HEADER if k in data and data.get(k) != wanted[k]]
                if data.get("variance") != spec.variance_settings():
                    changed.append("variance")
                    wanted["variance"] = spec.variance_settings()
                if changed:
                    problems.append(loaded.error(here, f"run {run_dir} was explored with other settings "
                                                       f"({_differences(data, wanted, changed)}); give the prompt a "
                                                       f"new name (its `name:` key; a new run) or change them back").problems[0])
            continue
        needs_run = run.refine_seeds or run.vary_seeds or (config.upscale is not None and config.refine is None)
        if needs_run and not data:
            problems.append(loaded.error(here, f"run {run_dir} does not exist yet; add an explore section to "
                                               f"render its candidates").problems[0])
        else:
            candidates = {c.get("seed") for c in stage_pictures(data, "explore")}
            for section, seeds in (("vary", run.vary_seeds), ("refine", run.refine_seeds)):
                # a variation to refine may be made by this config's vary section
                missing = [seed for seed in seeds or [] if seed not in candidates
                           and not (section == "refine" and isinstance(seed, str) and config.vary is not None)]
                if missing:
                    from .core.seeds import pick_order, seed_ranges

                    known = seed_ranges(sorted(candidates, key=pick_order)) or "none"
                    problems.append(loaded.error((section, "picks"), f"seed {missing[0]} is not a candidate of run "
                                                 f"{run_dir} (its seeds: {known}); add it to explore.seeds"
                                                 ).problems[0])
    if problems:
        raise ConfigError(problems)


def _differences(data: dict, wanted: dict, changed: list[str]) -> str:
    def show(source, key):
        if key == "width":
            return size_text((source["width"], source.get("height")))
        return repr(source.get(key))

    keys = ["size" if k in ("width", "height") else k for k in changed]
    parts = []
    for key in dict.fromkeys(keys):
        k = "width" if key == "size" else key
        parts.append(f"{key} {show(data, k)} there, {show(wanted, k)} here")
    return "; ".join(parts)


# ---------------------------------------------------------------- running

def _explore(p, spec, name, dry_run=False) -> StageResult:
    return p.explore(spec, run=name, dry_run=dry_run)  # the spec the config built


def _vary(p, config: RunConfig, seeds, run_dir: Path, dry_run=False) -> StageResult:
    return p.vary(config.vary_spec(seeds), run=str(run_dir), dry_run=dry_run)


def _refine(p, config: RunConfig, seeds, run_dir: Path, dry_run=False) -> StageResult:
    return p.refine(config.refine_spec(seeds), run=str(run_dir), dry_run=dry_run,
                    detail_faces=config.refine.detail_faces)


def _inpaint(p, config: RunConfig, run_dir: Path, dry_run=False) -> StageResult:
    return p.inpaint(run=str(run_dir), spec=config.inpaint.spec(), dry_run=dry_run)


def _upscale(p, config: RunConfig, images, run_dir: Path | None, dry_run=False) -> StageResult:
    from .stages.specs import UpscaleSpec, build

    u = config.upscale
    spec = build(UpscaleSpec, upscaler=u.upscaler, scale=u.scale, tile=u.tile, overlap=u.overlap,
                 precision=u.precision, detail=u.detail, detail_tile=u.detail_tile)
    return p.upscale(images, run=str(run_dir) if images is None else None, spec=spec, dry_run=dry_run,
                     detail_faces=u.detail_faces)


def _run_one(config: RunConfig, p, run: PromptRun) -> RunOutcome:
    outcome = RunOutcome(run.name, run.prompt, p.session.out / run.name)
    previous = None
    if run.explore is not None:
        previous = outcome.stages["explore"] = _explore(p, run.explore, run.name)
        outcome.run_dir = previous.run_dir
    if config.vary is not None and run.vary_seeds:
        outcome.stages["vary"] = _vary(p, config, run.vary_seeds, outcome.run_dir)
    if config.refine is not None and run.refine_seeds:
        previous = outcome.stages["refine"] = _refine(p, config, run.refine_seeds, outcome.run_dir)
    if config.inpaint is not None:
        outcome.stages["inpaint"] = _inpaint(p, config, outcome.run_dir)
    if config.upscale is not None and (config.refine is None or run.refine_seeds):
        outcome.stages["upscale"] = _upscale(p, config, previous, outcome.run_dir)
    return outcome


def _plan_one(config: RunConfig, p, run: PromptRun) -> RunOutcome:
    """Dry run of one prompt: exact counts where the inputs are stored, else the stage's size."""
    outcome = RunOutcome(run.name, run.prompt, p.session.out / run.name)
    inputs: list[Path] | None = None  # the previous stage's stored pictures, when all are stored
    pending = None
    if run.explore is not None:
        result = outcome.stages["explore"] = _explore(p, run.explore, run.name, dry_run=True)
        inputs = _stored_explore(p.session, run.explore, run.explore.seeds)
        pending = None if result.computed == 0 else "explore"
    if config.vary is not None and run.vary_seeds:
        recorded = {c.get("seed") for c in stage_pictures(load_run(outcome.run_dir), "explore")}
        if pending is None and set(run.vary_seeds) <= recorded:
            outcome.stages["vary"] = _vary(p, config, run.vary_seeds, outcome.run_dir, dry_run=True)
        else:
            outcome.stages["vary"] = PendingStage("vary", len(run.vary_seeds) * config.vary.count, "explore")
    if config.refine is not None and run.refine_seeds:
        parents = _stored_explore(p.session, run.explore, run.refine_seeds) if run.explore is not None else []
        recorded = {c.get("seed") for c in stage_pictures(load_run(outcome.run_dir), "explore")}
        on_disk = set(run.refine_seeds) <= recorded
        if parents is not None and on_disk:
            result = outcome.stages["refine"] = _refine(p, config, run.refine_seeds, outcome.run_dir, dry_run=True)
            inputs = _stored_refine(p.session, config, run.refine_seeds, outcome.run_dir)
            pending = None if result.computed == 0 else "refine"
        else:
            outcome.stages["refine"] = PendingStage("refine", len(run.refine_seeds), "explore")
            inputs, pending = None, "explore"
    if config.inpaint is not None:
        outcome.stages["inpaint"] = _plan_inpaint(p, config, outcome.run_dir, pending)
    if config.upscale is not None and (config.refine is None or run.refine_seeds):
        count = len(run.refine_seeds) if run.refine_seeds else len(run.explore.seeds) if run.explore else 0
        if inputs is not None and pending is None:
            outcome.stages["upscale"] = _upscale(p, config, inputs, None, dry_run=True)
        elif run.explore is None and config.refine is None:
            outcome.stages["upscale"] = _upscale(p, config, None, outcome.run_dir, dry_run=True)
        else:
            outcome.stages["upscale"] = PendingStage("upscale", count, pending or "refine")
    return outcome


def _plan_inpaint(p, config: RunConfig, run_dir: Path, pending: str | None):
    """The fixes' counts when their pictures are recorded already, else pending on the stage that makes them."""
    i = config.inpaint
    waits_for = pending
    if waits_for is None:
        recorded = {str(c.get("seed")).lower() for c in stage_pictures(load_run(run_dir), i.source)}
        if {str(pick).lower() for pick in i.picks} <= recorded:
            return _inpaint(p, config, run_dir, dry_run=True)
        waits_for = i.source
    return PendingStage("inpaint", len(i.picks), waits_for)


def _stored_explore(session, spec, seeds) -> list[Path] | None:
    """The stored candidate files of ``seeds``, or None when any is not stored yet."""
    from .stages.explore import plan

    loras = session.resolve_loras(spec.loras)
    jobs = {job.seed: job for job in plan(spec, session.fingerprint, session.dtype, loras)}
    return _stored(session, [jobs[seed].key for seed in seeds if seed in jobs])


def _stored_refine(session, config: RunConfig, seeds, run_dir: Path) -> list[Path] | None:
    from .stages.refine import plan

    the_plan = plan(session, config.refine_spec(seeds), str(run_dir))
    return _stored(session, [pick.job.key for pick in the_plan.picks])


def _stored(session, keys: list[str]) -> list[Path] | None:
    paths = []
    for key in keys:
        if not session.store.has(key):
            return None
        artifact = session.store.get(key)
        if artifact is None:
            return None
        paths.append(artifact.path)
    return paths
