"""Records are never lost (issue 21): stages in different processes writing one run's run.json.

Each test runs stages in real, concurrent processes on one run (the in-process `run_cli` is a
process of its own beside them) and checks that every picture on disk is in run.json. The
processes overlap as much as the machine lets them; the assertions hold for every interleaving,
and the old code (explore kept its own copy of the explore section) lost pictures in most.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import cli_env, run_cli, run_json

PROMPT = "a lighthouse at dusk"
TINY = ["--model", "tiny-random", "--steps", "2", "--size", "64"]


def start(out: Path, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args), "--out", str(out)], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return stdout


def recorded(run_dir: Path, stage: str = "explore") -> list:
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [p["seed"] for p in data.get(stage, {}).get("pictures", [])]


def wait_for_records(run_dir: Path, n: int, proc: subprocess.Popen, stage: str = "explore") -> None:
    """Until the run records ``n`` pictures of ``stage`` (or the process ended)."""
    deadline = time.time() + 300
    while time.time() < deadline and len(recorded(run_dir, stage)) < n and proc.poll() is None:
        time.sleep(0.05)


def on_disk(run_dir: Path, stage: str = "explore") -> set[str]:
    return {p.name for p in (run_dir / stage).glob("seed-*.png")}


def paths(run_dir: Path, stage: str = "explore") -> set[str]:
    data = json.loads((run_dir / "run.json").read_text())
    return {Path(p["path"]).name for p in data[stage]["pictures"]}


def test_two_explores_on_one_run_record_every_picture(tmp_path):
    """The issue's report: seeds 1-8 in the background, then 20-22 on the same --run."""
    out = tmp_path / "outputs"
    first = start(out, "explore", PROMPT, *TINY, "--seeds", "1-8", "--run", "late")
    wait_for_records(out / "late", 1, first)  # the second one starts from a run.json the first is still writing
    run_cli("explore", PROMPT, *TINY, "--seeds", "20-22", "--run", "late", "--out", out)
    finish(first)
    assert recorded(out / "late") == [1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 22]
    assert paths(out / "late") == on_disk(out / "late")
    page = (out / "late" / "index.html").read_text()  # the gallery of whichever finished last shows all of them
    assert all(f"seed-{s}.png" in page for s in (1, 8, 20, 22))


def test_three_explores_on_one_run_record_every_picture(tmp_path):
    out = tmp_path / "outputs"
    a = start(out, "explore", PROMPT, *TINY, "--seeds", "1-4", "--run", "r")
    b = start(out, "explore", PROMPT, *TINY, "--seeds", "10-13", "--run", "r")
    run_cli("explore", PROMPT, *TINY, "--seeds", "20-23", "--run", "r", "--out", out)
    finish(a), finish(b)
    assert recorded(out / "r") == [1, 2, 3, 4, 10, 11, 12, 13, 20, 21, 22, 23]
    assert paths(out / "r") == on_disk(out / "r")


def test_explore_beside_vary_on_one_run(tmp_path):
    out = tmp_path / "outputs"
    run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--run", "r", "--out", out)
    more = start(out, "explore", PROMPT, *TINY, "--seeds", "2-6", "--run", "r")
    wait_for_records(out / "r", 2, more)
    run_cli("vary", "--seeds", "1", "--count", "2", "--steps", "2", "--run", "r", "--out", out)
    finish(more)
    assert recorded(out / "r") == [1, "1v1", "1v2", 2, 3, 4, 5, 6]
    assert paths(out / "r") == on_disk(out / "r")


def test_refine_beside_upscale_on_one_run(tmp_path):
    out = tmp_path / "outputs"
    run_cli("explore", PROMPT, *TINY, "--seeds", "1-3", "--run", "r", "--out", out)
    run_cli("refine", "--seeds", "1", "--steps", "2", "--scale", "1", "--run", "r", "--out", out)
    refine = start(out, "refine", "--seeds", "2,3", "--steps", "2", "--scale", "1", "--run", "r")
    run_cli("upscale", "--seeds", "1", "--upscaler", "realesr-animevideov3", "--run", "r", "--out", out)
    finish(refine)
    assert recorded(out / "r", "refine") == [1, 2, 3]
    assert recorded(out / "r", "upscale") == [1]
    assert recorded(out / "r") == [1, 2, 3]
    for stage in ("refine", "upscale"):
        assert paths(out / "r", stage) == on_disk(out / "r", stage)


