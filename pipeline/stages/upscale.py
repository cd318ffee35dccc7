"""Upscale: Real-ESRGAN (or any spandrel model) super-resolution of a run's pictures or any image files."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..scale import distributed
from ..core.errors import UserError
from ..core.hardware import cpu_has_native_bf16, gpu_likely_present
from ..core.images import (
    A1111_CHUNK,
    EXTRAS_CHUNK,
    JSON_CHUNK,
    POSTPROCESSING_CHUNK,
    a1111_postprocessing,
    a1111_upscaler_name,
)
from ..core.jobs import UpscaleJob
from ..core.seeds import pick_order
from ..core.runs import load_run, place, record_pictures, resolve_run, stage_pictures
from ..core.store import file_digest
from ..web.gallery import write_gallery
from .common import Item, StageResult
from .upscale_time import (OnProgress, TileProgress, describe_estimate, image_size, recall_cost, remember_cost,
                           warn_if_long)

log = logging.getLogger("pipeline")

STAGE_DIR = "upscale"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class UpscaleInput:
    path: Path  # the image to upscale
    dest: Path  # where people find the result
    seed: int | None = None


def concrete_precision(precision: str, device: str | None) -> str:
    """The precision ``auto`` means on this machine, decided without importing torch."""
    if precision != "auto":
        return precision
    on_gpu = (device or "auto").startswith(("cuda", "mps")) or (device in (None, "auto") and gpu_likely_present())
    if on_gpu:
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


# ------------------------------------------------------------------ inputs

def run_inputs(out: Path, run: str | None, seeds: list | None) -> tuple[Path, list[UpscaleInput]]:
    """The pictures of a run to upscale: its refined ones, or the picked seeds (refined, else candidates)."""
    run_dir = resolve_run(out, run)
    data = load_run(run_dir)
    refined = {item["seed"]: item for item in stage_pictures(data, "refine")}
    candidates = {c["seed"]: c for c in stage_pictures(data, "explore")}
    if seeds is None:
        if not refined:
            raise UserError(f"run {run_dir} has no refined pictures yet: run `pipeline refine --seeds …` first, "
                            "or pass --seeds or image files")
        chosen = [refined[s] for s in sorted(refined, key=pick_order)]
    else:
        unknown = [s for s in seeds if s not in refined and s not in candidates]
        if unknown:
            known = ", ".join(str(s) for s in sorted(set(candidates) | set(refined), key=pick_order)) or "none"
            raise UserError(f"seed {unknown[0]} is not in run {run_dir.name} (its seeds: {known})")
        chosen = [refined.get(s) or candidates[s] for s in seeds]
    inputs = [UpscaleInput(run_dir / item["path"], run_dir / STAGE_DIR / f"seed-{item['seed']}.png", item["seed"])
              for item in chosen]
    return run_dir, inputs


def file_inputs(paths: list[Path], out_dir: Path, scale_label: str) -> list[UpscaleInput]:
    """Image files, and the images directly inside folders, each to ``out_dir/<stem>-x<scale>.png``."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files.extend(found)
        elif path.is_file():
            check_image_file(path)
            files.append(path)
        else:
            raise UserError(f"{path} does not exist")
    names: dict[str, int] = {}
    inputs = []
    for path in files:
        stem = path.stem
        count = names.get(stem, 0)
        names[stem] = count + 1
        name = f"{stem}-x{scale_label}.png" if count == 0 else f"{stem}-{count + 1}-x{scale_label}.png"
        inputs.append(UpscaleInput(path, Path(out_dir) / name))
    return inputs


_FORMATS = {"PNG": {".png"}, "JPEG": {".jpg", ".jpeg"}, "WEBP": {".webp"}, "BMP": {".bmp"},
            "TIFF": {".tif", ".tiff"}}


