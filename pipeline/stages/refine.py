"""Refine: picked candidates (or any image) made larger while keeping their composition.

    hires     the stored candidate, enlarged to the target size (Lanczos, or a Real-ESRGAN
              model), then an image-to-image pass with the same prompt and seed at --strength
              (to another aspect, a candidate is cropped as A1111's hires fix crops: see hires.py)
    rerender  text-to-image at the target size with the same seed (new noise: the
              composition may change)

A job's key holds its parameters and, for hires, the digest of the parent picture's file,
so re-running is free and a changed candidate is refined again. Planning imports no torch;
the model (and an upscaler) load only when a job misses the store.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from ..scale import distributed
from ..core.errors import UserError
from ..core.jobs import RefineJob, render_fields
from ..models.names import TINY
from ..core.runs import load_run, new_run_data, place, record_pictures, resolve_run, set_latest, stage_pictures
from ..core.seeds import pick_order, seed_ranges
from ..core.sizes import check_size
from ..web.gallery import write_gallery
from ..engines.request import RenderRequest
from .specs import DEFAULT_GUIDANCE, DEFAULT_REFINE_SCALE, DEFAULT_STEPS, RefineSpec
from .common import (Item, StageResult, batches, candidate_loras, check_loras, progress_bar, run_variance,
                     store_picture)
from . import control as controls
from .hires import as_hires_fix, enlarge_parents, parent_size

log = logging.getLogger("pipeline")

STAGE_DIR = "refine"
LANCZOS = "lanczos"


@dataclass
class Pick:
    """One picture to refine: its job, where it goes, and where its parent comes from."""

    job: RefineJob
    name: str  # file name under RUN/refine/
    parent_path: Path | None  # the parent's pixels (None for rerender)
    parent_key: str  # store key of the parent candidate ("" for a foreign image)
    source: str  # the candidate's run-relative path, or the --from image's path
    parent_data: bytes | None = None  # the --from image's bytes, as digested for the key
    id: int | str | None = None  # the candidate's seed or variation id (42v3); None: the job's seed
    loras: list = dataclasses.field(default_factory=list)  # engines.lora.Lora, as the job's key holds them
    first_pass: dict | None = None  # hires of our own txt2img candidate: its pass, for A1111's hires-fix text
    control: dict | None = None  # the control as recorded (stages.control.StageControl.record), when on

    @property
    def label(self):
        return self.job.seed if self.id is None else self.id


@dataclass
class Plan:
    run_dir: Path
    picks: list[Pick]
    new_run: dict | None = None  # run.json header when the run folder is to be created
    control: object = None  # stages.control.StageControl, when the refine follows a control map


# ---------------------------------------------------------------- planning


def default_model(out: Path, run: str | None, source: str | Path | None = None) -> str | None:
    """The model to refine with when none is given: the run's, or the one named in the --from
    image's metadata (tiny-random or a Hugging Face repo id); None when unknown."""
    if source is None:
        try:
            return load_run(resolve_run(out, run)).get("model") or None
        except UserError:
            return None
    from ..core.images import read_info

    try:
        record = read_info(Path(source)).get("pipeline")
    except UserError:
        return None
    fingerprint = record.get("model") if isinstance(record, dict) else None
    if not isinstance(fingerprint, str):
        return None
    if fingerprint.startswith(TINY + "@"):
        return TINY
    if fingerprint.startswith("hub:"):
        return fingerprint[len("hub:"):].rsplit("@", 1)[0] or None
    return None


def plan(session, spec: RefineSpec, run: str | None = None) -> Plan:
    """The jobs of a refine. Reads run.json, the candidates' records and the --from image; no torch."""
    if spec.source is not None:
        from .refine_source import plan_source  # it builds on this module's Pick and jobs

        return _with_control(session, spec, plan_source(session, spec, run))
    return _with_control(session, spec, _plan_run(session, spec, run))


def _with_control(session, spec: RefineSpec, the_plan: Plan) -> Plan:
    """Each pick's job with its control map: the control image's, or (tile without one) the candidate's own
    pixels fitted to the refined size; the Tile ControlNet by default."""
    control = controls.prepare(session, spec.control, "tile", "refine", has_picture=True)
    if control is None:
        return the_plan
    for pick in the_plan.picks:
        made = control.map_for(pick.job.width, pick.job.height,
                               None if control.source is not None else _parent_picture(session, pick))
        pick.job = dataclasses.replace(pick.job, control=control.use(made))
        pick.control = control.record(made)
    the_plan.control = control
    return the_plan