def test_an_explore_killed_mid_write_loses_no_record_of_another(tmp_path):
    """kill -9 one of two explores on a run while both are recording: the survivor's pictures and
    what the killed one recorded are all in run.json; `repair` adds what it placed but had not
    recorded yet; its re-run finishes the run."""
    out, run_dir = tmp_path / "outputs", tmp_path / "outputs" / "r"
    victim = start(out, "explore", PROMPT, *TINY, "--seeds", "1-8", "--run", "r")
    wait_for_records(run_dir, 2, victim)
    survivor = start(out, "explore", PROMPT, *TINY, "--seeds", "20-23", "--run", "r")
    wait_for_records(run_dir, 3, survivor)
    before_kill = set(recorded(run_dir))
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    finish(survivor)
    after = set(recorded(run_dir))
    assert before_kill <= after and {20, 21, 22, 23} <= after
    assert not list(run_dir.rglob("*.tmp")) and json.loads((run_dir / "run.json").read_text())
    repaired = run_cli("repair", "r", "--out", out).stdout
    assert "nothing to do" in repaired or "added to" in repaired
    assert paths(run_dir) == on_disk(run_dir)  # every picture placed is recorded
    run_cli("explore", PROMPT, *TINY, "--seeds", "1-8", "--run", "r", "--out", out)
    assert recorded(run_dir) == [1, 2, 3, 4, 5, 6, 7, 8, 20, 21, 22, 23]


def test_explores_started_together_without_run_get_their_own_folders(tmp_path):
    out = tmp_path / "outputs"
    other = start(out, "explore", PROMPT, *TINY, "--seeds", "1-2", "--json")
    runs = [run_json("explore", PROMPT, *TINY, "--seeds", "3-4", "--out", out)["run_dir"],
            json.loads(finish(other))["run_dir"]]
    assert len(set(runs)) == 2
    assert sorted(recorded(Path(runs[0])) + recorded(Path(runs[1]))) == [1, 2, 3, 4]


def test_a_folder_is_claimed_even_within_one_second(tmp_path):
    from pipeline.core.runs import new_run_dir, release_run_dir

    claimed = [new_run_dir(tmp_path, PROMPT, claim=True) for _ in range(3)]
    assert len(set(claimed)) == 3 and all(p.is_dir() for p in claimed)  # 2 of them share a second at least
    release_run_dir(claimed[0])
    assert not claimed[0].exists()


def test_repair_adds_pictures_missing_from_a_sound_run_json(tmp_path):
    """A run.json that reads fine but lacks pictures (what the old code left): `repair` adds them,
    from the store, or from the record in the PNG when the store is gone."""
    out = tmp_path / "outputs"
    run_cli("explore", PROMPT, *TINY, "--seeds", "1-4", "--run", "r", "--out", out)
    run_file = out / "r" / "run.json"
    data = json.loads(run_file.read_text())
    data["explore"]["pictures"] = data["explore"]["pictures"][:1]
    run_file.write_text(json.dumps(data))
    proc = run_cli("repair", "r", "--out", out)
    assert proc.stdout.startswith(f"repair: added to {run_file} the pictures it lacked: 3 explore")
    assert recorded(out / "r") == [1, 2, 3, 4]
    assert json.loads(run_file.read_text())["prompt"] == PROMPT  # the rest of run.json is untouched

    import shutil

    data["explore"]["pictures"] = data["explore"]["pictures"][:1]
    run_file.write_text(json.dumps(data))
    shutil.rmtree(out / ".store")
    assert run_json("repair", "r", "--out", out)["added"] == {"explore": 3, "refine": 0, "inpaint": 0,
                                                                 "upscale": 0}
    assert recorded(out / "r") == [1, 2, 3, 4]
    assert "reads fine; nothing to do" in run_cli("repair", "r", "--out", out).stdout
