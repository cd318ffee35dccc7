"""Upscale: Real-ESRGAN (or any spandrel model) super-resolution of a run's pictures or any image files.

The stage is its inputs (a run's pictures, files, folders), its work for the executor (one picture per model call,
counted in tiles) and its record (run.json's ``upscale`` section). The super-resolution step itself is
``superres.py``, below this stage and the detail pass (``detail.py``); the API chooses between the two.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..core.errors import UserError
from ..core.runs import load_run, resolve_run, stage_pictures
from ..core.seeds import pick_order
from .common import StageResult
from .executor import Executor, StageWork, Work
from .superres import UpscaleInput, put, scale_label, super_resolution, upscale_one  # noqa: F401 - the API's names
from .upscale_time import (OnProgress, TileProgress, describe_estimate, image_size, remember_cost, short_probe,
                           warn_if_long)

log = logging.getLogger("pipeline")

STAGE_DIR = "upscale"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


# ------------------------------------------------------------------ inputs

def run_inputs(out: Path, run: str | None, seeds: list | None) -> tuple[Path, list[UpscaleInput]]:
    """The pictures of a run to upscale: its refined ones, or the picked seeds (refined, else candidates)."""
    run_dir = resolve_run(out, run)
    data = load_run(run_dir)
    refined = {item["seed"]: item for item in stage_pictures(data, "refine")}
    candidates = {c["seed"]: c for c in stage_pictures(data, "explore")}
    candidates.update({f["seed"]: f for f in stage_pictures(data, "inpaint") if f.get("seed") in (seeds or ())})
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


def file_inputs(paths: list[Path], out_dir: Path, label: str) -> list[UpscaleInput]:
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
        name = f"{stem}-x{label}.png" if count == 0 else f"{stem}-{count + 1}-x{label}.png"
        inputs.append(UpscaleInput(path, Path(out_dir) / name))
    return inputs


_FORMATS = {"PNG": {".png"}, "JPEG": {".jpg", ".jpeg"}, "WEBP": {".webp"}, "BMP": {".bmp"},
            "TIFF": {".tif", ".tiff"}}


def check_image_file(path: Path) -> None:
    """Refuse, before any model loads, a file that is not an image we read: a wrong extension,
    not an image, or a header claiming a decompression bomb. Content that disagrees with its
    extension (a JPEG named .png, common on the web) is read by its content, with a warning."""
    from ..core.image_files import opened_image

    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise UserError(f"{path} does not have an image extension ({', '.join(sorted(IMAGE_SUFFIXES))})")
    with opened_image(path) as image:
        kind = image.format
        image.verify()  # a truncated file is refused now, not after the upscaler loaded (cheap: no decode)
    if kind in _FORMATS and path.suffix.lower() not in _FORMATS[kind]:
        log.warning("%s holds a %s image despite its extension; reading it as %s", path, kind, kind)


# ------------------------------------------------------------------ stage

def estimate(session, inputs: list[UpscaleInput], *, model: str | None = None, scale: float | None = None,
             tile: int | None = None, overlap: int | None = None, precision: str = "auto") -> float:
    """Seconds the upscale of ``inputs`` would take here (0 for pictures already in the store),
    from a throughput measured now on this machine (loads the model)."""
    sr = super_resolution(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
    pairs = [(item, job) for item, job in zip(inputs, sr.jobs) if not session.store.has(job.key)]
    if not pairs:
        return 0.0
    seconds = sr.estimate_seconds(pairs)
    remember_cost(session.store.root, sr.engine())
    return seconds


def upscale(session, inputs: list[UpscaleInput], *, model: str | None = None, scale: float | None = None,
            tile: int | None = None, overlap: int | None = None, precision: str = "auto",
            run_dir: Path | None = None, dry_run: bool = False, on_progress: OnProgress | None = None,
            stop=None) -> StageResult:
    """Upscale ``inputs``; ``on_progress(done_tiles, total_tiles)`` is called as tiles finish; ``stop`` (a
    threading.Event) ends after the picture under way.

    Ctrl-C (KeyboardInterrupt) stops after the tile under way: the pictures finished before it are
    stored, in place and recorded in the run."""
    executor = Executor(session)
    sr = super_resolution(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision,
                          provenance=executor.share.record_fields())
    works = [Work(index, job, item) for index, (item, job) in enumerate(zip(inputs, sr.jobs))]
    if dry_run:
        todo = [work for work in works if not session.store.has(work.job.key)]
        if todo and session.progress:  # the CLI's text mode: how long it would take (loads the upscaler)
            short_probe(sr.engine())  # a remembered cost model, else two small probes (not remembered): a dry run stays short
            seconds = sr.estimate_seconds([(work.part, work.job) for work in todo])
            logging.getLogger("pipeline.status").info(describe_estimate(seconds, len(todo), sr.engine(), will=False))
        return StageResult("upscale", run_dir, planned=len(works), stored=len(works) - len(todo), computed=len(todo),
                           dry_run=True)
    stage = UpscaleWork(session, sr, run_dir, on_progress)
    try:
        items = executor.run(stage, works, stop=stop)
    finally:
        if stage.engine is not None:  # what the probes measured and the real upscales taught, for the next process
            remember_cost(session.store.root, stage.engine)
    computed = sum(not item.cached for item in items)
    return StageResult("upscale", run_dir, items, planned=len(works), stored=len(works) - computed, computed=computed)


class UpscaleWork(StageWork):
    """The plain upscale's part: one picture per model call, progress in tiles, recorded by output path."""

    name = "upscale"

    def __init__(self, session, sr, run_dir: Path | None, on_progress):
        super().__init__(session)
        self.sr, self.run_dir, self.on_progress = sr, run_dir, on_progress
        self.engine = None
        self.fields = {job.key: {"scale": job.scale} for job in sr.jobs if job.scale}  # the scale asked for

    def dest(self, work):
        return work.part.dest

    def place(self, work, artifact, cached, seconds=None, put=True):
        item = super().place(work, artifact, cached, seconds, put)
        item.seed = work.part.seed
        return item

    def item_name(self, work) -> str:
        return work.part.path.name

    def progress(self, misses, show):
        engine = self.load(misses, None)
        sizes = [image_size(work.part.path) for work in misses]
        if self.session.progress and show:
            warn_if_long(engine.estimate_seconds(sizes, self.sr.tile, self.sr.overlap), len(misses), engine)
        total = sum(engine.windows(*size, self.sr.tile, self.sr.overlap) for size in sizes)
        return TileProgress(total, bar=self.session.progress and show, on_progress=self.on_progress)

    def load(self, misses, progress):
        self.engine = self.sr.engine()
        return self.engine

    def render(self, engine, works, progress) -> list:
        outputs = []
        for work in works:
            size = image_size(work.part.path)
            progress.start_picture(engine.windows(*size, self.sr.tile, self.sr.overlap))
            started = time.perf_counter()
            outputs.append(upscale_one(engine, work.part.path, work.job, self.sr.tile, self.sr.overlap,
                                       progress.picture_callback))
            engine.learn([size], self.sr.tile, self.sr.overlap, time.perf_counter() - started)  # the next estimate
            progress.finish_picture()
        return outputs

    def store(self, engine, work, data, seconds, provenance):
        return put(self.session.store, work.job, data, engine, work.part, seconds, provenance)

    remote_batch = 1

    def remote(self, misses) -> list:
        """What a Ray worker needs for each miss (``ray_render``): the job and the input file's bytes."""
        from .ray_render import RemoteWork

        return [RemoteWork.of(work.job, work.part.path.read_bytes(), name=work.part.path.name,
                              source=str(work.part.path)) for work in misses]

    def remote_engine(self):
        from .ray_render import UpscalerRecipe

        return UpscalerRecipe(str(self.sr.resolved.path), self.sr.jobs[0].precision)

    def remote_render(self):
        from .ray_render import Upscale

        return Upscale(self.sr.tile, self.sr.overlap)

    def record(self, done) -> None:
        if self.run_dir is not None and done:
            self.sr.record(self.run_dir, [item for _, item in done], self.fields)

    def missing_elsewhere(self, work) -> str:
        return (f"{work.part.path.name} was upscaled by another process but is not in the store "
                f"{self.session.store.root}; give every process the same shared store (PIPELINE_STORE)")
