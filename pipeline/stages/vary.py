"""Vary: more candidates like a picked one (Fooocus's Vary, A1111's variation seeds).

Each variation is an image-to-image pass from the stored candidate, at the candidate's own size
and the run's prompt, with a noise seed of its own, at ``strength`` (subtle 0.5, strong 0.85).
Variations join the run's candidates under ids that say where they come from: ``42v3`` is the
third variation of seed 42, ``42v3v1`` the first variation of that one. So refine, upscale, the
contact sheet and the gallery take them like any candidate.

A variation's key holds its parent's file digest, its noise seed (fixed by its id) and its
strength, so a re-run finds it in the store. Asking again for ``--count`` variations of a parent
at the same strength and steps takes the ones already made first; new ones get the next numbers.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError
from ..core.jobs import VaryJob, render_fields, variation_seed
from ..core.seeds import MAX_SEED, pick_order, pick_parent, pick_path, seed_ranges, variation_id
from ..core.runs import load_run, record_pictures, resolve_run, set_latest, stage_pictures
from ..engines.request import RenderRequest
from .specs import DEFAULT_GUIDANCE, VarySpec
from .common import Item, StageResult, candidate_loras, run_variance, store_picture
from .executor import Executor, StageWork, Work
from .sheet import refresh_contact_sheet

log = logging.getLogger("pipeline")

STAGE_DIR = "explore"  # variations are candidates: they sit next to their parents


@dataclass
class Variation:
    """One variation to make: its id, its job, and its parent."""

    id: str
    job: VaryJob
    parent: int | str
    parent_key: str
    parent_path: Path
    parent_seed: int | None = None  # the parent picture's seed (a variation parent's: its noise seed)
    loras: list = dataclasses.field(default_factory=list)  # engines.lora.Lora
    own_loras: bool = False  # record the LoRAs in run.json (they are some, or the run has some)

    @property
    def name(self) -> str:
        return f"seed-{self.id}.png"


@dataclass
class Plan:
    run_dir: Path
    variations: list[Variation]


def _candidates(data: dict) -> dict:
    return {c.get("seed"): c for c in stage_pictures(data, "explore")}


def plan(session, spec: VarySpec, run: str | None = None) -> Plan:
    """The variations to make (or find in the store). Reads run.json and the store; no torch."""
    run_dir = resolve_run(session.out, run)
    data = load_run(run_dir)
    candidates = _candidates(data)
    unknown = [pick for pick in spec.seeds if pick not in candidates]
    if unknown:
        if not candidates:
            raise UserError(f"run {run_dir.name} has no candidates to vary; explore first")
        what = "{} is not a candidate" if len(unknown) == 1 else "{} are not candidates"
        raise UserError(f"{what.format(seed_ranges(unknown))} of run {run_dir.name}; its candidates are "
                        f"{seed_ranges(sorted(candidates, key=pick_order))}")
    steps = spec.steps or int(data.get("steps") or 8)
    given = None if spec.loras is None else session.resolve_loras(spec.loras)
    variations = []
    for parent in spec.seeds:
        candidate = candidates[parent]
        loras = given if given is not None else candidate_loras(session, data, candidate, f"candidate {parent}")
        artifact = session.store.get(candidate["key"])
        if artifact is None:
            raise UserError(f"candidate {parent} of run {run_dir.name} is missing or damaged in the store; "
                            f"render it again first (explore, or vary its parent)")
        parent_seed = _seed_of(artifact.record, candidate, parent)
        signature = [(lora.sha256, lora.weight) for lora in loras]
        for number in _numbers(candidates, parent, spec.count, spec.strength, steps,
                               lambda c: _lora_signature(data, c) == signature):
            ident = variation_id(*pick_path(parent), number)
            fields = render_fields(model=session.fingerprint, prompt=data["prompt"], negative=data.get("negative", ""),
                                   width=int(data["width"]), height=int(data["height"]), steps=steps,
                                   guidance=data.get("guidance", DEFAULT_GUIDANCE),
                                   seed=_noise_seed(candidates.get(ident), ident),
                                   dtype=session.dtype, variance=run_variance(data, ident), loras=loras)
            job = VaryJob(**fields, strength=float(spec.strength), parent=artifact.record["digest"])
            variations.append(Variation(ident, job, parent, candidate["key"], artifact.path, parent_seed, loras,
                                        bool(loras or data.get("loras"))))
    return Plan(run_dir, variations)


def _lora_signature(data: dict, candidate: dict) -> list:
    records = candidate["loras"] if isinstance(candidate.get("loras"), list) else data.get("loras") or []
    return [(r.get("sha256"), r.get("weight")) for r in records if isinstance(r, dict)]


def _noise_seed(made: dict | None, ident: str) -> int:
    """A variation's noise seed: the one run.json recorded when it was made (variations made before
    seeds were cut to 53 bits keep their 64-bit seed, so their keys and pictures stay), else
    ``variation_seed(ident)``."""
    recorded = made.get("noise_seed") if isinstance(made, dict) else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and 0 <= recorded <= MAX_SEED:
        return recorded
    return variation_seed(ident)


def _seed_of(record: dict, candidate: dict, parent) -> int | None:
    """The seed the parent picture was rendered with (its job's), for the variation's metadata."""
    job = record.get("job") if isinstance(record.get("job"), dict) else {}
    seed = job.get("seed", candidate.get("noise_seed", parent))
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def _numbers(candidates: dict, parent, count: int, strength: float, steps: int, same_loras=lambda c: True) -> list[int]:
    """The variation numbers for ``count`` variations of ``parent``: those already made with these
    settings (strength, steps, LoRAs) first, then new numbers after the highest one in use."""
    made = [(pick_path(pick)[-1], c) for pick, c in candidates.items()
            if isinstance(pick, str) and pick_order(pick)[0] == 0 and pick_parent(pick) == parent]
    same = sorted(n for n, c in made if c.get("strength") == strength and c.get("steps") == steps and same_loras(c))
    numbers = same[:count]
    following = max((n for n, _ in made), default=0) + 1
    while len(numbers) < count:
        numbers.append(following)
        following += 1
    return numbers


# ---------------------------------------------------------------- executing


def vary(session, spec: VarySpec, *, run: str | None = None, dry_run: bool = False, on_picture=None,
         stop=None) -> StageResult:
    the_plan = plan(session, spec, run)
    executor = Executor(session)
    works = [Work(v.id, v.job, v) for v in the_plan.variations]
    if dry_run:
        stored = executor.dry_run(works)
        return StageResult("vary", the_plan.run_dir, planned=len(works), stored=stored, computed=len(works) - stored,
                           dry_run=True)
    run_dir = the_plan.run_dir
    ordered = executor.run(VaryWork(session, spec, run_dir), works, stop=stop, on_picture=on_picture)
    computed = sum(not item.cached for item in ordered)
    if executor.main:
        set_latest(session.out, run_dir)
        refresh_contact_sheet(run_dir)  # the variations next to their parents
    return StageResult("vary", run_dir, ordered, planned=len(works), stored=len(ordered) - computed,
                       computed=computed)


class VaryWork(StageWork):
    """Vary's part: image-to-image from each parent, placed beside the candidates, recorded as candidates."""

    name = "vary"

    def __init__(self, session, spec: VarySpec, run_dir: Path):
        super().__init__(session)
        self.spec, self.run_dir = spec, run_dir

    def dest(self, work: Work) -> Path:
        return self.run_dir / STAGE_DIR / work.part.name

    def batch_size(self, engine, misses) -> int:
        if self.spec.batch != "auto":
            return int(self.spec.batch)
        return 1 if engine.device == "cpu" else 4

    def render(self, engine, works, progress) -> list:
        from PIL import Image

        parents = []
        for work in works:
            with Image.open(work.part.parent_path) as image:
                parents.append(image.convert("RGB"))
        request = RenderRequest.from_jobs([work.job for work in works], init_images=parents,
                                          strength=works[0].job.strength)
        return engine.render(request, "img2img")

    remote_auto_limit = 4  # batch auto on a GPU worker: at most 4, as here

    @property
    def remote_batch(self):
        return self.spec.batch

    def remote(self, misses) -> list:
        """What a Ray worker needs for each miss (``ray_render``): the job, its parent picture's bytes, the
        picture's metadata."""
        from .ray_render import RemoteWork

        parents, remote = {}, []
        for work in misses:
            variation = work.part
            if variation.parent_path not in parents:
                parents[variation.parent_path] = Path(variation.parent_path).read_bytes()
            remote.append(RemoteWork.of(work.job, parents[variation.parent_path], stage="vary", variation=variation.id,
                                        parent_key=variation.parent_key, parent_seed=variation.parent_seed,
                                        **_lora_extra(variation)))
        return remote

    def store(self, engine, work, image, seconds, provenance):
        variation = work.part
        return store_picture(self.session.store, work.job, image, self.session.model, seconds=seconds, engine=engine,
                             provenance=provenance, stage="vary", variation=variation.id,
                             parent_key=variation.parent_key, parent_seed=variation.parent_seed,
                             **_lora_extra(variation))

    def record(self, done) -> None:
        _record(self.run_dir, [(work.part, item) for work, item in done], [work.job for work, _ in done])


def _record(run_dir: Path, done: list[tuple[Variation, Item]], jobs: list) -> None:
    """Add the variations to run.json's candidates (re-read under its lock, so nothing recorded is lost)."""
    if not done:
        return

    entries = []
    for (variation, item), job in zip(done, jobs):
        entries.append({
            "seed": variation.id, "key": item.key, "path": str(item.path.relative_to(run_dir)),
            "seconds": item.seconds, "cached": item.cached, "parent": variation.parent,
            "parent_key": variation.parent_key, "noise_seed": job.seed, "strength": job.strength,
            "steps": job.steps,
            # a variation's own LoRAs, when it has some or its run has (refine and vary take them from here)
            **({"loras": [lora.record() for lora in variation.loras]} if variation.own_loras else {})})
    record_pictures(run_dir, "explore", entries, order=lambda c: pick_order(c.get("seed")))


def _lora_extra(variation: Variation) -> dict:
    return {"loras": [lora.record() for lora in variation.loras]} if variation.job.loras else {}
