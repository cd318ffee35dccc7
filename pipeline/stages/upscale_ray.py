"""Upscale (Real-ESRGAN) on the Ray pool: each worker loads the upscaler once and is sent the input files'
bytes; this process stores, places and records each picture as it returns (``ray_render``)."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core.runs import place
from . import ray_render
from . import upscale as stage
from .common import Item, StageResult


@dataclass(frozen=True)
class UpscalerRecipe:
    """The upscaler a worker loads: the weights (the same path on every node) in the planned precision."""

    weights: str
    precision: str  # concrete, as in the jobs' keys

    @property
    def key(self) -> tuple:
        return ("upscaler", self.weights, self.precision)

    def __call__(self):
        from ..engines.upscaler import load_upscaler

        return load_upscaler(Path(self.weights), device="auto", precision=self.precision)


@dataclass(frozen=True)
class Upscale:
    """Upscale each input (its bytes in ``Work.init``) as ``upscale`` stores it: PNG bytes and the record."""

    tile: int | None
    overlap: int | None

    def __call__(self, engine, works: list, batch) -> list[tuple[bytes, dict]]:
        pictures = []
        for work in works:
            extra = dict(work.extra)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / extra["name"]  # the source's metadata is read from the file
                path.write_bytes(work.init)
                started = time.perf_counter()
                data = stage._upscale_one(engine, path, work.job, self.tile, self.overlap, None)
                seconds = time.perf_counter() - started
            pictures.append((data, {"job": work.job.describe(), "seconds": round(seconds, 4),
                                    "device": str(engine.device), "precision": engine.precision,
                                    "source": extra["source"], "version": __version__}))
        return pictures


def upscale(session, inputs, *, model=None, scale=None, tile=None, overlap=None, precision="auto", run_dir=None,
            on_progress=None) -> StageResult:
    """``stage.upscale`` with the misses upscaled by the pool (``on_progress(done, total)`` counts pictures)."""
    resolved, jobs = stage.plan(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap,
                                precision=precision)
    upscaler, store = stage.upscaler_name(resolved), session.store
    todo = [(item, job) for item, job in zip(inputs, jobs) if not store.has(job.key)]
    works = [ray_render.Work(job, item.path.read_bytes(), (("name", item.path.name), ("source", str(item.path))))
             for item, job in todo]
    computed = set()
    if works:
        recipe, render = UpscalerRecipe(str(resolved.path), jobs[0].precision), Upscale(tile, overlap)
        for work, artifact in ray_render.compute(session, works, batch=1, engine=recipe, render=render):
            computed.add(work.job.key)
            if on_progress is not None:
                on_progress(len(computed), len(works))
            if run_dir is not None:
                stage._record(run_dir, _items(session, inputs, jobs, computed, only={work.job.key}), upscaler,
                              stage._run_fields(jobs))
    items = _items(session, inputs, jobs, computed)
    if run_dir is not None:
        stage._record(run_dir, items, upscaler, stage._run_fields(jobs))  # the caller refreshes the run's views
    return StageResult("upscale", run_dir, items, planned=len(jobs), stored=len(jobs) - len(computed),
                       computed=len(computed))


def _items(session, inputs, jobs, computed: set, only: set | None = None) -> list[Item]:
    """The pictures in the store, placed at their destinations (``only``: these keys)."""
    items = []
    for item, job in zip(inputs, jobs):
        if only is not None and job.key not in only:
            continue
        artifact = session.store.get(job.key)
        if artifact is None:
            continue
        place(artifact.path, item.dest)
        items.append(Item(item.seed, item.dest, job.key, job.key not in computed, artifact.record.get("seconds", 0.0),
                          name=item.path.name))
    return items