def _parent_picture(session, pick: Pick):
    from PIL import Image

    if pick.parent_data is not None:
        source = io.BytesIO(pick.parent_data)
    else:
        path = pick.parent_path
        if path is None:  # rerender: the candidate's picture from the store
            artifact = session.store.get(pick.parent_key)
            if artifact is None:
                raise UserError(f"the picture of {pick.label} is not in the store; its tile control cannot be made")
            path = artifact.path
        source = path
    with Image.open(source) as image:
        return image.convert("RGB")


def _plan_run(session, spec: RefineSpec, run: str | None) -> Plan:
    run_dir = resolve_run(session.out, run)
    data = load_run(run_dir)
    candidates = {c["seed"]: c for c in stage_pictures(data, "explore")}
    unknown = [seed for seed in spec.seeds if seed not in candidates]
    if unknown:
        if not candidates:
            raise UserError(f"run {run_dir} has no explore candidates to refine; use --from IMAGE to refine an image")
        what = "seed {} is not a candidate" if len(unknown) == 1 else "seeds {} are not candidates"
        raise UserError(f"{what.format(seed_ranges(unknown))} of run {run_dir.name}; "
                        f"its seeds are {seed_ranges(sorted(candidates, key=pick_order))}")
    size = spec.size or scaled_size((int(data["width"]), int(data["height"])), spec.scale)
    params = {
        "prompt": data["prompt"],
        "negative": spec.negative if spec.negative is not None else data.get("negative", ""),
        "guidance": spec.guidance if spec.guidance is not None else data.get("guidance", DEFAULT_GUIDANCE),
    }
    enlarge = enlarge_name(spec)
    given = None if spec.loras is None else session.resolve_loras(spec.loras)
    picks = []
    for seed in spec.seeds:
        candidate = candidates[seed]
        loras = given if given is not None else candidate_loras(session, data, candidate, f"candidate {seed}")
        parent_path, parent_digest, parent_job = None, "", None
        if spec.mode == "hires":
            artifact = session.store.get(candidate["key"])
            if artifact is None:
                raise UserError(_missing_candidate(run_dir, data, seed))
            parent_path, parent_digest = artifact.path, artifact.record["digest"]
            parent_job = artifact.record.get("job")
        # a variation renders with its own noise seed and its root candidate's conditioning
        noise_seed = candidate.get("noise_seed", seed) if isinstance(seed, str) else seed
        job = refine_job(session, spec, params, noise_seed, size, parent_digest, enlarge, run_variance(data, seed), loras)
        job, first = as_hires_fix(job, parent_job)
        picks.append(Pick(job, candidate_name(seed), parent_path, candidate["key"], candidate["path"], id=seed,
                          first_pass=first, loras=loras))
    return Plan(run_dir, picks)



def refine_job(session, spec, params, seed, size, parent_digest, enlarge, variance=None, loras=()) -> RefineJob:
    fields = render_fields(model=session.fingerprint, prompt=params["prompt"], negative=params["negative"],
                           width=size[0], height=size[1], steps=spec.steps or DEFAULT_STEPS,
                           guidance=params["guidance"], seed=seed, dtype=session.dtype, variance=variance,
                           loras=loras)
    if spec.mode == "hires":
        return RefineJob(**fields, mode="hires", strength=float(spec.strength), parent=parent_digest, enlarge=enlarge)
    # rerender draws from text alone: parent, strength and enlarging do not change its pixels
    return RefineJob(**fields, mode="rerender", strength=0.0, parent="", enlarge="")


def enlarge_name(spec: RefineSpec) -> str:
    """How hires enlarges the parent, as it enters the key: ``lanczos`` or ``<weights>@<sha256[:16]>``."""
    if spec.mode != "hires" or spec.upscaler.lower() == LANCZOS:
        return LANCZOS if spec.mode == "hires" else ""
    from ..models import upscaler_weights as weights  # no torch: resolving and hashing a weights file

    resolved = weights.resolve_weights(spec.upscaler)
    return f"{resolved.name}@{weights.weights_digest(resolved.path)[:16]}"


def scaled_size(size, scale: float | None) -> tuple[int, int]:
    scale = DEFAULT_REFINE_SCALE if scale is None else scale
    width, height = (max(16, int(round(side * scale / 16)) * 16) for side in size)
    check_size(width, height)
    return width, height


def candidate_name(seed: int) -> str:
    return f"seed-{seed}.png"


