"""Scale-out: two processes under torchrun (gloo on the CPU) share explore, vary, refine and upscale (detail too).

The jobs split with no overlap, the pictures equal a single-process run byte for byte,
run.json is complete, and a process killed mid-run leaves its jobs unfinished, not
corrupt: rerunning completes them.

Both sides run with one torch thread per process (torchrun's default for several
processes): on a CPU the thread count changes float reductions and so the last bits of
a picture, so the single-process baseline uses OMP_NUM_THREADS=1 too.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.store import Store

from conftest import cli_env, run_cli

PROMPT = "a red fox in snow"
SEEDS = [1, 2, 3, 4, 5, 6]
ARGS = ["explore", PROMPT, "--model", "tiny-random", "--size", "128", "--seeds", "1-6", "--run", "fox"]
CONFIG = f"""
model: tiny-random
prompts:
  - text: {PROMPT}
    name: fox
explore:
  seeds: 1-6
  size: 128
vary:
  picks: [1]
  count: 4
  steps: 2
refine:
  picks: [1, 2, 3, 4]
  size: 192
upscale:
  upscaler: realesr-animevideov3
  scale: 2
  detail: 0.3
  detail_tile: 192
"""
COMPUTED = re.compile(r"process (\d+) of 2 computed \d+: (.*)")


def torchrun(args, out: Path, store: Path, **popen) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node 2 -m pipeline -- -v ARGS` as a user types it
    (-v: each process logs the keys it computed)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "pipeline", "--", "-v", *args]
    env = cli_env(PIPELINE_STORE=store, PIPELINE_OUT=out, OMP_NUM_THREADS=1)
    return subprocess.Popen(command, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(proc: subprocess.Popen, timeout=600) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def pictures(run_dir: Path, stages=("explore",)) -> dict[str, bytes]:
    return {str(path.relative_to(run_dir)): path.read_bytes()
            for stage in stages for path in sorted((run_dir / stage).glob("seed-*.png"))}


def records(store: Path) -> dict[str, dict]:
    """The store's pictures (it also holds the prompt's stored embedding, which every process encodes)."""
    found = {path.stem: json.loads(path.read_text()) for path in (store / "objects").glob("*/*.json")}
    return {key: record for key, record in found.items() if record.get("suffix") == ".png"}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "fox.yaml"
    path.write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, config) -> dict[str, bytes]:
    """The same config in one process (one thread, like each torchrun worker)."""
    root = tmp_path_factory.mktemp("single")
    run_cli("run", config, env=cli_env(PIPELINE_STORE=root / "store", PIPELINE_OUT=root / "out", OMP_NUM_THREADS=1))
    return pictures(root / "out" / "fox", ("explore", "refine", "upscale"))


def test_two_processes_split_the_jobs_and_match_one_process(tmp_path, config, baseline):
    """explore, vary, refine and the upscale's detail pass: each process renders its share of every stage's misses,
    every picture once (before the one executor, one process rendered all the variations and detail pictures while
    the other waited behind the per-key locks), and the pictures equal one process's byte for byte."""
    out, store = tmp_path / "out", tmp_path / "store"
    code, stdout, stderr = finish(torchrun(["run", str(config)], out, store, cwd=tmp_path))
    assert code == 0, stderr
    run_dir = out / "fox"
    data = json.loads((run_dir / "run.json").read_text())
    stored = records(store)
    candidates = data["explore"]["pictures"]
    stages = {"explore": {c["key"] for c in candidates if isinstance(c["seed"], int)},
              "vary": {c["key"] for c in candidates if isinstance(c["seed"], str)},
              "refine": {p["key"] for p in data["refine"]["pictures"]},
              "upscale": {i["key"] for i in data["upscale"]["pictures"]}}
    assert [len(keys) for keys in stages.values()] == [6, 4, 4, 4]
    plain = set(stored) - set().union(*stages.values())  # the detail pass's super-resolution, kept for a re-run
    assert len(plain) == 4 and {Path(stored[key]["source"]).parent.name for key in plain} == {"refine"}

    # each process says which keys it computed (every stage: one executor): no key twice, every miss once
    computed = {0: [], 1: []}
    for rank, keys in COMPUTED.findall(stderr):
        computed[int(rank)] += [key for key in keys.split() if key != "-"]
    assert not set(computed[0]) & set(computed[1])
    assert sorted(computed[0] + computed[1]) == sorted(set().union(*stages.values()))
    for stage, count in (("explore", 3), ("vary", 2), ("refine", 2), ("upscale", 2)):  # sorted keys, round robin
        keys = sorted(stages[stage])
        assert set(computed[0]) & stages[stage] == set(keys[0::2]) and len(keys[0::2]) == count, stage
        assert set(computed[1]) & stages[stage] == set(keys[1::2]), stage
    # the store's records name the process that computed each picture
    for rank in (0, 1):
        assert {stored[key]["process"]["rank"] for key in computed[rank]} == {rank}
    for stage, keys in (("vary", stages["vary"]), ("upscale", stages["upscale"]), ("plain upscale", plain)):
        assert sorted(stored[key]["process"]["rank"] for key in keys) == [0, 0, 1, 1], stage

    # bit for bit the single-process pictures
    assert pictures(run_dir, ("explore", "refine", "upscale")) == baseline

    # run.json is complete and written by the main process; only the main process printed
    assert [c["seed"] for c in candidates] == [1, "1v1", "1v2", "1v3", "1v4", *SEEDS[1:]]
    assert all(not c["cached"] and (run_dir / c["path"]).is_file() for c in candidates)
    assert [p["seed"] for p in data["refine"]["pictures"]] == [1, 2, 3, 4]
    assert sorted(i["seed"] for i in data["upscale"]["pictures"]) == [1, 2, 3, 4]
    assert all(i["detail"] == 0.3 for i in data["upscale"]["pictures"]), data["upscale"]["pictures"][0]
    assert all((run_dir / e["path"]).is_file() for e in data["refine"]["pictures"] + data["upscale"]["pictures"])
    assert (run_dir / "explore" / "contact.png").is_file() and (run_dir / "index.html").is_file()
    assert stdout.count("done: 18 computed, 0 reused from the store") == 1, stdout


