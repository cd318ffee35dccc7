"""The Ray pool as where the executor renders (``PoolRender``), and what a Ray worker is given.

With ``--ray`` the session's ``pool`` is a ``PoolRender``: this process is the only one that records (its share
is ``Alone``), and its misses are not rendered here but sent to the pool (``scale.ray_pool``). A stage says what
a worker needs for each miss (``StageWork.remote``: the job, the picture img2img starts from as PNG bytes, the
picture's extra metadata); the worker loads the engine once per ``EngineRecipe.key`` (or the stage's own recipe,
e.g. the upscaler), renders with ``Render`` (or the stage's), and sends back PNG bytes and the store record;
this process stores, places and records each picture as it returns (``PoolRender.compute``).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import batches, check_loras, encode_picture, resolve_batch

log = logging.getLogger("pipeline")

WORKER_STORE = Path.home() / ".cache" / "pipeline" / "ray-worker-store"


@dataclass(frozen=True)
class EngineRecipe:
    """The session's engine settings, for a worker to load the same engine on its own GPU."""

    model: str
    fingerprint: str  # what the driver planned with: a node whose model differs refuses
    dtype: str
    memory: str
    options: object  # engines.memory.EngineOptions
    store: str  # the driver's store: the worker keeps its prompt embeddings there when it sees that folder
    lora_paths: tuple = field(default=())  # (sha256, file) of the LoRAs in use

    @classmethod
    def of(cls, session) -> "EngineRecipe":
        return cls(session.model, session.fingerprint, session.dtype, session.memory, session.engine_options,
                   str(Path(session.store.root).resolve()), tuple(sorted(session.lora_paths.items())))

    @property
    def key(self) -> tuple:
        return (self.model, self.fingerprint, self.dtype, self.memory, repr(self.options))

    def __call__(self):
        from ..core.errors import UserError
        from ..core.store import Store
        from ..engines.zimage import ZImageEngine

        store = Path(self.store) if Path(self.store).is_dir() else Path(os.environ.get("PIPELINE_RAY_CACHE",
                                                                                       WORKER_STORE))
        engine = ZImageEngine(self.model, device=None, dtype=self.dtype, memory=self.memory, store=Store(store),
                              **self.options.as_kwargs())
        engine.lora_paths = dict(self.lora_paths)
        if engine.fingerprint != self.fingerprint:
            raise UserError(f"its copy of {self.model} is {engine.fingerprint}, not {self.fingerprint} as planned")
        return engine


@dataclass(frozen=True)
class RemoteWork:
    """One picture for a worker: its job, the picture img2img starts from (PNG bytes; None: from text),
    and the picture's metadata beyond the job's (``stage`` and what the stage adds)."""

    job: object
    init: bytes | None = None
    extra: tuple = ()

    @classmethod
    def of(cls, job, init=None, **extra) -> "RemoteWork":
        """``init``: PNG bytes, or a PIL image (sent as lossless PNG)."""
        if init is not None and not isinstance(init, bytes):
            init = encode(init)
        return cls(job, init, tuple(extra.items()))


@dataclass(frozen=True)
class Render:
    """Render a shard of ``RemoteWork`` (txt2img, or img2img from ``init``) and encode each picture as the stage
    stores it; runs on the worker."""

    model: str  # the session's model name (for the picture's metadata)
    auto_limit: int = 8  # batch "auto" on a GPU: the most the engine's memory model may choose

    def __call__(self, engine, works: list, batch) -> list[tuple[bytes, dict]]:
        from ..engines.request import RenderRequest

        check_loras(engine, [w.job for w in works])
        pictures = {}
        groups: dict = {}
        for work in works:  # img2img and txt2img never share a batch
            groups.setdefault(work.init is None, []).append(work)
        for group in groups.values():
            by_job = {id(w.job): w for w in group}
            first = group[0].job
            size = self.batch_size(batch, engine, first)
            for chunk in batches([w.job for w in group], size):
                chosen = [by_job[id(job)] for job in chunk]
                engine.reset_peak_memory()
                started = time.perf_counter()
                if chosen[0].init is None:
                    images = engine.render(RenderRequest.from_jobs(chunk), "txt2img")
                else:
                    request = RenderRequest.from_jobs(chunk, init_images=[decode(w.init) for w in chosen],
                                                      strength=chunk[0].strength)
                    images = engine.render(request, "img2img")
                seconds = (time.perf_counter() - started) / len(chunk)
                for work, image in zip(chosen, images):
                    pictures[id(work)] = encode_picture(work.job, image, self.model, seconds=seconds, engine=engine,
                                                        **dict(work.extra))
        return [pictures[id(work)] for work in works]

    def batch_size(self, batch, engine, job) -> int:
        if batch != "auto" or not str(engine.device).startswith("cuda"):
            return resolve_batch(batch, engine, (job.width, job.height))
        return engine.auto_batch(job.width, job.height, limit=self.auto_limit)


