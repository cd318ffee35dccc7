"""One ``Pool.submit``: its shards not yet started, the results as they return, its Stop (``ray_pool``)."""
from __future__ import annotations

import collections
import logging
import queue
from dataclasses import dataclass, field

from ..core.errors import UserError

log = logging.getLogger("pipeline")


@dataclass
class Result:
    job: object
    png: bytes
    record: dict


@dataclass
class Shard:
    submission: Submission
    jobs: list
    tried: set = field(default_factory=set)  # workers it was handed to and died on


class Submission:
    """The results of one ``Pool.submit``: iterate to get each ``Result`` as its shard returns."""

    def __init__(self, pool, key, factory, render, batch, shards: list[list], stop=None):
        self.pool, self.key, self.factory, self.render, self.batch = pool, key, factory, render, batch
        self.pending = collections.deque(Shard(self, jobs) for jobs in shards)
        self.running = 0
        self.events: queue.Queue = queue.Queue()
        self.stop = stop
        self.cancelled = False
        self.failed: str | None = None
        self.load_errors: dict[int, str] = {}

    @property
    def done(self) -> bool:
        return (not self.pending or self.cancelled or self.failed is not None) and self.running == 0

    def cancel(self) -> None:
        """Shards not yet started are dropped; those running finish and are still delivered."""
        self.pool._cancel(self)

    def __iter__(self):
        try:
            while True:
                kind, value = self.events.get()
                if kind == "result":
                    yield value
                elif kind == "note":
                    log.warning("%s", value)
                elif kind == "error":
                    raise UserError(value)
                elif kind == "end":
                    return
        finally:
            self.cancel()  # the caller left early (an error, Ctrl+C): nothing more is started for it
