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
import time
from dataclasses import dataclass
from pathlib import Path

from ..scale import distributed
from ..core.errors import UserError
from ..core.jobs import VaryJob, render_fields, variation_seed
from ..core.seeds import MAX_SEED, pick_order, pick_parent, pick_path, seed_ranges, variation_id
from ..core.runs import load_run, place, record_pictures, resolve_run, set_latest, stage_pictures, update_run
from ..engines.request import RenderRequest
from .specs import DEFAULT_GUIDANCE, VarySpec
from ..web.gallery import write_gallery
from . import control as controls
from .common import (Item, StageResult, batches, candidate_loras, check_loras, progress_bar, run_variance,
                     store_picture)

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
    control: dict | None = None  # the control as recorded (stages.control.StageControl.record), when on

    @property
    def name(self) -> str:
        return f"seed-{self.id}.png"


@dataclass
class Plan:
    run_dir: Path
    variations: list[Variation]
    control: object = None  # stages.control.StageControl, when the variations follow a control map


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
    control = controls.prepare(session, spec.control, "canny", "vary")
    made = control.map_for(int(data["width"]), int(data["height"])) if control is not None else None
    recorded = control.record(made) if control is not None else None
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
                               lambda c: _lora_signature(data, c) == signature and
                               (c.get("control") or {}).get("map") == (made.digest if made else None)):
            ident = variation_id(*pick_path(parent), number)
            fields = render_fields(model=session.fingerprint, prompt=data["prompt"], negative=data.get("negative", ""),
                                   width=int(data["width"]), height=int(data["height"]), steps=steps,
                                   guidance=data.get("guidance", DEFAULT_GUIDANCE),
                                   seed=_noise_seed(candidates.get(ident), ident),
                                   dtype=session.dtype, variance=run_variance(data, ident), loras=loras)
            job = VaryJob(**fields, strength=float(spec.strength), parent=artifact.record["digest"],
                          control=control.use(made) if control is not None else None)
            variations.append(Variation(ident, job, parent, candidate["key"], artifact.path, parent_seed, loras,
                                        bool(loras or data.get("loras")), recorded))
    return Plan(run_dir, variations, control)


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


def vary(session, spec: VarySpec, *, run: str | None = None, dry_run: bool = False) -> StageResult:
    the_plan = plan(session, spec, run)
    store = session.store
    if dry_run:
        stored = sum(store.has(v.job.key) for v in the_plan.variations)
        total = len(the_plan.variations)
        return StageResult("vary", the_plan.run_dir, planned=total, stored=stored, computed=total - stored,
                           dry_run=True)
    run_dir = the_plan.run_dir
    out_dir = run_dir / STAGE_DIR
    items: dict[str, Item] = {}
    misses: list[Variation] = []
    for variation in the_plan.variations:
        artifact = store.get(variation.job.key)
        if artifact is None:
            misses.append(variation)
        else:
            items[variation.id] = _place(artifact.path, variation, out_dir, True, artifact.record.get("seconds", 0.0))
    if distributed.is_main_process():
        _record(run_dir, [(v, items[v.id]) for v in the_plan.variations if v.id in items])
    if the_plan.control is not None and distributed.is_main_process():
        for made in the_plan.control.maps.values():
            the_plan.control.keep(run_dir, made)
    if misses:
        _compute(session, spec, misses, out_dir, items, run_dir, the_plan.control)
    ordered = [items[v.id] for v in the_plan.variations]
    computed = sum(not item.cached for item in ordered)
    if distributed.is_main_process():
        set_latest(session.out, run_dir)
        _refresh_views(run_dir)
    return StageResult("vary", run_dir, ordered, planned=len(ordered), stored=len(ordered) - computed,
                       computed=computed)


def _place(source: Path, variation: Variation, out_dir: Path, cached: bool, seconds: float) -> Item:
    dest = out_dir / variation.name
    place(source, dest)
    return Item(variation.id, dest, variation.job.key, cached, round(seconds, 4))


