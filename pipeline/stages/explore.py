"""Explore: many candidates of one prompt across seeds, cached, laid out to pick from."""
from __future__ import annotations

import dataclasses
import io
import logging
import time
from pathlib import Path

from ..scale import distributed
from ..core.errors import UserError
from ..web.gallery import write_gallery
from ..core.images import contact_sheet, lora_label
from ..core.jobs import RenderJob, digest_bytes, make_variance, render_fields
from ..core.seeds import pick_order
from ..models.names import display_name
from ..core.runs import (check_run_name, load_run, merge_pictures, new_run_data, new_run_dir, place, release_run_dir,
                    set_latest, stage_pictures, update_run, write_error)
from ..core.store import atomic_write, check_writable
from ..engines.request import RenderRequest
from .specs import ExploreSpec
from .common import Item, StageResult, batches, check_loras, progress_bar, store_picture
from . import control as controls

log = logging.getLogger("pipeline")

STAGE_DIR = "explore"


def plan(spec: ExploreSpec, fingerprint: str, dtype: str, loras=(), control=None) -> list[RenderJob]:
    """The jobs of an explore: one per seed. Pure and cheap (``loras``: resolved, ``engines.lora.Lora``;
    ``control``: a ``stages.control.StageControl``, every candidate following the same map)."""
    width, height = spec.size
    use = control.use(control.map_for(width, height)) if control is not None else None
    return [
        RenderJob(**render_fields(model=fingerprint, prompt=spec.prompt, negative=spec.negative, width=width,
                                  height=height, steps=spec.steps, guidance=spec.guidance, seed=seed, dtype=dtype,
                                  variance=make_variance(spec.variance, spec.variance_share, spec.variance_steps,
                                                         seed), loras=loras), control=use)
        for seed in spec.seeds
    ]


def lora_records(loras) -> list[dict]:
    """The LoRAs of a picture or run as recorded (name, sha256, weight, A1111's short hash)."""
    return [lora.record() for lora in loras]


def candidate_name(seed: int) -> str:
    return f"seed-{seed}.png"


