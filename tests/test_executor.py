"""The one executor, with a stand-in stage (no model): hits, misses, one batch rule, Stop, re-keying, and the
share between workers as a strategy (a second strategy plugs in without touching a stage)."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from types import SimpleNamespace

from pipeline.core.jobs import Job
from pipeline.core.store import Store
from pipeline.scale.shares import Alone
from pipeline.stages.executor import Executor, StageWork, Work


@dataclass(frozen=True)
class FakeJob(Job):
    kind = "fake"
    model: str
    n: int
    group: int = 0

    def batch_group(self) -> tuple:
        return (self.model, self.group)


@dataclass
class FakeEngine:
    fingerprint: str = "m"
    calls: list = field(default_factory=list)


class FakeStage(StageWork):
    name = "fake"

    def __init__(self, session, tmp, engine, size=2, on_render=None):
        super().__init__(session)
        self.tmp, self.engine, self.size, self.on_render = tmp, engine, size, on_render
        self.recorded = []

    def dest(self, work):
        return self.tmp / "run" / f"{work.id}.png"

    def progress(self, misses, show):
        return None

    def load(self, misses, progress):
        return self.engine

    def prepare(self, engine, misses):
        pass

    def batch_size(self, engine, misses):
        return self.size

    def render(self, engine, works, progress):
        engine.calls.append([work.id for work in works])
        if self.on_render:
            self.on_render()
        return [f"{work.job.model}:{work.job.n}".encode() for work in works]

    def store(self, engine, work, output, seconds, provenance):
        return self.session.store.put(work.job.key, output, {"job": work.job.describe(), **provenance})

    def record(self, done):
        self.recorded += [item.seed for _, item in done]


def setup(tmp_path, **stage):
    session = SimpleNamespace(store=Store(tmp_path / "store"), progress=False, share=None,
                              require_lora_files=lambda jobs: None)
    engine = FakeEngine()
    return session, engine, FakeStage(session, tmp_path, engine, **stage)


def works(count, model="m", groups=1):
    return [Work(n, FakeJob(model=model, n=n, group=n % groups)) for n in range(count)]


def test_misses_render_once_in_batches_of_one_group_and_hits_come_from_the_store(tmp_path):
    session, engine, stage = setup(tmp_path, size=2)
    items = Executor(session, Alone()).run(stage, works(5, groups=2))
    assert [item.seed for item in items] == [0, 1, 2, 3, 4] and not any(item.cached for item in items)
    assert engine.calls == [[0, 2], [4], [1, 3]]  # equal batch groups, at most 2 a call
    assert all(item.path.read_bytes() == f"m:{item.seed}".encode() for item in items)
    again = Executor(session, Alone()).run(stage, works(5, groups=2))
    assert all(item.cached for item in again) and len(engine.calls) == 3
    assert sorted(stage.recorded) == sorted([0, 1, 2, 3, 4] * 2)


def test_stop_ends_between_batches_and_keeps_the_finished_pictures(tmp_path):
    stop = threading.Event()
    session, engine, stage = setup(tmp_path, size=1, on_render=stop.set)
    seen = []
    items = Executor(session, Alone()).run(stage, works(3), stop=stop, on_picture=lambda item: seen.append(item.seed))
    assert [item.seed for item in items] == [0] == seen and engine.calls == [[0]]


def test_a_model_identity_known_on_load_rekeys_the_misses(tmp_path):
    session, engine, stage = setup(tmp_path)
    engine.fingerprint = "m@abc"
    items = Executor(session, Alone()).run(stage, works(2))
    assert [item.key for item in items] == [FakeJob(model="m@abc", n=n).key for n in range(2)]


class HalfShare(Alone):
    """A second strategy: this worker computes the even keys; 'the other worker' computed the rest before."""

    def __init__(self, store, others):
        self.store, self.others = store, others

    def split(self, keys):
        ordered = sorted(keys)
        return set(ordered[0::2])

    def gather(self, computed):
        for work in self.others:  # the other worker's pictures reach the shared store
            if not self.store.has(work.job.key):
                self.store.put(work.job.key, b"other", {})
        return [(work.id, work.job.key) for work in self.others]


def test_a_share_strategy_splits_the_misses_and_the_main_worker_places_the_others(tmp_path):
    session, engine, stage = setup(tmp_path, size=4)
    todo = works(4)
    keys = sorted(work.job.key for work in todo)
    others = [work for work in todo if work.job.key in keys[1::2]]
    items = Executor(session, HalfShare(session.store, others)).run(stage, todo)
    assert sorted(engine.calls[0]) == sorted(work.id for work in todo if work not in others)
    assert len(items) == 4 and all(item.path.is_file() for item in items)
    assert sorted(stage.recorded) == [0, 1, 2, 3]