def _missing_candidate(run_dir: Path, data: dict, seed) -> str:
    if isinstance(seed, str):
        from ..core.seeds import pick_parent, pick_path

        entry = {c.get("seed"): c for c in stage_pictures(data, "explore")}.get(seed, {})
        command = ["pipeline", "vary", "--run", str(run_dir), "--seeds", str(pick_parent(seed)),
                   "--count", str(pick_path(seed)[-1]), "--strength", str(entry.get("strength", "subtle"))]
        return (f"variation {seed} of run {run_dir.name} is missing or damaged in the store; make it again "
                f"with `{shlex.join(command)}`")
    command = ["pipeline", "explore", data["prompt"], "--out", str(run_dir.parent), "--run", run_dir.name,
               "--seeds", str(seed), "--size", f"{data['width']}x{data['height']}", "--steps", str(data["steps"]),
               "--guidance", str(data["guidance"]), "--model", str(data.get("model", ""))]
    if data.get("negative"):
        command += ["--negative", data["negative"]]
    return (f"candidate seed {seed} of run {run_dir.name} is missing or damaged in the store; "
            f"render it again with `{shlex.join(command)}`")




# ---------------------------------------------------------------- executing


def refine(session, spec: RefineSpec, *, run: str | None = None, dry_run: bool = False) -> StageResult:
    the_plan = plan(session, spec, run)
    store = session.store
    if spec.mode == "rerender":
        width, height = the_plan.picks[0].job.width, the_plan.picks[0].job.height
        log.warning("rerender draws new noise at %dx%d, so the composition may change from the candidate; "
                    "use --mode hires to keep it", width, height)
    if dry_run:
        stored = sum(store.has(p.job.key) for p in the_plan.picks)
        total = len(the_plan.picks)
        run_dir = None if the_plan.new_run else the_plan.run_dir
        return StageResult("refine", run_dir, planned=total, stored=stored, computed=total - stored, dry_run=True)

    run_dir = the_plan.run_dir
    out_dir = run_dir / STAGE_DIR
    items: dict[str, Item] = {}
    misses: list[Pick] = []
    for pick in the_plan.picks:
        artifact = store.get(pick.job.key)
        if artifact is None:
            misses.append(pick)
        else:
            items[pick.name] = _place(artifact, pick, out_dir, cached=True)
    if distributed.is_main_process():
        _record(session, the_plan, [(p, items[p.name]) for p in the_plan.picks if p.name in items])
    if the_plan.control is not None and distributed.is_main_process():
        for made in the_plan.control.maps.values():
            the_plan.control.keep(run_dir, made)
    misses = distributed.share_of(misses, key=lambda p: p.job.key)  # all of them in a single process
    if misses:
        _compute(session, spec, misses, out_dir, items, the_plan)
    _collect_shares(session, the_plan, items, out_dir)
    ordered = [items[p.name] for p in the_plan.picks]
    computed = sum(not item.cached for item in ordered)
    if distributed.is_main_process():
        write_gallery(run_dir)
    distributed.wait_for_everyone()  # the others go on once run.json is complete
    return StageResult("refine", run_dir, ordered, planned=len(ordered), stored=len(ordered) - computed,
                       computed=computed)


def _place(artifact, pick: Pick, out_dir: Path, cached: bool, seconds: float | None = None) -> Item:
    dest = out_dir / pick.name
    place(artifact.path, dest)
    seconds = artifact.record.get("seconds", 0.0) if seconds is None else round(seconds, 4)
    return Item(pick.label, dest, pick.job.key, cached, seconds)


def _record(session, the_plan: Plan, done: list[tuple[Pick, Item]]) -> None:
    """Merge pictures into run.json's "refine" entry, re-reading it first so nothing recorded is lost.

    A new run's run.json is written with its first picture, and the run becomes the latest.
    """
    if not done:
        return
    run_dir = the_plan.run_dir

    def header(data: dict) -> None:
        if not data and the_plan.new_run is not None:
            data.update(new_run_data(the_plan.new_run))

    entries = []
    for pick, item in done:
        job = pick.job
        entry = {"seed": pick.label, "key": job.key, "path": str(item.path.relative_to(run_dir)),
                 "mode": job.mode, "width": job.width, "height": job.height, "steps": job.steps,
                 "guidance": job.guidance, "parent_key": pick.parent_key, "source": pick.source,
                 "seconds": item.seconds, "cached": item.cached}
        if job.mode == "hires":
            entry.update(strength=job.strength, enlarge=job.enlarge, parent_digest=job.parent)
            if job.crop:
                entry["crop"] = job.crop
        if job.loras:
            entry["loras"] = [lora.record() for lora in pick.loras]
        if pick.control and job.control:
            entry["control"] = pick.control
        entries.append(entry)
    record_pictures(run_dir, "refine", entries, id_of=lambda p: p.get("path"), before=header,
                    order=lambda p: (pick_order(p.get("seed")), p.get("path", "")))
    set_latest(session.out, run_dir)


