"""``upscale --detail``: super-resolution to the target scale, then the diffusion model re-draws the result
image-to-image over tiles at a low strength (Fooocus's "Upscale (2x)", A1111's SD upscale script).

Two stored steps per picture: the plain upscale (its own UpscaleJob key, so a later plain upscale or a
second strength reuses it) and the detail pass, whose DetailJob key holds the upscale's key, the detail
settings and the diffusion model's fingerprint. Planning reads the pictures' records; no torch.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..scale import distributed
from ..core.errors import UserError
from ..core.images import A1111_CHUNK, JSON_CHUNK, _variance_entries, a1111_upscaler_name, quote, read_info
from ..core.jobs import DetailJob, variance_from_record
from ..models.names import display_name
from ..core.runs import place
from .specs import DEFAULT_GUIDANCE, DEFAULT_STEPS
from ..web.gallery import write_gallery
from . import upscale
from ..core.control import a1111_line
from . import control as controls
from .common import Item, StageResult, recorded_loras, recorded_meta, recorded_seed
from .upscale_time import TileProgress, image_size

log = logging.getLogger("pipeline")

DEFAULT_DETAIL_SCALE = 2.0
DEFAULT_DETAIL_TILE = 1024
MIN_DETAIL_TILE = 64


@dataclass(frozen=True)
class DetailSettings:
    strength: float
    tile: int = DEFAULT_DETAIL_TILE
    prompt: str | None = None  # for a file that carries none
    control: object = None  # stages.specs.ControlSpec: the Tile ControlNet (or another) over each tile


def check_detail(strength, tile) -> None:
    if not 0 <= strength <= 1:
        raise UserError(f"--detail must be from 0 (off) to 1, not {strength:g}")
    if not isinstance(tile, int) or tile < MIN_DETAIL_TILE or tile > 4096:
        raise UserError(f"--detail-tile must be {MIN_DETAIL_TILE} to 4096 output pixels, not {tile}")


# ---------------------------------------------------------------- planning

def picture_meta(path: Path, prompt: str | None) -> dict:
    """Prompt, negative, seed, variance and LoRAs of a picture, from its record (or A1111 text); --prompt wins."""
    meta = recorded_meta(read_info(path))
    if prompt is not None:
        meta["prompt"] = prompt
    if not meta.get("prompt"):
        raise UserError(f"{path} carries no prompt: give --prompt to add detail to it")
    meta["seed"] = recorded_seed(meta.get("seed"))
    return meta


def output_size(path: Path, scale: float) -> tuple[int, int]:
    """The upscale's output size (as ``upscale_images.resize_to`` rounds it)."""
    width, height = image_size(path)
    return max(1, round(width * scale)), max(1, round(height * scale))


def plan(session, inputs, sr_jobs, scale: float, settings: DetailSettings, control=None) -> list[DetailJob]:
    """``control``: ``stages.control.StageControl`` (``prepare_control``); its map is at the output size, made
    from the control image or, tile without one, from the picture being upscaled."""
    from PIL import Image

    from ..engines.tiling import detail_overlap
    from ..core.jobs import make_loras

    jobs = []
    for item, sr_job in zip(inputs, sr_jobs):
        meta = picture_meta(item.path, settings.prompt)
        width, height = output_size(item.path, scale)
        variance = variance_from_record(meta.get("variance"))
        use = None
        if control is not None:
            picture = None
            if control.source is None:
                with Image.open(item.path) as opened:
                    picture = opened.convert("RGB")
            use = control.use(control.map_for(width, height, picture))
        jobs.append(DetailJob(sr=sr_job.key, model=session.fingerprint, prompt=meta["prompt"], negative="",
                              width=width, height=height, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE,
                              seed=meta["seed"], dtype=session.dtype, strength=float(settings.strength),
                              tile=settings.tile, overlap=detail_overlap(settings.tile), variance=variance,
                              loras=make_loras(recorded_loras(session, meta.get("loras"), str(item.path))),
                              control=use))
    return jobs


def prepare_control(session, settings: DetailSettings):
    return controls.prepare(session, settings.control, "tile", "upscale --detail", has_picture=True)


# ---------------------------------------------------------------- executing

