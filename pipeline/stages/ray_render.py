"""What a Ray worker is given: how to load the session's engine, and how to render a stage's jobs.

Both are small picklable values: the worker (``scale.ray_pool.Worker``) loads the engine once per
``EngineRecipe.key`` and calls the render value on each shard; the pictures come back as PNG bytes
and store records for the driver to store and record (``compute``).
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
class Work:
    """One picture for a worker: its job, the picture img2img starts from (PNG bytes; None: from text),
    and the picture's metadata beyond the job's (``stage`` and what the stage adds)."""

    job: object
    init: bytes | None = None
    extra: tuple = ()


@dataclass(frozen=True)
class Render:
    """Render a shard of ``Work`` and encode each picture as the stage stores it."""

    model: str  # the session's model name (for the picture's metadata)
    auto_limit: int = 8  # batch "auto" on a GPU: the most the engine's memory model may choose

    def __call__(self, engine, works: list, batch) -> list[tuple[bytes, dict]]:
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
                    images = engine.txt2img(chunk)
                else:
                    images = engine.img2img(chunk, [decode(w.init) for w in chosen], chunk[0].strength)
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


def compute(session, works: list[Work], *, batch="auto", auto_limit: int = 8, stop=None, engine=None, render=None):
    """Render ``works`` on the session's Ray pool; yields ``(work, artifact)`` as each picture is stored
    (by this process: the only writer of the store). ``engine``/``render``: another model than the session's
    (e.g. the upscaler) and its render value."""
    from ..scale.ray_pool import pool_for

    session.require_lora_files([work.job for work in works])
    pool = pool_for(session.ray)
    size = shard_size(batch) if batch != "auto" or not pool.gpus else 4
    submission = pool.submit(works, engine=engine or EngineRecipe.of(session),
                             render=render or Render(session.model, auto_limit), batch=batch, shard_size=size,
                             stop=stop)
    for result in submission:
        yield result.job, session.store.put(result.job.job.key, result.png, result.record)