def _compute(session, spec: RefineSpec, misses: list[Pick], out_dir: Path, items: dict, the_plan: Plan) -> None:
    session.require_lora_files([p.job for p in misses])
    enlarged = enlarge_parents(session, spec, misses) if spec.mode == "hires" else {}
    engine = session.engine()
    check_loras(engine, [p.job for p in misses])  # a LoRA for another model fails before any picture
    if engine.fingerprint != misses[0].job.model:  # the model's identity became known on load
        misses = [dataclasses.replace(p, job=dataclasses.replace(p.job, model=engine.fingerprint)) for p in misses]
    by_job = {id(p.job): p for p in misses}
    bar = progress_bar(len(misses), session.progress, "refine")
    try:
        for batch in batches([p.job for p in misses], resolve_batch(spec.batch, engine, misses[0].job)):
            picks = [by_job[id(job)] for job in batch]
            _render_batch(session, engine, picks, enlarged, out_dir, items, the_plan.control)
            if distributed.is_main_process():
                _record(session, the_plan, [(p, items[p.name]) for p in picks])
            if bar:
                bar.update(len(batch))
    finally:
        if bar:
            bar.close()


def _collect_shares(session, the_plan: Plan, items: dict, out_dir: Path) -> None:
    """Several processes: wait for the other shares; the main process places and records their pictures."""
    elsewhere = dict(distributed.computed_elsewhere([(name, i.key) for name, i in items.items() if not i.cached]))
    collected = []
    for pick in the_plan.picks:
        if pick.name in items and pick.name not in elsewhere:
            continue
        artifact = session.store.get(elsewhere.get(pick.name, pick.job.key))
        if artifact is None:
            raise UserError(f"{pick.name} was refined by another process but is not in the store "
                            f"{session.store.root}; give every process the same shared store (PIPELINE_STORE)")
        dest = out_dir / pick.name
        if distributed.is_main_process():
            place(artifact.path, dest)
        items[pick.name] = Item(pick.label, dest, artifact.key, pick.name not in elsewhere,
                                artifact.record.get("seconds", 0.0))
        collected.append((pick, items[pick.name]))
    if distributed.is_main_process():
        _record(session, the_plan, collected)


def resolve_batch(batch, engine, job) -> int:
    """auto: what the engine's memory model allows at this size (at most 4), else one at a time.

    At 1024² one picture already fills a GPU (4096 image tokens), so batching gains little;
    on a CPU a batch shares nothing.
    """
    if batch != "auto":
        return int(batch)
    auto_batch = getattr(engine, "auto_batch", None)
    return auto_batch(job.width, job.height, limit=4) if auto_batch else 1


def _render_batch(session, engine, picks: list[Pick], enlarged: dict, out_dir: Path, items: dict,
                  control=None) -> None:
    store = session.store
    with store.lock_all(p.job.key for p in picks):
        todo = []
        for pick in picks:  # another process may have finished it meanwhile
            artifact = store.get(pick.job.key)
            if artifact is not None:
                items[pick.name] = _place(artifact, pick, out_dir, cached=True)
            else:
                todo.append(pick)
        if not todo:
            return
        jobs = [p.job for p in todo]
        engine.reset_peak_memory()
        started = time.perf_counter()
        hires = jobs[0].mode == "hires"
        if jobs[0].control is not None:
            images = control.render(engine, jobs, images=[enlarged[p.name] for p in todo] if hires else None,
                                    strength=jobs[0].strength if hires else None)
        else:
            if hires:
                request = RenderRequest.from_jobs(jobs, init_images=[enlarged[p.name] for p in todo],
                                                  strength=jobs[0].strength)
            else:
                request = RenderRequest.from_jobs(jobs)
            images = engine.render(request, "img2img" if hires else "txt2img")
        seconds = (time.perf_counter() - started) / len(todo)
        for pick, image in zip(todo, images):
            extra = {"parent_size": parent_size(pick)} if pick.job.mode == "hires" else {}
            if pick.first_pass:
                extra["first_pass"] = pick.first_pass
            if pick.job.loras:
                extra["loras"] = [lora.record() for lora in pick.loras]
            extra.update(controls.render_fields(pick.job))
            artifact = store_picture(store, pick.job, image, session.model, seconds=seconds, engine=engine,
                                     stage="refine", parent_key=pick.parent_key, **extra)
            items[pick.name] = _place(artifact, pick, out_dir, cached=False, seconds=seconds)
