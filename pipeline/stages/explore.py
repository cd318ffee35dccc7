"""Explore: many candidates of one prompt across seeds, cached, laid out to pick from."""
from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import UserError
from ..core.jobs import RenderJob, make_variance, render_fields
from ..core.seeds import pick_order
from ..models.names import display_name
from ..core.runs import (check_run_name, load_run, merge_pictures, new_run_data, new_run_dir, release_run_dir,
                    set_latest, stage_pictures, update_run)
from ..core.store import check_writable
from ..engines.request import RenderRequest
from .specs import ExploreSpec
from .common import Item, StageResult, resolve_batch, store_picture  # noqa: F401 - resolve_batch: compat's name
from .sheet import write_contact_sheet
from .executor import Executor, StageWork, Work

log = logging.getLogger("pipeline")

STAGE_DIR = "explore"


def plan(spec: ExploreSpec, fingerprint: str, dtype: str, loras=()) -> list[RenderJob]:
    """The jobs of an explore: one per seed. Pure and cheap (``loras``: resolved, ``engines.lora.Lora``)."""
    width, height = spec.size
    return [
        RenderJob(**render_fields(model=fingerprint, prompt=spec.prompt, negative=spec.negative, width=width,
                                  height=height, steps=spec.steps, guidance=spec.guidance, seed=seed, dtype=dtype,
                                  variance=make_variance(spec.variance, spec.variance_share, spec.variance_steps,
                                                         seed), loras=loras))
        for seed in spec.seeds
    ]


def lora_records(loras) -> list[dict]:
    """The LoRAs of a picture or run as recorded (name, sha256, weight, A1111's short hash)."""
    return [lora.record() for lora in loras]


def candidate_name(seed: int) -> str:
    return f"seed-{seed}.png"


def run_header(session, spec: ExploreSpec, loras=()) -> dict:
    variance = spec.variance_settings()  # only when on: runs without it keep today's run.json
    return {**({"variance": variance} if variance else {}), **({"loras": lora_records(loras)} if loras else {}),
        "prompt": spec.prompt,
        "negative": spec.negative,
        "model": session.model,
        "model_name": display_name(session.model),
        "model_fingerprint": session.fingerprint,
        "width": spec.size[0],
        "height": spec.size[1],
        "steps": spec.steps,
        "guidance": spec.guidance,
        "dtype": session.dtype,
    }


SETTINGS = ("prompt", "negative", "model", "width", "height", "steps", "guidance", "variance")  # one run, one set


def _lora_settings(records) -> list:
    return [(r.get("sha256"), r.get("weight")) for r in records or () if isinstance(r, dict)]


def _check_settings(run_dir: Path, data: dict, header: dict) -> None:
    old = {k: data.get(k) for k in SETTINGS} | {"loras": _lora_settings(data.get("loras"))}
    new = {k: header.get(k) for k in SETTINGS} | {"loras": _lora_settings(header.get("loras"))}
    if old != new:
        changed = ", ".join(k for k in old if old[k] != new[k])
        raise UserError(f"run {run_dir} was explored with other settings ({changed}); choose another --run name")


def _open_run(session, spec: ExploreSpec, run: str | None, share, loras=()) -> tuple[Path, dict]:
    # one name for all processes; without --run the main process claims a new folder (mkdir), so
    # two explores started in the same second never share one
    claimed = share.main and run is None
    run_dir = share.agree(new_run_dir(session.out, spec.prompt, run, claim=claimed))
    header = run_header(session, spec, loras)
    data = load_run(run_dir)
    if data:
        _check_settings(run_dir, data, header)
        data.pop("loras", None)
        data.update(header)
    else:
        data = {**new_run_data(header), "explore": {"pictures": []}}
    return run_dir, data


def _record_candidates(data: dict, items: list[Item], run_dir: Path) -> None:
    by_seed = {c["seed"]: c for c in data.setdefault("explore", {}).setdefault("pictures", [])}
    for item in items:
        by_seed[item.seed] = {"seed": item.seed, "key": item.key, "path": str(item.path.relative_to(run_dir)),
                              "seconds": item.seconds, "cached": item.cached}
    data["explore"]["pictures"] = sorted(by_seed.values(), key=lambda c: pick_order(c["seed"]))  # 42, 42v1, 43