def check_image_file(path: Path) -> None:
    """Refuse, before any model loads, a file that is not an image we read: a wrong extension,
    not an image, or a header claiming a decompression bomb. Content that disagrees with its
    extension (a JPEG named .png, common on the web) is read by its content, with a warning."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path} does not have an image extension ({', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                kind = image.format
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(f"{path} has too many pixels to be safe to decode "
                        f"(more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{path} is truncated or corrupt ({err})") from None
    if kind in _FORMATS and path.suffix.lower() not in _FORMATS[kind]:
        log.warning("%s holds a %s image despite its extension; reading it as %s", path, kind, kind)


# ------------------------------------------------------------------ stage

def scale_label(scale: float | None, native: int | None = None) -> str:
    value = scale if scale is not None else native
    if value is None:
        return "4"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _check(scale, tile, overlap, precision) -> None:
    if scale is not None and not 0 < scale <= 16:
        raise UserError(f"--scale must be above 0 and at most 16, not {scale:g}")
    if tile is not None and tile != 0 and tile < 16:
        raise UserError(f"--tile must be 0 (whole image) or at least 16, not {tile}")
    if overlap is not None and not 0 <= overlap <= 256:
        raise UserError(f"--tile-overlap must be 0 to 256, not {overlap}")
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be {', '.join(PRECISIONS[:-1])} or {PRECISIONS[-1]}, not {precision!r}")


def plan(session, inputs: list[UpscaleInput], *, model, scale, tile, overlap, precision):
    """The weights to use and one job per input (pure: no torch)."""
    from ..models import upscaler_weights as weights_mod

    _check(scale, tile, overlap, precision)
    resolved = weights_mod.resolve_weights(model)
    weights_digest = weights_mod.weights_digest(resolved.path)
    concrete = concrete_precision(precision, session.device)
    jobs = []
    for item in inputs:
        try:
            digest = file_digest(item.path)
        except OSError as err:
            raise UserError(f"cannot read {item.path}: {err.strerror or err}") from None
        jobs.append(UpscaleJob(input=digest, weights=weights_digest, scale=float(scale or 0.0),
                               tile=-1 if tile is None else int(tile), overlap=-1 if overlap is None else int(overlap),
                               precision=concrete))
    return resolved, jobs


def estimate(session, inputs: list[UpscaleInput], *, model: str | None = None, scale: float | None = None,
             tile: int | None = None, overlap: int | None = None, precision: str = "auto", detail=None) -> float:
    """Seconds the upscale of ``inputs`` would take here (0 for pictures already in the store),
    from a throughput measured now on this machine (loads the model)."""
    if detail is not None and detail.strength > 0:
        detail_stage, sr, scale = _detail_sr(session, inputs, model, scale, tile, overlap, precision)
        return detail_stage.estimate(session, inputs, sr=sr, settings=detail, scale=scale)
    resolved, jobs = plan(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
    sizes = [image_size(item.path) for item, job in zip(inputs, jobs) if not session.store.has(job.key)]
    if not sizes:
        return 0.0
    engine = _load(session, resolved.path, precision, jobs[0].precision)
    seconds = engine.estimate_seconds(sizes, tile, overlap)
    remember_cost(session.store.root, engine)
    return seconds


def upscale(session, inputs: list[UpscaleInput], *, model: str | None = None, scale: float | None = None,
            tile: int | None = None, overlap: int | None = None, precision: str = "auto",
            run_dir: Path | None = None, dry_run: bool = False, on_progress: OnProgress | None = None,
            detail=None) -> StageResult:
    """Upscale ``inputs``; ``on_progress(done_tiles, total_tiles)`` is called as tiles finish.

    ``detail`` (a ``detail.DetailSettings`` with a strength above 0): then the diffusion model re-draws the
    upscaled picture over tiles (``stages/detail.py``); the scale defaults to 2.

    Ctrl-C (KeyboardInterrupt) stops after the tile under way: the pictures finished before it are
    stored, in place and recorded in the run."""
    if detail is not None and detail.strength > 0:
        detail_stage, sr, scale = _detail_sr(session, inputs, model, scale, tile, overlap, precision)
        return detail_stage.run(session, inputs, sr=sr, settings=detail, scale=scale, run_dir=run_dir,
                                dry_run=dry_run, on_progress=on_progress)
    resolved, jobs = plan(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
    upscaler = upscaler_name(resolved)
    store = session.store
    if dry_run:
        todo = [(item, job) for item, job in zip(inputs, jobs) if not store.has(job.key)]
        if todo and session.progress:  # the CLI's text mode: how long it would take (loads the upscaler)
            engine = _load(session, resolved.path, precision, jobs[0].precision)
            seconds = engine.estimate_seconds([image_size(item.path) for item, _ in todo], tile, overlap)
            remember_cost(store.root, engine)
            logging.getLogger("pipeline.status").info(describe_estimate(seconds, len(todo), engine, will=False))
        return StageResult("upscale", run_dir, planned=len(jobs), stored=len(jobs) - len(todo), computed=len(todo),
                           dry_run=True)

    # several processes (accelerate launch / torchrun): each computes its share of the misses
    misses = [job.key for job in jobs if not store.has(job.key)]
    elsewhere = distributed.others_share(misses)
    mine = [(item, job) for item, job in zip(inputs, jobs) if job.key in set(misses) - elsewhere]
    engine = progress = None
    if mine:
        engine = _load(session, resolved.path, precision, jobs[0].precision)
        sizes = {job.key: image_size(item.path) for item, job in mine}
        if session.progress and distributed.is_main_process():
            warn_if_long(engine.estimate_seconds(list(sizes.values()), tile, overlap), len(mine), engine)
        total = sum(engine.windows(*sizes[job.key], tile, overlap) for _, job in mine)
        progress = TileProgress(total, bar=session.progress and distributed.is_main_process(),
                                on_progress=on_progress)
    items: list[Item] = []
    try:
        for item, job in zip(inputs, jobs):
            if job.key in elsewhere:
                continue
            with store.lock(job.key):
                artifact = store.get(job.key)
                cached = artifact is not None
                if artifact is None:
                    if engine is None:  # stored when planned, removed since
                        engine = _load(session, resolved.path, precision, job.precision)
                        progress, sizes = TileProgress(0, bar=False, on_progress=on_progress), {}
                    sizes.setdefault(job.key, image_size(item.path))
                    progress.start_picture(engine.windows(*sizes[job.key], tile, overlap))
                    started = time.perf_counter()
                    data = _upscale_one(engine, item.path, job, tile, overlap, progress.picture_callback)
                    seconds = time.perf_counter() - started
                    engine.learn([sizes[job.key]], tile, overlap, seconds)  # the next estimate starts from it
                    artifact = store.put(job.key, data, {"job": job.describe(), "seconds": round(seconds, 4),
                                                         "device": str(engine.device),
                                                         "precision": engine.precision,
                                                         "source": str(item.path), "version": __version__,
                                                         **distributed.record_fields()})
                    progress.finish_picture()
            place(artifact.path, item.dest)
            items.append(Item(item.seed, item.dest, job.key, cached, artifact.record.get("seconds", 0.0),
                              name=item.path.name))
            if run_dir is not None and distributed.is_main_process():
                _record(run_dir, items, upscaler, _run_fields(jobs))
    except KeyboardInterrupt:
        if run_dir is not None and items and distributed.is_main_process():
            write_gallery(run_dir)  # the finished pictures are in run.json already
        raise
    finally:
        if progress is not None:
            progress.close()
        if engine is not None:  # what the probes measured and the real upscales taught, for the next process
            remember_cost(store.root, engine)
    distributed.wait_for_everyone()
    if elsewhere:
        items = _with_shares(store, inputs, jobs, items, elsewhere)
    if run_dir is not None and distributed.is_main_process():
        _record(run_dir, items, upscaler, _run_fields(jobs))
        write_gallery(run_dir)
    distributed.wait_for_everyone()  # the others go on once run.json is complete
    computed = sum(not item.cached for item in items)
    return StageResult("upscale", run_dir, items, planned=len(jobs), stored=len(jobs) - computed, computed=computed)


def _with_shares(store, inputs, jobs, items: list[Item], elsewhere: set) -> list[Item]:
    """Several processes: this process's items and the other processes' pictures, in input order."""
    mine = iter(items)
    merged = []
    for item, job in zip(inputs, jobs):
        if job.key not in elsewhere:
            merged.append(next(mine))
            continue
        artifact = store.get(job.key)
        if artifact is None:
            raise UserError(f"{item.path.name} was upscaled by another process but is not in the store "
                            f"{store.root}; give every process the same shared store (PIPELINE_STORE)")
        if distributed.is_main_process():
            place(artifact.path, item.dest)
        merged.append(Item(item.seed, item.dest, job.key, False, artifact.record.get("seconds", 0.0),
                           name=item.path.name))
    return merged


def _detail_sr(session, inputs, model, scale, tile, overlap, precision):
    """An upscale with detail: the detail stage, its super-resolution step and the scale (default 2)."""
    from . import detail as detail_stage

    scale = detail_stage.DEFAULT_DETAIL_SCALE if scale is None else scale
    resolved, jobs = plan(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
    return detail_stage, detail_stage.SuperResolution(session, resolved, jobs, inputs, tile, overlap, precision), scale


def _load(session, weights_path: Path, precision: str, concrete: str):
    """The upscaler, loaded once per session (an estimate and the upscale that follows share it)."""
    from ..engines.upscaler import load_upscaler

    def load():
        engine = load_upscaler(weights_path, device=session.device or "auto", precision=precision)
        recall_cost(session.store.root, engine)  # measured before on this machine: no probes this time
        if engine.precision != concrete:
            log.info("upscaler runs in %s (asked for %s)", engine.precision, concrete)
        return engine

    return session.upscaler((str(weights_path), session.device, precision), load)


def _upscale_one(engine, path: Path, job: UpscaleJob, tile, overlap, progress) -> bytes:
    """Upscale one image file; return PNG bytes carrying the input's metadata plus this step."""
    from ..engines.upscale_images import load_image, resize_to

    image = load_image(path)
    result = engine.upscale(image, tile=tile, overlap=overlap, progress=progress)
    if job.scale and job.scale != engine.scale:
        result = resize_to(result, job.scale, base_size=image.size)
    return _encode(result, path, engine, job, tile, overlap)