def _record(run_dir: Path, done: list[tuple[Variation, Item]]) -> None:
    """Add the variations to run.json's candidates (re-read under its lock, so nothing recorded is lost)."""
    if not done:
        return

    entries = []
    for variation, item in done:
        job = variation.job
        entries.append({
            "seed": variation.id, "key": job.key, "path": str(item.path.relative_to(run_dir)),
            "seconds": item.seconds, "cached": item.cached, "parent": variation.parent,
            "parent_key": variation.parent_key, "noise_seed": job.seed, "strength": job.strength,
            "steps": job.steps,
            # a variation's own LoRAs, when it has some or its run has (refine and vary take them from here)
            **({"loras": [lora.record() for lora in variation.loras]} if variation.own_loras else {}),
            **({"control": variation.control} if variation.control else {})})
    record_pictures(run_dir, "explore", entries, order=lambda c: pick_order(c.get("seed")))


def _compute(session, spec: VarySpec, misses: list[Variation], out_dir: Path, items: dict, run_dir: Path,
             control=None) -> None:
    from PIL import Image

    session.require_lora_files([v.job for v in misses])
    engine = session.engine()
    check_loras(engine, [v.job for v in misses])  # a LoRA for another model fails before any picture
    if engine.fingerprint != misses[0].job.model:  # the model's identity became known on load
        misses = [dataclasses.replace(v, job=dataclasses.replace(v.job, model=engine.fingerprint)) for v in misses]
    by_job = {id(v.job): v for v in misses}
    size = 1 if spec.batch == "auto" and engine.device == "cpu" else 4 if spec.batch == "auto" else int(spec.batch)
    bar = progress_bar(len(misses), session.progress, "vary")
    try:
        for batch in batches([v.job for v in misses], size):
            chosen = [by_job[id(job)] for job in batch]
            with session.store.lock_all(job.key for job in batch):
                todo = []
                for variation in chosen:  # another process may have made it meanwhile
                    artifact = session.store.get(variation.job.key)
                    if artifact is not None:
                        items[variation.id] = _place(artifact.path, variation, out_dir, True,
                                                     artifact.record.get("seconds", 0.0))
                    else:
                        todo.append(variation)
                if todo:
                    parents = []
                    for variation in todo:
                        with Image.open(variation.parent_path) as image:
                            parents.append(image.convert("RGB"))
                    engine.reset_peak_memory()
                    started = time.perf_counter()
                    jobs = [v.job for v in todo]
                    if control is not None:
                        images = control.render(engine, jobs, images=parents, strength=jobs[0].strength)
                    else:
                        images = engine.render(RenderRequest.from_jobs(jobs, init_images=parents,
                                                                      strength=jobs[0].strength), "img2img")
                    seconds = (time.perf_counter() - started) / len(todo)
                    for variation, image in zip(todo, images):
                        artifact = store_picture(session.store, variation.job, image, session.model, seconds=seconds,
                                                 engine=engine, stage="vary", variation=variation.id,
                                                 parent_key=variation.parent_key, parent_seed=variation.parent_seed,
                                                 **_lora_extra(variation), **controls.render_fields(variation.job))
                        items[variation.id] = _place(artifact.path, variation, out_dir, False, seconds)
            if distributed.is_main_process():
                _record(run_dir, [(v, items[v.id]) for v in chosen])
            if bar:
                bar.update(len(batch))
    finally:
        if bar:
            bar.close()


def _lora_extra(variation: Variation) -> dict:
    return {"loras": [lora.record() for lora in variation.loras]} if variation.job.loras else {}


def _refresh_views(run_dir: Path) -> None:
    """The contact sheet and the gallery, now with the variations next to their parents."""
    from .explore import _write_contact_sheet

    data = load_run(run_dir)
    if not data.get("explore"):
        return
    _write_contact_sheet(run_dir / STAGE_DIR, data, run_dir)
    signature = data["explore"].get("contact_sheet")
    update_run(run_dir, lambda current: current.setdefault("explore", {}).update(contact_sheet=signature))
    write_gallery(run_dir)