def test_a_killed_process_leaves_its_jobs_unfinished_and_a_rerun_completes_them(tmp_path, baseline):
    out, store = tmp_path / "out", tmp_path / "store"
    proc = torchrun(ARGS, out, store)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        for record in records(store).values() if (store / "objects").is_dir() else ():
            if record.get("process", {}).get("rank") == 1:
                victim = record["process"]["pid"]
                break
        else:
            time.sleep(0.02)
    assert victim is not None, "rank 1 stored no picture"
    os.kill(victim, signal.SIGKILL)  # rank 1 dies after its first picture; torchrun stops rank 0
    code, _, stderr = finish(proc)
    assert code != 0

    # nothing in the store is half-written: every record's file is whole
    left = records(store)
    # rank 1 had two pictures to go; on this machine it dies well before them (a much faster
    # machine could finish them first, and the rerun below would then have nothing to do)
    assert 1 <= len(left) <= len(SEEDS), sorted(left)
    checked = Store(store)
    assert all(checked.get(key) is not None for key in left)
    # a damaged picture would be unreadable or fail its digest; none is visible in the run folder
    for name, data in pictures(out / "fox").items():
        assert data == baseline[name]

    # rerunning computes only what is missing, split again, and completes the run
    code, _, stderr = finish(torchrun(ARGS, out, store))
    assert code == 0, stderr
    computed = [key for _, keys in COMPUTED.findall(stderr) for key in keys.split() if key != "-"]
    assert sorted(computed) == sorted(set(records(store)) - set(left))
    assert pictures(out / "fox") == {f"explore/seed-{seed}.png": baseline[f"explore/seed-{seed}.png"] for seed in SEEDS}
    data = json.loads((out / "fox" / "run.json").read_text())
    assert [c["seed"] for c in data["explore"]["pictures"]] == SEEDS


def test_a_single_process_pays_nothing():
    """Without WORLD_SIZE > 1 the helpers are plain pass-throughs and import neither torch nor accelerate."""
    code = """
import sys
from pipeline.scale import distributed as d
assert not d.launched() and d.is_main_process() and d.state() is None
assert d.share_of([3, 1, 2], key=str) == [3, 1, 2] and d.others_share(["a"]) == set()
assert d.agree(5) == 5 and d.computed_elsewhere([(1, "k")]) == [] and d.record_fields() == {}
assert d.default_device() is None
d.wait_for_everyone(); d.quiet_other_processes()
assert "torch" not in sys.modules and "accelerate" not in sys.modules, "heavy import"
"""
    env = cli_env(WORLD_SIZE=1, RANK=0)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