def _encode(image, source: Path, engine, job: UpscaleJob, tile: int | None, overlap: int | None) -> bytes:
    """PNG bytes as A1111's Extras tab writes them: the source's ``parameters`` untouched, the upscale
    in ``postprocessing`` and ``extras``; our JSON record gains an ``upscale`` step (the file's own key)."""
    import io

    from PIL import Image, PngImagePlugin

    scale = job.scale or engine.scale
    used_tile, used_overlap = engine.settings(tile, overlap, image_size(source))
    step = {"upscaler": engine.name, "weights": job.weights, "scale": scale, "tile": used_tile,
            "overlap": used_overlap if used_tile else 0, "precision": job.precision, "input": job.input,
            "key": job.key, "width": image.width, "height": image.height}
    try:
        with Image.open(source) as original:
            text = dict(getattr(original, "text", None) or {})
    except OSError:
        text = {}
    info = PngImagePlugin.PngInfo()
    if isinstance(text.get(A1111_CHUNK), str):
        info.add_text(A1111_CHUNK, text[A1111_CHUNK])
    extras = a1111_postprocessing({"Postprocess upscale by": scale,
                                   "Postprocess upscaler": a1111_upscaler_name(engine.name)})
    info.add_text(POSTPROCESSING_CHUNK, extras)
    info.add_text(EXTRAS_CHUNK, extras)
    record = {}
    if isinstance(text.get(JSON_CHUNK), str):
        try:
            record = json.loads(text[JSON_CHUNK])
        except ValueError:
            record = {}
    record["upscale"] = step
    info.add_itxt(JSON_CHUNK, json.dumps(record, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def _run_fields(jobs: list[UpscaleJob]) -> dict:
    """run.json fields of each plain upscale beyond the upscaler (by key): the scale asked for."""
    return {job.key: {"scale": job.scale} for job in jobs if job.scale}


def upscaler_name(resolved) -> str:
    """The weights as `--upscaler` takes them: a preset's or weights folder file's name, else the file's path."""
    from ..models.upscaler_weights import SOURCE_FILE, weights_dir

    if resolved.source != SOURCE_FILE or resolved.path.parent == weights_dir():
        return resolved.name
    return str(resolved.path.resolve())


def _record(run_dir: Path, items: list[Item], upscaler: str, fields: dict | None = None) -> None:
    """Merge the upscaled pictures into run.json's "upscale" section by output path, under the run's lock;
    ``fields``: more fields of each picture by key (the scale; the detail settings)."""
    entries = []
    for item in items:
        rel = str(item.path.relative_to(run_dir))
        entries.append({"seed": item.seed, "key": item.key, "path": rel, "source": item.name,
                        "upscaler": upscaler, "seconds": item.seconds, "cached": item.cached,
                        **(fields or {}).get(item.key, {})})
    record_pictures(run_dir, "upscale", entries, id_of=lambda e: e.get("path"), order=lambda e: pick_order(e.get("seed")))

