"""Explore, vary, refine and upscale on a Ray pool (a local Ray with 2 CPUs, two CPU workers, the tiny model).

The pictures equal an in-process run's byte for byte and run.json records the same pictures; every
job is computed once; a worker killed with kill -9 right after a shard is handed to it has that shard
finished by the other worker; a rerun computes nothing.

One local Ray for the module (it takes seconds to start). Workers render with one torch thread each
(their share of the 2 CPUs); on a CPU the thread count can change the last bits of a picture, so the
in-process baseline runs with one thread too.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from pipeline.api import Pipeline  # noqa: E402
from pipeline.scale import ray_pool  # noqa: E402

from conftest import cli_env, run_cli  # noqa: E402

PROMPT = "a red fox in snow"
ARGS = ["explore", PROMPT, "--model", "tiny-random", "--size", "64", "--steps", "2", "--seeds", "1-6", "--run", "fox"]


@pytest.fixture(scope="module")
def pool():
    """A local Ray with 2 CPUs and the pool of two CPU workers every --ray command of the module joins."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             namespace="pipeline-tests")
    os.environ[ray_pool.WORKERS_ENV] = "2"
    try:
        yield ray_pool.pool_for(ray_pool.LOCAL)
    finally:
        os.environ.pop(ray_pool.WORKERS_ENV, None)
        ray_pool.forget_pools()
        ray.shutdown()


@pytest.fixture
def one_thread():
    """The in-process baseline at the workers' thread count (their share of the 2 CPUs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pictures(run_dir: Path) -> dict[str, bytes]:
    """The candidates (explored and varied) by name."""
    return {path.name: path.read_bytes() for path in sorted((run_dir / "explore").glob("seed-*.png"))}


def recorded(run_dir: Path) -> dict:
    """run.json without what differs between two equal runs (timings, dates, the contact sheet's hash)."""
    data = json.loads((run_dir / "run.json").read_text())
    data.pop("created", None)
    data.pop("updated", None)
    for stage in ("explore", "refine", "upscale"):
        for picture in data.get(stage, {}).get("pictures", []):
            picture.pop("seconds", None)
    return data


def store_records(store: Path) -> dict[str, dict]:
    found = {p.stem: json.loads(p.read_text()) for p in (store / "objects").glob("*/*.json")}
    return {key: record for key, record in found.items() if record.get("suffix") == ".png"}


def test_explore_on_ray_equals_the_run_without_it(pool, tmp_path, one_thread):
    run_cli(*ARGS, env=cli_env(PIPELINE_OUT=tmp_path / "here"))
    before = sum(pool.counts())
    result = run_cli(*ARGS, "--ray", env=cli_env(PIPELINE_OUT=tmp_path / "ray"))
    assert "6 computed, 0 reused" in result.stdout

    here, there = tmp_path / "here" / "fox", tmp_path / "ray" / "fox"
    assert pictures(there) == pictures(here) and len(pictures(here)) == 6
    assert recorded(there) == recorded(here)
    assert sum(pool.counts()) - before == 6  # each job computed once, by one worker
    records = store_records(tmp_path / "ray" / ".store")
    assert len(records) == 6
    assert {r["worker"]["pid"] for r in records.values()} <= {w["pid"] for w in pool.workers()}

    again = run_cli(*ARGS, "--ray", env=cli_env(PIPELINE_OUT=tmp_path / "ray"))
    assert "0 computed, 6 reused" in again.stdout
    assert sum(pool.counts()) - before == 6
    run_cli(*ARGS, env=cli_env(PIPELINE_OUT=tmp_path / "here"))  # the same cached rerun on both sides

    # vary (img2img from each candidate) and refine (hires: img2img from the enlarged candidate) likewise
    for out, ray_args in ((tmp_path / "here", ()), (tmp_path / "ray", ("--ray",))):
        env = cli_env(PIPELINE_OUT=out)
        run_cli("vary", "--seeds", "1,2", "--count", "2", "--steps", "2", "--run", "fox", *ray_args, env=env)
        run_cli("refine", "--seeds", "1,2v1", "--size", "96", "--steps", "2", "--run", "fox", *ray_args, env=env)
        run_cli("upscale", "--run", "fox", "--upscaler", "realesr-animevideov3", "--scale", "2", *ray_args, env=env)
    assert sum(pool.counts()) - before == 6 + 4 + 2 + 2  # explore, vary, refine, upscale: each job once
    assert pictures(there) == pictures(here) and len(pictures(here)) == 10
    refined = {p.name: p.read_bytes() for p in (there / "refine").glob("*.png")}
    assert refined == {p.name: p.read_bytes() for p in (here / "refine").glob("*.png")} and len(refined) == 2
    upscaled = {p.name: p.read_bytes() for p in (there / "upscale").glob("*.png")}
    assert upscaled == {p.name: p.read_bytes() for p in (here / "upscale").glob("*.png")} and len(upscaled) == 2
    assert recorded(there) == recorded(here)


def test_a_worker_killed_mid_shard_has_its_shard_finished_by_the_other(pool, tmp_path):
    killed: dict = {}

    def kill_the_first(event, info):
        if event == "handed" and not killed:
            killed.update(pid=info["worker"]["pid"], seeds={work.job.seed for work in info["jobs"]})
            os.kill(info["worker"]["pid"], signal.SIGKILL)

    seen = []
    pool.listeners.append(kill_the_first)
    try:
        with Pipeline(model="tiny-random", out=tmp_path, ray="local") as p:
            result = p.explore(PROMPT, seeds=range(1, 7), size=(64, 64), steps=2, run="fox",
                               on_picture=lambda item: seen.append(item.seed))
    finally:
        pool.listeners.remove(kill_the_first)

    assert killed and result.computed == 6 and sorted(result.seeds) == [1, 2, 3, 4, 5, 6]
    assert sorted(seen) == [1, 2, 3, 4, 5, 6]  # each picture stored and shown once
    records = store_records(tmp_path / ".store")
    assert len(records) == 6
    by_seed = {r["job"]["seed"]: r["worker"]["pid"] for r in records.values()}
    for seed in killed["seeds"]:
        assert by_seed[seed] != killed["pid"]  # finished by a live worker
    data = json.loads((tmp_path / "fox" / "run.json").read_text())
    assert sorted(c["seed"] for c in data["explore"]["pictures"]) == [1, 2, 3, 4, 5, 6]

    counts = sum(pool.counts())
    with Pipeline(model="tiny-random", out=tmp_path, ray="local") as p:
        rerun = p.explore(PROMPT, seeds=range(1, 7), size=(64, 64), steps=2, run="fox")
    assert rerun.computed == 0 and rerun.stored == 6
    assert sum(pool.counts()) == counts


def test_run_config_on_ray(pool, tmp_path):
    config = tmp_path / "fox.yaml"
    config.write_text(f"model: tiny-random\nprompts:\n  - text: {PROMPT}\n    name: fox\n"
                      "explore:\n  seeds: 1-3\n  size: 64\n  steps: 2\nrefine:\n  picks: [1]\n  size: 96\n  steps: 2\n")
    before = sum(pool.counts())
    result = run_cli("run", config, "--ray", env=cli_env(PIPELINE_OUT=tmp_path / "out"))
    assert "done: 4 computed, 0 reused" in result.stdout
    assert sum(pool.counts()) - before == 4  # the config's explore and refine jobs, all on the workers
