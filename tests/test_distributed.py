"""Scale-out: two processes under torchrun (gloo on the CPU) share one explore.

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

from pipeline.store import Store

from conftest import cli_env, run_cli

PROMPT = "a red fox in snow"
SEEDS = [1, 2, 3, 4, 5, 6]
ARGS = ["explore", PROMPT, "--model", "tiny-random", "--size", "128", "--seeds", "1-6", "--run", "fox"]
COMPUTED = re.compile(r"process (\d+) of 2 computed \d+: (.*)")


def torchrun(args, out: Path, store: Path, **popen) -> subprocess.Popen:
    """`torchrun --standalone --nproc_per_node 2 -m pipeline -- -v ARGS` as a user types it
    (-v: each process logs the keys it computed)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "pipeline", "--", "-v", *args, "--out", str(out)]
    return subprocess.Popen(command, env=cli_env(PIPELINE_STORE=store, OMP_NUM_THREADS=1), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(proc: subprocess.Popen, timeout=600) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def pictures(run_dir: Path) -> dict[int, bytes]:
    return {seed: (run_dir / "explore" / f"seed-{seed}.png").read_bytes() for seed in SEEDS}


def records(store: Path) -> dict[str, dict]:
    """The store's pictures (it also holds the prompt's stored embedding, which every process encodes)."""
    found = {path.stem: json.loads(path.read_text()) for path in (store / "objects").glob("*/*.json")}
    return {key: record for key, record in found.items() if record.get("suffix") == ".png"}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[int, bytes]:
    """The same explore in one process (one thread, like each torchrun worker)."""
    root = tmp_path_factory.mktemp("single")
    run_cli(*ARGS, "--out", root / "out",
            env=cli_env(PIPELINE_STORE=root / "store", OMP_NUM_THREADS=1))
    return pictures(root / "out" / "fox")


def test_two_processes_split_the_jobs_and_match_one_process(tmp_path, baseline):
    out, store = tmp_path / "out", tmp_path / "store"
    code, stdout, stderr = finish(torchrun(ARGS, out, store))
    assert code == 0, stderr

    # each process says which keys it computed: together all six, no key twice
    computed = {int(rank): keys.split() for rank, keys in COMPUTED.findall(stderr)}
    assert sorted(computed) == [0, 1], stderr
    assert not set(computed[0]) & set(computed[1])
    assert len(computed[0]) == len(computed[1]) == 3
    stored = records(store)
    assert sorted(computed[0] + computed[1]) == sorted(stored)
    # the store's records name the process that computed each picture
    for rank, keys in computed.items():
        assert {stored[key]["process"]["rank"] for key in keys} == {rank}
    # the split is by sorted key, round robin
    assert set(computed[0]) == set(sorted(stored)[0::2]) and set(computed[1]) == set(sorted(stored)[1::2])

    # bit for bit the single-process pictures
    run_dir = out / "fox"
    assert pictures(run_dir) == baseline

    # run.json is complete and written once, by the main process; only the main process printed
    data = json.loads((run_dir / "run.json").read_text())
    candidates = data["explore"]["candidates"]
    assert [c["seed"] for c in candidates] == SEEDS
    assert all(not c["cached"] and (run_dir / c["path"]).is_file() for c in candidates)
    assert {c["key"] for c in candidates} == set(stored)
    assert (run_dir / "explore" / "contact.png").is_file() and (run_dir / "index.html").is_file()
    assert os.readlink(out / "latest") == "fox"
    assert stdout.count("explore: 6 computed, 0 reused from the store") == 1, stdout


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
    assert 1 <= len(left) < len(SEEDS), sorted(left)
    checked = Store(store)
    assert all(checked.get(key) is not None for key in left)
    # a damaged picture would be unreadable or fail its digest; none is visible in the run folder
    for path in (out / "fox" / "explore").glob("seed-*.png"):
        assert path.read_bytes() == baseline[int(path.stem.split("-")[1])]

    # rerunning computes only what is missing, split again, and completes the run
    code, _, stderr = finish(torchrun(ARGS, out, store))
    assert code == 0, stderr
    computed = [key for _, keys in COMPUTED.findall(stderr) for key in keys.split() if key != "-"]
    assert sorted(computed) == sorted(set(records(store)) - set(left))
    assert pictures(out / "fox") == baseline
    data = json.loads((out / "fox" / "run.json").read_text())
    assert [c["seed"] for c in data["explore"]["candidates"]] == SEEDS