def estimate(session, inputs, *, sr, settings: DetailSettings, scale: float) -> float:
    """Seconds for the pictures not yet stored: the upscales still missing (measured throughput) plus the
    tiles (a one-step probe of the diffusion model, scaled by pixels and steps; loads the model)."""
    from ..engines.tiling import detail_rects

    jobs = plan(session, inputs, sr.jobs, scale, settings, prepare_control(session, settings))
    store = session.store
    misses = [(item, sr_job, job) for item, sr_job, job in zip(inputs, sr.jobs, jobs) if not store.has(job.key)]
    if not misses:
        return 0.0
    seconds = sr.estimate_seconds([(item, sr_job) for item, sr_job, _ in misses if not store.has(sr_job.key)])
    sr.release()
    from ..engines.detail import steps_run, tile_cost

    per_pixel, per_pixel_step = tile_cost(session.engine())
    for _, _, job in misses:
        pixels = sum(w * h for _, _, w, h in detail_rects(job.width, job.height, job.tile, job.overlap))
        seconds += pixels * (per_pixel + steps_run(job.steps, job.strength) * per_pixel_step)
    return seconds


def run(session, inputs, *, sr, settings: DetailSettings, scale: float, run_dir, dry_run, on_progress):
    """``sr``: the upscale stage's helpers for the super-resolution step (``upscale.SuperResolution``)."""
    from ..engines.tiling import detail_rects

    control = prepare_control(session, settings)
    jobs = plan(session, inputs, sr.jobs, scale, settings, control)
    store = session.store
    if dry_run:
        todo = [(item, sr_job, job) for item, sr_job, job in zip(inputs, sr.jobs, jobs) if not store.has(job.key)]
        if todo and session.progress:
            _say_dry_run(sr, todo)
        return StageResult("upscale", run_dir, planned=len(jobs), stored=len(jobs) - len(todo),
                           computed=len(todo), dry_run=True)
    misses = [(item, sr_job, job) for item, sr_job, job in zip(inputs, sr.jobs, jobs) if not store.has(job.key)]
    tiles = {job.key: len(detail_rects(job.width, job.height, job.tile, job.overlap)) for _, _, job in misses}
    if misses:
        _require_lora_files(session, [job for _, _, job in misses])
    progress = None
    items: list[Item] = []
    try:
        if misses:
            sr_misses = [(item, sr_job) for item, sr_job, _ in misses if not store.has(sr_job.key)]
            progress = TileProgress(sr.windows(sr_misses) + sum(tiles.values()),
                                    bar=session.progress and distributed.is_main_process(), on_progress=on_progress)
            for item, sr_job in sr_misses:  # every super-resolution first, then one model at a time
                sr.compute(item, sr_job, progress)
            sr.release()
        engine = None
        for item, sr_job, job in zip(inputs, sr.jobs, jobs):
            with store.lock(job.key):
                artifact = store.get(job.key)
                cached = artifact is not None
                if artifact is None:
                    if engine is None:
                        engine = session.engine()
                        engine.check_loras([job for _, _, job in misses])
                    if engine.fingerprint != job.model:  # the model's identity became known on load
                        job = dataclasses.replace(job, model=engine.fingerprint)
                        artifact = store.get(job.key)
                    if artifact is None:
                        artifact = _detail_one(session, engine, item, sr, sr_job, job, progress, tiles.get(job.key),
                                               control)
                    else:
                        cached = True
            place(artifact.path, item.dest)
            items.append(Item(item.seed, item.dest, job.key, cached, artifact.record.get("seconds", 0.0),
                              name=item.path.name))
            if run_dir is not None:
                sr.record(run_dir, items, _run_fields(jobs, sr))
    except KeyboardInterrupt:
        if run_dir is not None and items:
            write_gallery(run_dir)
        raise
    finally:
        if progress is not None:
            progress.close()
    if run_dir is not None:
        sr.record(run_dir, items, _run_fields(jobs, sr))
        if control is not None:
            for made in control.maps.values():
                control.keep(run_dir, made)
        write_gallery(run_dir)
    computed = sum(not item.cached for item in items)
    return StageResult("upscale", run_dir, items, planned=len(jobs), stored=len(jobs) - computed, computed=computed)


def _require_lora_files(session, jobs) -> None:
    """Every LoRA the pictures were made with has its file here, before anything runs (one sentence;
    upscale has no --lora/--no-lora, so the hint is only to put the file back)."""
    try:
        session.require_lora_files(jobs)
    except UserError as err:
        text = str(err)
        cut = text.find("; put the file there")
        raise UserError((text[:cut] if cut > 0 else text) + "; put the file there to add detail with it, "
                        "or upscale without --detail") from None