def decode(data: bytes):
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def encode(image) -> bytes:
    """A picture to start from, as lossless PNG bytes for the trip to a worker."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def shard_size(batch) -> int:
    """Jobs per shard: the batch when one is given, else 1 (CPU workers) or 4 (GPU workers)."""
    return int(batch) if batch != "auto" else 1


class PoolRender:
    """Where this process's misses are rendered with ``--ray``: on the pool, not here. The share stays ``Alone``
    (this process plans, stores and records everything: the only writer of the store and the run); the executor
    hands ``compute`` the misses and it places and records each picture as it comes back."""

    def __init__(self, pool):
        self.pool = pool  # () -> scale.ray_pool.Pool (given by the session: the stages do not import scale)

    def compute(self, stage, mine: list, items: dict, stop, on_picture) -> bool | None:
        """The executor's ``_compute`` on the pool: True when stopped; None for a stage that does not say what a
        worker needs (``StageWork.remote``): the executor computes it in this process."""
        from .common import progress_bar

        if not hasattr(stage, "remote"):
            log.warning("%s runs in this process: the Ray pool renders explore, vary, refine and plain upscales",
                        "upscale --detail" if stage.name == "detail" else stage.name)
            return None

        session = stage.session  # the stage's (the API may lend a stage a session with another model)
        stage.check(mine)
        remote = stage.remote(mine)  # what each worker needs (a refine's enlarged candidate made here)
        by_remote = {id(r): work for r, work in zip(remote, mine)}
        bar = progress_bar(len(mine), session.progress, stage.name, stage.unit)
        try:
            for sent, artifact in self.render(session, remote, batch=getattr(stage, "remote_batch", "auto"),
                                              auto_limit=getattr(stage, "remote_auto_limit", 8), stop=stop,
                                              engine=stage.remote_engine() if hasattr(stage, "remote_engine")
                                              else None,
                                              render=stage.remote_render() if hasattr(stage, "remote_render")
                                              else None):
                work = by_remote[id(sent)]
                items[work.id] = stage.place(work, artifact, cached=False, seconds=artifact.record.get("seconds"))
                stage.record([(work, items[work.id])])
                if bar is not None:
                    bar.update(1)
                if getattr(stage, "on_progress", None):  # the upscale's: pictures, not tiles, on the pool
                    stage.on_progress(len([w for w in mine if w.id in items]), len(mine))
                if on_picture:
                    on_picture(items[work.id])
        finally:
            if bar is not None:
                bar.close()
        return stop is not None and stop.is_set()

    def render(self, session, works: list[RemoteWork], *, batch="auto", auto_limit: int = 8, stop=None,
               engine=None, render=None):
        """Render ``works`` on the pool; yields ``(work, artifact)`` as each picture is stored (by this process:
        the only writer of the store). ``engine``/``render``: another model than the session's (e.g. the
        upscaler) and its render value."""
        pool = self.pool()
        size = shard_size(batch) if batch != "auto" or not pool.gpus else 4
        submission = pool.submit(works, engine=engine or EngineRecipe.of(session),
                                 render=render or Render(session.model, auto_limit), batch=batch, shard_size=size,
                                 stop=stop)
        for result in submission:
            yield result.job, session.store.put(result.job.job.key, result.png, result.record)


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
    """Upscale each input (its file's bytes in ``init``; ``extra``: its name and source path) as the upscale
    stage stores it: the PNG bytes and the record."""

    tile: int | None
    overlap: int | None

    def __call__(self, engine, works: list, batch) -> list[tuple[bytes, dict]]:
        import tempfile

        from .. import __version__
        from .superres import upscale_one

        pictures = []
        for work in works:
            extra = dict(work.extra)
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / extra["name"]  # the source's metadata is read from the file
                path.write_bytes(work.init)
                started = time.perf_counter()
                data = upscale_one(engine, path, work.job, self.tile, self.overlap, None)
                seconds = time.perf_counter() - started
            pictures.append((data, {"job": work.job.describe(), "seconds": round(seconds, 4),
                                    "device": str(engine.device), "precision": engine.precision,
                                    "source": extra["source"], "version": __version__}))
        return pictures
