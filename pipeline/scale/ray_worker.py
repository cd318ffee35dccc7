"""The render worker of the Ray pool (``ray_pool``): an actor that loads an engine once per settings key,
renders the shards it is given and sends back each picture's PNG bytes and record. It never decides what
is missing and never writes the run; a failure comes back as one sentence naming its node."""
from __future__ import annotations

import os
import socket


def _is_oom(err: BaseException) -> bool:
    """Out of device memory, as torch raises it or as the engine says it (its one sentence)."""
    return isinstance(err, MemoryError) or "OutOfMemory" in type(err).__name__ or "out of memory" in str(err)


class Worker:
    """Loads an engine once per settings key and renders the shards it is given; writes nothing."""

    def __init__(self, threads: int | None = None):
        self.threads = threads
        self.key = None
        self.engine = None
        self.rendered = 0  # jobs rendered by this process (tests count computations)

    def where(self) -> dict:
        import ray

        context = ray.get_runtime_context()
        gpus = [str(g) for g in ray.get_gpu_ids()]
        return {"host": socket.gethostname(), "node": context.get_node_id()[:12], "pid": os.getpid(),
                "gpus": gpus, "actor": context.get_actor_id()[:12]}

    def count(self) -> int:
        return self.rendered

    def _load(self, key, factory):
        if self.key != key or self.engine is None:
            if self.engine is not None:
                self.engine = None
                _release_memory()
            if self.threads:
                import torch

                torch.set_num_threads(self.threads)  # equal thread counts, equal bits on a CPU
            self.engine = factory()
            self.key = key
        return self.engine

    def run(self, key, factory, render, jobs: list, batch) -> dict:
        """``{"results": [(png, record), ...]}``, or ``{"load_error": sentence}`` (this node cannot load the
        engine), or ``{"error": sentence}`` (the jobs themselves fail); ``notes``: what was retried."""
        where = self.where()
        try:
            engine = self._load(key, factory)
        except Exception as err:  # noqa: BLE001 - any load failure is this node's, said in one sentence
            return {"where": where, "load_error": f"the worker on {where['host']} (node {where['node']}) cannot "
                                                  f"load the model: {sentence(err)}"}
        notes = []
        while True:
            try:
                pairs = render(engine, jobs, batch)
                break
            except Exception as err:  # noqa: BLE001
                if not _is_oom(err):
                    return {"where": where, "error": sentence(err), "notes": notes}
                size = len(jobs) if batch == "auto" else int(batch)
                if size <= 1:
                    return {"where": where, "error": f"out of memory at batch 1 on {where['host']}: {sentence(err)}",
                            "notes": notes}
                batch = max(1, size // 2)
                notes.append(f"out of memory on {where['host']}: retrying {len(jobs)} jobs with batch {batch}")
        self.rendered += len(jobs)
        worker = {k: where[k] for k in ("host", "node", "pid", "gpus")}
        return {"where": where, "results": [(png, {**record, "worker": worker}) for png, record in pairs],
                "notes": notes}


def sentence(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _release_memory() -> None:
    """The previous model's memory back before the next one loads (one model on a GPU at a time)."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