def run_header(session, spec: ExploreSpec, loras=(), control=None) -> dict:
    variance = spec.variance_settings()  # only when on: runs without it keep today's run.json
    made = control.map_for(*spec.size) if control is not None else None
    return {**({"variance": variance} if variance else {}), **({"loras": lora_records(loras)} if loras else {}),
        **({"control": control.record(made)} if control is not None else {}),
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


SETTINGS = ("prompt", "negative", "model", "width", "height", "steps", "guidance", "variance", "control")  # one run


def _lora_settings(records) -> list:
    return [(r.get("sha256"), r.get("weight")) for r in records or () if isinstance(r, dict)]


def _check_settings(run_dir: Path, data: dict, header: dict) -> None:
    old = {k: data.get(k) for k in SETTINGS} | {"loras": _lora_settings(data.get("loras"))}
    new = {k: header.get(k) for k in SETTINGS} | {"loras": _lora_settings(header.get("loras"))}
    if old != new:
        changed = ", ".join(k for k in old if old[k] != new[k])
        raise UserError(f"run {run_dir} was explored with other settings ({changed}); choose another --run name")


def _open_run(session, spec: ExploreSpec, run: str | None, loras=(), control=None) -> tuple[Path, dict]:
    # one name for all processes; without --run the main process claims a new folder (mkdir), so
    # two explores started in the same second never share one
    claimed = distributed.is_main_process() and run is None
    run_dir = distributed.agree(new_run_dir(session.out, spec.prompt, run, claim=claimed))
    header = run_header(session, spec, loras, control)
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
    control = controls.prepare(session, spec.control, "canny", "explore")
    jobs = plan(spec, session.fingerprint, session.dtype, loras, control)
    store = session.store
    if run is not None:
        check_run_name(run)  # a dry run refuses what the real one would
    if dry_run:
        stored = sum(store.has(job.key) for job in jobs)
        return StageResult("explore", None, planned=len(jobs), stored=stored, computed=len(jobs) - stored, dry_run=True)

    run_dir, data = _open_run(session, spec, run, loras, control)
    try:
        if control is not None:
            control.keep(run_dir, control.map_for(*spec.size))
        return _explore(session, spec, jobs, run_dir, data, on_picture, stop, loras, control)
    finally:
        if run is None and distributed.is_main_process():
            release_run_dir(run_dir)  # claimed but still empty: failed or stopped before its first picture


def _explore(session, spec, jobs, run_dir, data, on_picture, stop, loras=(), control=None) -> StageResult:
    store = session.store
    out_dir = run_dir / STAGE_DIR
    items: dict[int, Item] = {}
    misses: list[RenderJob] = []
    for job in jobs:
        artifact = store.get(job.key)
        if artifact is None:
            misses.append(job)
        else:
            dest = out_dir / candidate_name(job.seed)
            place(artifact.path, dest)
            items[job.seed] = Item(job.seed, dest, job.key, True, artifact.record.get("seconds", 0.0))
    _record_candidates(data, list(items.values()), run_dir)
    published = False

    def save() -> None:
        """Record the run (main process only). Nothing is written and OUT/latest stays where it was
        until the run has a picture: an explore that fails or is interrupted first leaves no trace."""
        nonlocal published
        if not distributed.is_main_process() or not stage_pictures(data, STAGE_DIR):
            return
        merged = _save(run_dir, data)  # what every process recorded in this run, ours included
        data.clear()
        data.update(merged)
        if not published:
            set_latest(session.out, run_dir)
            published = True

    save()
    for item in list(items.values()) if on_picture else ():
        on_picture(item)
    misses = distributed.share_of(misses, key=lambda job: job.key)  # all of them in a single process
    if misses:
        misses = _compute(session, spec, misses, out_dir, items, data, run_dir, save, on_picture, stop, loras,
                          control)
    if stop is None or not stop.is_set():
        _collect_shares(session, jobs, items, out_dir)

    ordered = [items[seed] for seed in spec.seeds if seed in items]  # fewer when stopped
    computed = sum(not item.cached for item in ordered)
    if distributed.is_main_process():  # several processes: only the main one records the run
        _record_candidates(data, ordered, run_dir)
        save()  # merged with what others recorded: the sheet and the gallery show every picture of the run
        _write_contact_sheet(out_dir, data, run_dir)
        save()
        if published:  # not when stopped before the first picture: no run folder then
            write_gallery(run_dir, data)
    distributed.wait_for_everyone()  # the others go on (e.g. to refine) once run.json is complete
    return StageResult("explore", run_dir, ordered, planned=len(jobs), stored=len(ordered) - computed,
                       computed=computed)


OTHER_STAGES = ("refine", "upscale")


def _save(run_dir: Path, data: dict) -> dict:
    """Merge explore's part of run.json (the run header and the explore section's pictures, by
    seed) into what is on disk, under the run's lock: pictures another process recorded meanwhile
    (a second explore on the same --run, a vary) and the other stages' sections are kept.
    Returns the run.json as written."""
    ours = {key: value for key, value in data.items() if key not in OTHER_STAGES and key != STAGE_DIR}
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


def _compute(session, spec, misses, out_dir, items, data, run_dir, save, on_picture=None, stop=None, loras=(),
             control=None):
    check_writable(session.store.root)  # a read-only OUT fails before the model loads, not after
    engine = session.engine()
    check_loras(engine, misses)  # a LoRA for another model fails here, before any picture is written
    if engine.fingerprint != misses[0].model:  # the model's identity became known on load
        misses = [dataclasses.replace(job, model=engine.fingerprint) for job in misses]
        data["model_fingerprint"] = engine.fingerprint
    batch_size = resolve_batch(spec.batch, engine, spec.size)
    bar = progress_bar(len(misses), session.progress, "explore")
    try:
        for batch in batches(misses, batch_size):
            if stop is not None and stop.is_set():
                break
            _render_batch(session, engine, batch, out_dir, items, loras, control)
            _record_candidates(data, [items[job.seed] for job in batch], run_dir)
            save()
            if bar:
                bar.update(len(batch))
            for job in batch if on_picture else ():
                on_picture(items[job.seed])
    finally:
        if bar:
            bar.close()
    return misses


def _collect_shares(session, jobs: list[RenderJob], items: dict, out_dir: Path) -> None:
    """Several processes: wait for the other shares, then take their pictures from the store."""
    elsewhere = dict(distributed.computed_elsewhere([(i.seed, i.key) for i in items.values() if not i.cached]))
    for job in jobs:
        if job.seed in items and job.seed not in elsewhere:
            continue
        artifact = session.store.get(elsewhere.get(job.seed, job.key))
        if artifact is None:
            raise UserError(f"seed {job.seed} was computed by another process but is not in the store "
                            f"{session.store.root}; give every process the same shared store (PIPELINE_STORE)")
        dest = out_dir / candidate_name(job.seed)
        if distributed.is_main_process():
            place(artifact.path, dest)
        items[job.seed] = Item(job.seed, dest, artifact.key, job.seed not in elsewhere,
                               artifact.record.get("seconds", 0.0))


def _render_batch(session, engine, batch, out_dir, items, loras=(), control=None) -> None:
    store = session.store
    with store.lock_all(job.key for job in batch):
        todo = []
        for job in batch:  # another process may have finished it meanwhile
            artifact = store.get(job.key)
            if artifact is not None:
                dest = out_dir / candidate_name(job.seed)
                place(artifact.path, dest)
                items[job.seed] = Item(job.seed, dest, job.key, True, artifact.record.get("seconds", 0.0))
            else:
                todo.append(job)
        if not todo:
            return
        engine.reset_peak_memory()
        started = time.perf_counter()
        images = control.render(engine, todo) if todo[0].control else engine.txt2img(todo)
        seconds = (time.perf_counter() - started) / len(todo)
        for job, image in zip(todo, images):
            extra = {"loras": lora_records(loras)} if job.loras else {}
            extra.update(controls.render_fields(job))
            artifact = store_picture(store, job, image, session.model, seconds=seconds, engine=engine, stage="explore",
                                     **extra)
            dest = out_dir / candidate_name(job.seed)
            place(artifact.path, dest)
            items[job.seed] = Item(job.seed, dest, job.key, False, round(seconds, 4))


def resolve_batch(batch, engine, size) -> int:
    if batch != "auto":
        return int(batch)
    if engine.device == "cpu":
        return 1  # on the CPU a batch shares nothing; single images keep the progress bar honest
    if str(engine.device).startswith("cuda") and hasattr(engine, "auto_batch"):
        return engine.auto_batch(size[0], size[1])  # from free memory under the chosen profile
    return 4 if size[0] * size[1] <= 768 * 768 else 1


def _sheet_label(candidate: dict) -> str:
    if isinstance(candidate["seed"], str):  # a variation (pipeline vary): its id and strength
        strength = candidate.get("strength")
        return f"{candidate['seed']} · vary {strength:g}" if isinstance(strength, float) else candidate["seed"]
    return f"seed {candidate['seed']}"


def _write_contact_sheet(out_dir: Path, data: dict, run_dir: Path) -> None:
    candidates = stage_pictures(data, "explore")
    entries = [(_sheet_label(c), run_dir / c["path"]) for c in candidates if (run_dir / c["path"]).is_file()]
    if not entries:
        return
    path = out_dir / "contact.png"
    title = f"LoRA: {lora_label(data['loras'])}" if data.get("loras") else ""
    # the sheet shows exactly these pictures: skip the redraw (most of a cached re-run's time) when unchanged
    signature = digest_bytes("\n".join([title] * bool(title) + [f"{c['seed']} {c['key']}" for c in candidates])
                             .encode())
    if path.is_file() and data["explore"].get("contact_sheet") == signature:
        return
    data["explore"]["contact_sheet"] = signature
    sheet = contact_sheet(entries, title=title)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    try:
        atomic_write(path, buffer.getvalue())  # a unique temp file: two processes may write it at once
    except OSError as err:
        raise write_error(path, err) from err