def _say_dry_run(sr, todo) -> None:
    """--dry-run: the upscales' time (measured; loads the upscaler) and the detail pass's size (not timed:
    that would load the diffusion model; ``Pipeline.estimate_upscale`` does)."""
    from ..engines.detail import steps_run
    from ..engines.tiling import detail_rects
    from .upscale_time import describe_estimate

    status = logging.getLogger("pipeline.status")
    missing = [(item, sr_job) for item, sr_job, _ in todo if not sr.session.store.has(sr_job.key)]
    if missing:
        status.info(describe_estimate(sr.estimate_seconds(missing), len(missing), sr.engine(), will=False))
    tiles = sum(len(detail_rects(job.width, job.height, job.tile, job.overlap)) for _, _, job in todo)
    job = todo[0][2]
    status.info(f"detail: {tiles} tile{'s' if tiles != 1 else ''} of at most {job.tile} px, "
                f"{steps_run(job.steps, job.strength)} of {job.steps} steps each at strength {job.strength:g} "
                "(not timed by --dry-run: that would load the diffusion model)")


def _run_fields(jobs: list[DetailJob], sr) -> dict:
    """run.json fields of each detail picture (by key): the upscaler and the detail settings."""
    return {job.key: {"scale": sr.scale, "detail": job.strength, "detail_tile": job.tile,
                      "detail_overlap": job.overlap, "detail_model": display_name_of(job.model),
                      "detail_steps": job.steps,
                      **({"detail_control": dataclasses.asdict(job.control)} if job.control else {})}
            for job in jobs}


def display_name_of(fingerprint: str) -> str:
    return display_name(fingerprint.split("@", 1)[0].removeprefix("hub:"))


def _detail_one(session, engine, item, sr, sr_job, job: DetailJob, progress, tile_count, control=None):
    from PIL import Image

    from ..engines.detail import add_detail
    from ..engines.tiling import detail_rects

    sr_artifact = session.store.get(sr_job.key)
    if sr_artifact is None:  # stored when planned, removed since
        sr_artifact = sr.compute(item, sr_job, None)
    with Image.open(sr_artifact.path) as opened:
        canvas = opened.convert("RGB")
    if canvas.size != (job.width, job.height):
        canvas = canvas.resize((job.width, job.height), Image.Resampling.LANCZOS)
    if progress is not None:
        progress.start_picture(tile_count or 0)
    engine.reset_peak_memory()
    started = time.perf_counter()
    tiled_control = (control.entry, control.maps[job.control.map]) if job.control is not None else None
    image = add_detail(engine, canvas, job, progress=progress.picture_callback if progress else None,
                       control=tiled_control)
    seconds = time.perf_counter() - started
    rects = detail_rects(job.width, job.height, job.tile, job.overlap)
    data = encode(image, sr_artifact.path, job, sr, sr_job, rects, control)
    artifact = session.store.put(job.key, data, {
        "job": job.describe(), "seconds": round(seconds, 4), "device": str(engine.device), "profile": engine.profile,
        "peak_memory_bytes": engine.peak_memory_bytes(), "source": str(item.path), "sr_key": sr_job.key,
        "version": __version__, **distributed.record_fields()})
    if progress is not None:
        progress.finish_picture()
    return artifact


