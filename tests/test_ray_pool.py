"""The Ray pool's scheduling, with a stand-in engine (no model, no torch): a node that cannot load the
model is left out with one sentence naming it while the others finish; out of memory halves the batch;
Stop drops the shards not started; two submissions at once take turns on the workers."""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass

import pytest

ray = pytest.importorskip("ray")

from pipeline.scale.ray_pool import Pool  # noqa: E402


@pytest.fixture(scope="module")
def pool():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             namespace="pipeline-pool-tests")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    try:
        yield Pool("local", workers=2)
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class Engine:
    """Builds a stand-in engine; on the worker whose pid is ``refuse_pid`` it fails as a node without the
    model's files does."""

    refuse_pid: int = 0
    key: str = "stand-in"

    def __call__(self):
        if os.getpid() == self.refuse_pid:
            raise FileNotFoundError("model files missing: transformer/diffusion_pytorch_model.safetensors")
        return "engine"


@dataclass(frozen=True)
class Render:
    """One picture per job: the job itself as bytes; ``oom_above``: a batch larger than this runs out of memory."""

    oom_above: int = 0

    def __call__(self, engine, jobs, batch):
        size = len(jobs) if batch == "auto" else int(batch)
        if self.oom_above and size > self.oom_above:
            raise MemoryError(f"CUDA out of memory with batch {size}")
        return [(str(job).encode(), {"job": job, "batch": size}) for job in jobs]


def test_a_node_that_cannot_load_the_model_is_named_and_the_others_finish(pool, caplog):
    refused = pool.workers()[0]
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        results = list(pool.submit(list(range(8)), engine=Engine(refuse_pid=refused["pid"], key="refuse"),
                                   render=Render(), shard_size=1))
    assert sorted(r.job for r in results) == list(range(8))
    assert {r.record["worker"]["pid"] for r in results} == {pool.workers()[1]["pid"]}
    said = [r.getMessage() for r in caplog.records if "cannot load the model" in r.getMessage()]
    assert len(said) == 1 and refused["host"] in said[0] and refused["node"] in said[0]
    assert "diffusion_pytorch_model.safetensors" in said[0] and "\n" not in said[0]


def test_out_of_memory_halves_the_batch_and_says_so(pool, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        results = list(pool.submit(list(range(4)), engine=Engine(), render=Render(oom_above=1), batch=4,
                                   shard_size=4))
    assert sorted(r.job for r in results) == [0, 1, 2, 3]
    assert {r.record["batch"] for r in results} == {1}
    said = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert said == ["out of memory on %s: retrying 4 jobs with batch 2" % results[0].record["worker"]["host"],
                    "out of memory on %s: retrying 4 jobs with batch 1" % results[0].record["worker"]["host"]]


def test_stop_drops_the_shards_not_started(pool):
    stop = threading.Event()
    got = []
    for result in pool.submit(list(range(40)), engine=Engine(), render=Render(), shard_size=1, stop=stop):
        got.append(result.job)
        stop.set()
    assert 1 <= len(got) <= 3  # the first, and what the two workers had already started


def test_two_submissions_at_once_take_turns(pool):
    handed = []

    def seen(event, info):
        handed.append(info["jobs"][0][0])

    pool.listeners.append(seen)
    try:
        with pool.lock:  # both wait before the first shard is handed out
            first = pool.submit([("a", n) for n in range(10)], engine=Engine(), render=Render(), shard_size=1)
            second = pool.submit([("b", n) for n in range(10)], engine=Engine(), render=Render(), shard_size=1)
        done = {}

        def drain(name, submission):
            done[name] = [r.job for r in submission]

        threads = [threading.Thread(target=drain, args=pair) for pair in (("a", first), ("b", second))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        pool.listeners.remove(seen)
    assert len(done["a"]) == len(done["b"]) == 10
    assert handed[:4] in (["a", "b", "a", "b"], ["b", "a", "b", "a"])  # both wait: their shards alternate