def explore(session, spec: ExploreSpec, *, run: str | None = None, dry_run: bool = False, on_picture=None,
            stop=None) -> StageResult:
    """``on_picture(item)`` is called as each picture is in the run folder (stored ones first);
    ``stop`` (a ``threading.Event``) ends the run after the current picture, keeping the finished ones."""
    loras = session.resolve_loras(spec.loras)
    jobs = plan(spec, session.fingerprint, session.dtype, loras)
    if run is not None:
        check_run_name(run)  # a dry run refuses what the real one would
    executor = Executor(session)
    works = [Work(job.seed, job) for job in jobs]
    if dry_run:
        stored = executor.dry_run(works)
        return StageResult("explore", None, planned=len(jobs), stored=stored, computed=len(jobs) - stored, dry_run=True)

    run_dir, data = _open_run(session, spec, run, executor.share, loras)
    stage = ExploreWork(session, spec, run_dir, data, loras)
    try:
        ordered = executor.run(stage, works, stop=stop, on_picture=on_picture)
    finally:
        if run is None and executor.main:
            release_run_dir(run_dir)  # claimed but still empty: failed or stopped before its first picture
    computed = sum(not item.cached for item in ordered)
    if executor.main:  # several processes: only the main one records the run
        _record_candidates(data, ordered, run_dir)
        stage.save()  # merged with what others recorded: the sheet shows every picture of the run
        if stage.published:  # not when stopped before the first picture: no run folder then
            write_contact_sheet(run_dir / STAGE_DIR, data, run_dir)
            stage.save()
    return StageResult("explore", run_dir, ordered, planned=len(jobs), stored=len(ordered) - computed,
                       computed=computed)


class ExploreWork(StageWork):
    """Explore's part: candidates from text, placed as ``explore/seed-N.png``, recorded by seed."""

    name = "explore"

    def __init__(self, session, spec: ExploreSpec, run_dir: Path, data: dict, loras=()):
        super().__init__(session)
        self.spec, self.run_dir, self.data, self.loras = spec, run_dir, data, loras
        self.published = False

    def dest(self, work: Work) -> Path:
        return self.run_dir / STAGE_DIR / candidate_name(work.id)

    def load(self, misses, progress):
        check_writable(self.session.store.root)  # a read-only OUT fails before the model loads, not after
        return self.session.engine()

    def rekey(self, engine, misses):
        rekeyed = super().rekey(engine, misses)
        if rekeyed is not misses:
            self.data["model_fingerprint"] = engine.fingerprint
        return rekeyed

    def batch_size(self, engine, misses) -> int:
        return resolve_batch(self.spec.batch, engine, self.spec.size)

    def render(self, engine, works, progress) -> list:
        return engine.render(RenderRequest.from_jobs([work.job for work in works]), "txt2img")

    @property
    def remote_batch(self):
        return self.spec.batch

    def remote(self, misses) -> list:
        """What a Ray worker needs for each miss (``ray_render``): the job and the picture's metadata."""
        from .ray_render import RemoteWork

        extra = {"loras": lora_records(self.loras)} if self.loras else {}
        return [RemoteWork.of(work.job, stage="explore", **(extra if work.job.loras else {})) for work in misses]

    def store(self, engine, work, image, seconds, provenance):
        extra = {"loras": lora_records(self.loras)} if work.job.loras else {}
        return store_picture(self.session.store, work.job, image, self.session.model, seconds=seconds, engine=engine,
                             provenance=provenance, stage="explore", **extra)

    def record(self, done) -> None:
        _record_candidates(self.data, [item for _, item in done], self.run_dir)
        self.save()

    def save(self) -> None:
        """Record the run. Nothing is written and OUT/latest stays where it was until the run has a picture:
        an explore that fails or is interrupted first leaves no trace."""
        if not stage_pictures(self.data, STAGE_DIR):
            return
        merged = _save(self.run_dir, self.data)  # what every process recorded in this run, ours included
        self.data.clear()
        self.data.update(merged)
        if not self.published:
            set_latest(self.session.out, self.run_dir)
            self.published = True

    def missing_elsewhere(self, work) -> str:
        return (f"seed {work.id} was computed by another process but is not in the store "
                f"{self.session.store.root}; give every process the same shared store (PIPELINE_STORE)")


# the top-level keys of run.json that explore writes: its header (``run_header``) and a new run's version and date;
# every other key (the other stages' sections, an inpaint or control section, the app's picks) is another writer's
HEADER_KEYS = ("version", "created", "prompt", "negative", "model", "model_name", "model_fingerprint", "width",
               "height", "steps", "guidance", "dtype", "variance", "loras")


def _save(run_dir: Path, data: dict) -> dict:
    """Merge explore's part of run.json (the run header and the explore section's pictures, by
    seed) into what is on disk, under the run's lock: pictures another process recorded meanwhile
    (a second explore on the same --run, a vary) and every key explore does not own (``HEADER_KEYS``: an
    allow-list, so a section a newer stage writes is never put back from the copy read at start) are kept.
    Returns the run.json as written."""
    ours = {key: value for key, value in data.items() if key in HEADER_KEYS}
    section = data.get(STAGE_DIR) if isinstance(data.get(STAGE_DIR), dict) else {}
    extra = {key: value for key, value in section.items() if key != "pictures"}  # the contact sheet's signature

    def merge(current: dict) -> None:
        if current.get("prompt") is not None:
            _check_settings(run_dir, current, ours)  # two explores that began on one new --run
            ours.pop("created", None)  # the run is as old as its first picture
        current.update(ours)
        merge_pictures(current, STAGE_DIR, stage_pictures(data, STAGE_DIR), order=lambda c: pick_order(c.get("seed")))
        current[STAGE_DIR].update(extra)

    return update_run(run_dir, merge)