class SuperResolution:
    """The upscale step of ``upscale --detail``: its jobs, computed and stored as a plain upscale stores them."""

    def __init__(self, session, resolved, jobs: list, inputs: list, tile, overlap,
                 precision):
        self.session, self.resolved, self.jobs, self.inputs = session, resolved, jobs, inputs
        self.tile, self.overlap, self.precision = tile, overlap, precision
        self.name = upscale.upscaler_name(resolved)
        self.scale = jobs[0].scale if jobs else None

    def engine(self):
        return upscale._load(self.session, self.resolved.path, self.precision, self.jobs[0].precision)

    def estimate_seconds(self, pairs) -> float:
        """Seconds to upscale these (input, job) pairs here (measured throughput)."""
        if not pairs:
            return 0.0
        return self.engine().estimate_seconds([image_size(item.path) for item, _ in pairs], self.tile, self.overlap)

    def windows(self, pairs) -> int:
        if not pairs:
            return 0
        engine = self.engine()
        return sum(engine.windows(*image_size(item.path), self.tile, self.overlap) for item, _ in pairs)

    def compute(self, item, job, progress):
        """Upscale one input into the store (unless another process just did); returns the artifact."""
        store = self.session.store
        with store.lock(job.key):
            artifact = store.get(job.key)
            if artifact is not None:
                return artifact
            engine = self.engine()
            if progress is not None:
                progress.start_picture(engine.windows(*image_size(item.path), self.tile, self.overlap))
            started = time.perf_counter()
            data = upscale._upscale_one(engine, item.path, job, self.tile, self.overlap,
                                progress.picture_callback if progress is not None else None)
            artifact = store.put(job.key, data, {"job": job.describe(), "seconds": round(time.perf_counter() - started, 4),
                                                 "device": str(engine.device), "precision": engine.precision,
                                                 "source": str(item.path), "version": __version__,
                                                 **distributed.record_fields()})
            if progress is not None:
                progress.finish_picture()
            return artifact

    def release(self) -> None:
        """Free the upscaler before the diffusion model loads (one model on a GPU at a time)."""
        self.session.release_upscaler()

    def record(self, run_dir: Path, items: list[Item], fields: dict) -> None:
        if distributed.is_main_process():
            upscale._record(run_dir, items, self.name, fields)


# ---------------------------------------------------------------- metadata

def a1111_detail_parameters(job: DetailJob, upscaler: str, model_name: str) -> str:
    """The text A1111's SD upscale script leaves on its output: the img2img infotext (``Size`` is the tile,
    as its ``p.width``/``p.height`` are) with ``Denoising strength``, ``SD upscale overlap`` and
    ``SD upscale upscaler`` (scripts/sd_upscale.py's ``extra_generation_params``)."""
    from ..engines.tiling import detail_rects

    rects = detail_rects(job.width, job.height, job.tile, job.overlap)
    tile_w, tile_h = max(r[2] for r in rects), max(r[3] for r in rects)
    lines = [job.prompt]
    if job.negative:
        lines.append(f"Negative prompt: {job.negative}")
    params = {"seed": job.seed, "variance": dataclasses.asdict(job.variance) if job.variance else None}
    settings = [("Steps", job.steps), ("Sampler", "Euler"), ("Schedule type", "Simple"), ("CFG scale", job.guidance),
                ("Seed", job.seed), ("Size", f"{tile_w}x{tile_h}"), ("Model", model_name),
                ("Denoising strength", job.strength), ("SD upscale overlap", job.overlap),
                ("SD upscale upscaler", a1111_upscaler_name(upscaler)), *_variance_entries(params),
                ("ControlNet 0", a1111_line({"control": dataclasses.asdict(job.control), "width": tile_w,
                                             "height": tile_h}) if job.control else None),
                ("Version", f"pipeline {__version__}")]
    lines.append(", ".join(f"{name}: {quote(value)}" for name, value in settings if value not in (None, "")))
    return "\n".join(lines)


def encode(image, sr_path: Path, job: DetailJob, sr, sr_job, rects, control=None) -> bytes:
    """PNG bytes: A1111's SD upscale text in ``parameters``; our JSON record is the upscaled picture's (its
    source's record plus the ``upscale`` step) with the step's key now the detail job's and a ``detail``
    entry listing the settings and each tile's rectangle in output pixels."""
    from PIL import Image, PngImagePlugin

    with Image.open(sr_path) as original:
        text = dict(getattr(original, "text", None) or {})
    try:
        record = json.loads(text.get(JSON_CHUNK) or "{}")
    except ValueError:
        record = {}
    step = dict(record.get("upscale") or {})
    model_name = display_name_of(job.model)
    step.update(key=job.key, sr_key=sr_job.key, width=image.width, height=image.height, detail={
        "strength": job.strength, "tile": job.tile, "overlap": job.overlap, "steps": job.steps,
        "guidance": job.guidance, "seed": job.seed, "prompt": job.prompt, "model": job.model,
        "model_name": model_name, "dtype": job.dtype, "tiles": [list(r) for r in rects],
        **({"variance": dataclasses.asdict(job.variance)} if job.variance else {}),
        **({"loras": [dataclasses.asdict(use) for use in job.loras]} if job.loras else {}),
        **({"control": control.record(control.maps[job.control.map])} if job.control is not None else {})})
    record["upscale"] = step
    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_CHUNK, a1111_detail_parameters(job, sr.resolved.name, model_name))
    info.add_itxt(JSON_CHUNK, json.dumps(record, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()
