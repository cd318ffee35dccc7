"""``upscale --detail``: super-resolution to the target scale, then the diffusion model re-draws the result
image-to-image over tiles at a low strength (Fooocus's "Upscale (2x)", A1111's SD upscale script).

Two stored steps per picture: the plain upscale (its own UpscaleJob key, so a later plain upscale or a
second strength reuses it) and the detail pass, whose DetailJob key holds the upscale's key, the detail
settings and the diffusion model's fingerprint. Planning reads the pictures' records; no torch.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core.errors import UserError
from ..core.images import read_info
from ..core.jobs import DetailJob, variance_from_record
from ..models.names import display_name
from .specs import DEFAULT_DETAIL_TILE, DEFAULT_GUIDANCE, DEFAULT_STEPS
from .common import StageResult, recorded_loras, recorded_meta, recorded_seed
from . import control as controls
from .executor import Executor, StageWork, Work
from .superres import source_record, super_resolution
from .upscale_time import TileProgress, image_size

log = logging.getLogger("pipeline")

DEFAULT_DETAIL_SCALE = 2.0


@dataclass(frozen=True)
class DetailSettings:
    strength: float
    tile: int = DEFAULT_DETAIL_TILE
    prompt: str | None = None  # for a file that carries none
    control: object = None  # stages.specs.ControlSpec: the Tile ControlNet (or another) over each tile


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
        use = None
        if control is not None:
            picture = None
            if control.source is None:
                with Image.open(item.path) as opened:
                    picture = opened.convert("RGB")
            use = control.use(control.map_for(*output_size(item.path, scale), picture))
        width, height = output_size(item.path, scale)
        variance = variance_from_record(meta.get("variance"))
        jobs.append(DetailJob(sr=sr_job.key, model=session.fingerprint, prompt=meta["prompt"], negative="",
                              width=width, height=height, steps=DEFAULT_STEPS, guidance=DEFAULT_GUIDANCE,
                              seed=meta["seed"], dtype=session.dtype, strength=float(settings.strength),
                              tile=settings.tile, overlap=detail_overlap(settings.tile), variance=variance,
                              loras=make_loras(recorded_loras(session, meta.get("loras"), str(item.path))),
                              control=use))
    return jobs


# ---------------------------------------------------------------- executing

def estimate(session, inputs, *, settings: DetailSettings, model=None, scale=None, tile=None, overlap=None,
             precision="auto") -> float:
    """Seconds for the pictures not yet stored: the upscales still missing (measured throughput) plus the
    tiles (a one-step probe of the diffusion model, scaled by pixels and steps; loads the model)."""
    from ..engines.tiling import detail_rects

    scale = DEFAULT_DETAIL_SCALE if scale is None else scale
    sr = super_resolution(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
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


def upscale(session, inputs, *, settings: DetailSettings, model=None, scale=None, tile=None, overlap=None,
            precision="auto", run_dir=None, dry_run=False, on_progress=None, stop=None) -> StageResult:
    """Upscale with detail: the super-resolution step (``superres``) to ``scale`` (default 2), then the
    diffusion model re-draws each picture over tiles; ``stop`` ends after the picture under way."""
    scale = DEFAULT_DETAIL_SCALE if scale is None else scale
    executor = Executor(session)
    sr = super_resolution(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision,
                          provenance=executor.share.record_fields())
    control = prepare_control(session, settings)
    jobs = plan(session, inputs, sr.jobs, scale, settings, control)
    works = [Work(index, job, (item, sr_job)) for index, (item, sr_job, job) in enumerate(zip(inputs, sr.jobs, jobs))]
    if dry_run:
        todo = [(item, sr_job, job) for item, sr_job, job in zip(inputs, sr.jobs, jobs)
                if not session.store.has(job.key)]
        if todo and session.progress:
            _say_dry_run(sr, todo)
        return StageResult("upscale", run_dir, planned=len(jobs), stored=len(jobs) - len(todo),
                           computed=len(todo), dry_run=True)
    if control is not None and run_dir is not None and executor.main:
        for made in control.maps.values():
            control.keep(run_dir, made)
    items = executor.run(DetailWork(session, sr, jobs, run_dir, on_progress, stop, control), works, stop=stop)
    computed = sum(not item.cached for item in items)
    return StageResult("upscale", run_dir, items, planned=len(jobs), stored=len(jobs) - computed, computed=computed)


class DetailWork(StageWork):
    """The detail pass's part: every missing super-resolution first (one model at a time), then one picture per
    call redrawn over tiles; progress in tiles (the upscales' and the detail pass's); recorded as an upscale."""

    name = "detail"

    def __init__(self, session, sr, jobs: list[DetailJob], run_dir, on_progress, stop=None, control=None):
        super().__init__(session)
        self.sr, self.run_dir, self.on_progress, self.control = sr, run_dir, on_progress, control
        self.stop = stop  # checked between tiles too: a picture is many model calls
        self.fields = _run_fields(jobs, sr)

    def dest(self, work):
        return work.part[0].dest

    def place(self, work, artifact, cached, seconds=None, put=True):
        item = super().place(work, artifact, cached, seconds, put)
        item.seed = work.part[0].seed
        return item

    def item_name(self, work) -> str:
        return work.part[0].path.name

    def check(self, misses) -> None:
        _require_lora_files(self.session, [work.job for work in misses])

    def progress(self, misses, show):
        from ..engines.tiling import detail_rects

        store = self.session.store
        sr_misses = [work.part for work in misses if not store.has(work.part[1].key)]
        tiles = sum(len(detail_rects(w.job.width, w.job.height, w.job.tile, w.job.overlap)) for w in misses)
        return TileProgress(self.sr.windows(sr_misses) + tiles, bar=self.session.progress and show,
                            on_progress=self.on_progress)

    def load(self, misses, progress):
        for work in misses:  # every super-resolution first, then one model at a time
            item, sr_job = work.part
            if not self.session.store.has(sr_job.key):
                self.sr.compute(item, sr_job, progress)
        self.sr.release()
        return self.session.engine()

    def render(self, engine, works, progress) -> list:
        from PIL import Image

        from ..engines.detail import Stopped, add_detail
        from ..engines.tiling import detail_rects

        outputs = []
        for work in works:
            item, sr_job = work.part
            job = work.job
            sr_artifact = self.session.store.get(sr_job.key)
            if sr_artifact is None:  # stored when planned, removed since
                sr_artifact = self.sr.compute(item, sr_job, None)
            with Image.open(sr_artifact.path) as opened:
                canvas = opened.convert("RGB")
            if canvas.size != (job.width, job.height):
                canvas = canvas.resize((job.width, job.height), Image.Resampling.LANCZOS)
            rects = detail_rects(job.width, job.height, job.tile, job.overlap)
            progress.start_picture(len(rects))
            tiled = (self.control.entry, self.control.maps[job.control.map]) if job.control is not None else None
            try:
                image = add_detail(engine, canvas, job, progress=progress.picture_callback, stop=self.stop,
                                   control=tiled)
            except Stopped:
                break  # the pictures finished before it are kept; the executor stops before the next
            progress.finish_picture()
            outputs.append((image, sr_artifact.path, rects))
        return outputs

    def store(self, engine, work, output, seconds, provenance):
        image, sr_path, rects = output
        item, sr_job = work.part
        data = encode(image, sr_path, work.job, self.sr, sr_job, rects, self.control)
        return self.session.store.put(work.job.key, data, {
            "job": work.job.describe(), "seconds": round(seconds, 4), "device": str(engine.device),
            "profile": engine.profile, "peak_memory_bytes": engine.peak_memory_bytes(), "source": str(item.path),
            "sr_key": sr_job.key, "version": __version__, **provenance})

    def record(self, done) -> None:
        if self.run_dir is not None and done:
            self.sr.record(self.run_dir, [item for _, item in done], self.fields)


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
    from .upscale_time import describe_estimate, short_probe

    status = logging.getLogger("pipeline.status")
    missing = [(item, sr_job) for item, sr_job, _ in todo if not sr.session.store.has(sr_job.key)]
    if missing:
        short_probe(sr.engine())  # a remembered cost model, else two small probes: a dry run stays short
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


# ---------------------------------------------------------------- metadata

def prepare_control(session, settings: DetailSettings):
    return controls.prepare(session, settings.control, "tile", "upscale --detail", has_picture=True)


def encode(image, sr_path: Path, job: DetailJob, sr, sr_job, rects, control=None) -> bytes:
    """PNG bytes: our JSON record is the upscaled picture's (its source's record plus the ``upscale`` step)
    with the step's key now the detail job's and a ``detail`` entry listing the settings, the control and each
    tile's rectangle in output pixels; the other texts are the metadata writer's (A1111's SD upscale text)."""
    from ..core.metadata import encode_png

    record, _ = source_record(sr_path)
    step = dict(record.get("upscale") or {})
    step.update(key=job.key, sr_key=sr_job.key, width=image.width, height=image.height, detail={
        "strength": job.strength, "tile": job.tile, "overlap": job.overlap, "steps": job.steps,
        "guidance": job.guidance, "seed": job.seed, "prompt": job.prompt, "model": job.model,
        "model_name": display_name_of(job.model), "dtype": job.dtype, "tiles": [list(r) for r in rects],
        **({"variance": dataclasses.asdict(job.variance)} if job.variance else {}),
        **({"loras": [dataclasses.asdict(use) for use in job.loras]} if job.loras else {}),
        **({"control": control.record(control.maps[job.control.map])} if job.control is not None else {})})
    record["upscale"] = step
    return encode_png(image, record)
