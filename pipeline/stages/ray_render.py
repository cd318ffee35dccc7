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
class TextToImage:
    """Render txt2img jobs and encode each picture as its stage stores it."""

    model: str  # the session's model name (for the picture's metadata)
    stage: str
    extra: tuple = ()  # (name, value) of the stage's extra metadata, e.g. the LoRAs' records

    def __call__(self, engine, jobs: list, batch) -> list[tuple[bytes, dict]]:
        check_loras(engine, jobs)
        size = resolve_batch(batch, engine, (jobs[0].width, jobs[0].height))
        pictures = []
        for chunk in batches(jobs, size):
            engine.reset_peak_memory()
            started = time.perf_counter()
            images = engine.txt2img(chunk)
            seconds = (time.perf_counter() - started) / len(chunk)
            for job, image in zip(chunk, images):
                extra = dict(self.extra) if getattr(job, "loras", None) else {}
                pictures.append(encode_picture(job, image, self.model, seconds=seconds, engine=engine,
                                               stage=self.stage, **extra))
        return pictures


def shard_size(batch) -> int:
    """Jobs per shard: the batch when one is given, else 1 (CPU workers) or 4 (GPU workers)."""
    return int(batch) if batch != "auto" else 1


def compute(session, jobs: list, render, *, batch="auto", stop=None):
    """Render ``jobs`` on the session's Ray pool; yields ``(job, artifact)`` as each picture is stored
    (by this process: the only writer of the store)."""
    from ..scale.ray_pool import pool_for

    pool = pool_for(session.ray)
    size = shard_size(batch) if batch != "auto" or not pool.gpus else 4
    submission = pool.submit(jobs, engine=EngineRecipe.of(session), render=render, batch=batch, shard_size=size,
                             stop=stop)
    for result in submission:
        yield result.job, session.store.put(result.job.key, result.png, result.record)
