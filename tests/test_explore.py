"""`pipeline explore` end to end through the CLI, on the tiny model, offline."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from conftest import cli_env, run_cli, run_json

TINY = ["--model", "tiny-random"]
SMALL = ["--size", "128"]
PROMPT = "a red fox in snow"


def explore(out, *args, **kwargs):
    return run_json("explore", PROMPT, *TINY, *SMALL, "--out", out, *args, **kwargs)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One explore of 3 seeds, shared by the layout tests."""
    out = tmp_path_factory.mktemp("explore") / "outputs"
    result = explore(out, "--seeds", "3,1-2")
    return out, result


def test_layout_run_json_and_latest(first_run):
    out, result = first_run
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == out
    assert run_dir.name.endswith("-a-red-fox-in-snow")
    assert [item["seed"] for item in result["items"]] == [3, 1, 2]
    assert all(not item["cached"] for item in result["items"])
    for seed in (1, 2, 3):
        with Image.open(run_dir / "explore" / f"seed-{seed}.png") as image:
            assert image.size == (128, 128)
    with Image.open(run_dir / "explore" / "contact.png") as sheet:
        assert sheet.width > 128 * 2  # a grid, not a single picture
    assert (out / "latest").resolve() == run_dir.resolve()

    record = json.loads((run_dir / "run.json").read_text())
    assert record["prompt"] == PROMPT
    assert record["model"] == "tiny-random"
    assert record["model_fingerprint"].startswith("tiny-random")
    assert (record["width"], record["height"], record["steps"], record["guidance"]) == (128, 128, 8, 0.0)
    candidates = {c["seed"]: c for c in record["explore"]["pictures"]}
    assert sorted(candidates) == [1, 2, 3]
    assert candidates[1]["path"] == "explore/seed-1.png"
    assert candidates[1]["key"] == next(i["key"] for i in result["items"] if i["seed"] == 1)
    assert candidates[1]["seconds"] > 0


def test_png_metadata_is_a1111_readable(first_run):
    out, result = first_run
    path = Path(result["items"][0]["path"])
    with Image.open(path) as image:
        parameters = image.text["parameters"]
        record = json.loads(image.text["pipeline"])
    prompt_line, settings = parameters.split("\n")
    assert prompt_line == PROMPT
    assert "Steps: 8, Sampler: Euler" in settings
    # diffusers' Z-Image guidance g is pos + g·(pos − neg): A1111's CFG scale 1 + g (1 = no guidance)
    assert "CFG scale: 1, Seed: 3, Size: 128x128, Model: tiny-random" in settings
    assert record["seed"] == 3 and record["key"] == result["items"][0]["key"]

    shown = run_cli("show", path).stdout
    assert shown.startswith(PROMPT + "\n")
    assert "Seed: 3" in shown


def test_cached_rerun_loads_no_model_and_imports_no_torch(first_run, tmp_path):
    out, result = first_run
    # A `torch` that cannot be imported: the cache-hit path must never need it.
    fake = tmp_path / "fake"
    for name in ("torch", "diffusers"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('{name} imported on a cache hit')\n")
    env = cli_env(PYTHONPATH=f"{fake}{os.pathsep}{Path(__file__).resolve().parents[1]}")
    proc = run_cli("explore", PROMPT, *TINY, *SMALL, "--out", out, "--seeds", "1-3", "--run", "again", env=env)
    assert "0 computed, 3 reused" in proc.stdout
    again = out / "again" / "explore"
    for item in result["items"]:
        assert (again / Path(item["path"]).name).read_bytes() == Path(item["path"]).read_bytes()


def test_changing_a_parameter_rerenders_exactly_the_affected(first_run):
    out, _ = first_run
    more = explore(out, "--seeds", "2-4")  # 2 and 3 are stored, 4 is new
    assert {i["seed"]: i["cached"] for i in more["items"]} == {2: True, 3: True, 4: False}
    steps = explore(out, "--seeds", "1", "--steps", "4")
    assert steps["items"][0]["cached"] is False
    # the negative prompt does nothing at guidance 0: nothing to re-render, and a warning says so
    proc = run_cli("explore", PROMPT, *TINY, *SMALL, "--out", out, "--seeds", "1", "--negative", "blurry")
    assert "no effect" in proc.stderr
    assert "0 computed, 1 reused" in proc.stdout


def test_another_out_with_a_shared_store_reuses_everything(first_run, tmp_path):
    out, result = first_run
    env = cli_env(PIPELINE_STORE=out / ".store")
    other = run_json("explore", PROMPT, *TINY, *SMALL, "--out", tmp_path / "elsewhere", "--seeds", "1-3", env=env)
    assert all(item["cached"] for item in other["items"])


def test_same_inputs_give_identical_png_bytes_across_processes(first_run, tmp_path):
    out, result = first_run
    fresh = explore(tmp_path / "fresh", "--seeds", "3")  # a new store: computed again in a new process
    assert fresh["items"][0]["cached"] is False
    assert Path(fresh["items"][0]["path"]).read_bytes() == Path(result["items"][0]["path"]).read_bytes()


def test_dry_run_counts_and_writes_nothing(first_run):
    out, _ = first_run
    before = sorted(p.name for p in out.iterdir())
    plan = explore(out, "--seeds", "1-3,100-102", "--dry-run")  # 1-3 are stored by the module's first run
    assert (plan["planned"], plan["stored"], plan["computed"]) == (6, 3, 3)
    assert sorted(p.name for p in out.iterdir()) == before


def test_corrupt_store_entry_is_reported_and_rerendered(tmp_path):
    out = tmp_path / "outputs"
    first = explore(out, "--seeds", "7")
    item = first["items"][0]
    stored = next((out / ".store" / "objects").glob(f"*/{item['key']}.png"))
    good = stored.read_bytes()
    stored.write_bytes(good[: len(good) // 2])  # truncated (the run dir's hard link sees it too)
    proc = run_cli("explore", PROMPT, *TINY, *SMALL, "--out", out, "--seeds", "7")
    assert "damaged" in proc.stderr
    assert "1 computed, 0 reused" in proc.stdout
    assert stored.read_bytes() == good  # re-rendered, bit-identical


@pytest.mark.parametrize("args, message", [
    (["--size", "500"], "not a multiple of 16 on each side: try 496x496"),
    (["--seeds", "1,x"], "cannot read seed 'x'"),
    (["--seeds", "-3"], "is negative"),
    (["--steps", "0"], "steps"),
    (["--count", "0"], "--count must be at least 1"),
    (["--batch", "many"], "--batch must be a whole number"),
    (["--run", "../escape"], "plain folder name"),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, args, message):
    proc = run_cli("explore", PROMPT, *TINY, "--out", tmp_path, *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr or message in proc.stdout
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("*/run.json"))  # nothing was started


def test_empty_prompt_is_refused(tmp_path):
    proc = run_cli("explore", "   ", *TINY, "--out", tmp_path, check=False)
    assert proc.returncode == 2 and "prompt is empty" in proc.stderr


def test_hub_model_missing_offline_is_one_clear_sentence(tmp_path):
    env = cli_env(HF_HOME=tmp_path / "hf")
    proc = run_cli("explore", PROMPT, "--model", "someone/not-cached", "--out", tmp_path / "o", "--seeds", "1",
                   env=env, check=False)
    assert proc.returncode == 2
    assert "someone/not-cached is not in the local Hugging Face cache" in proc.stderr
    assert "HF_HOME" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_kill_mid_run_loses_only_the_picture_in_progress(tmp_path):
    out = tmp_path / "outputs"
    args = [sys.executable, "-m", "pipeline", "explore", PROMPT, *TINY, *SMALL, "--out", str(out),
            "--seeds", "1-6", "--run", "r"]
    proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    explore_dir = out / "r" / "explore"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(explore_dir.glob("seed-*.png"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in explore_dir.glob("seed-*.png"))
    assert 2 <= len(finished) < 6, finished
    # nothing half-written under a file's own name (a kill during a write leaves only its temp file)
    for path in out.rglob("*"):
        if path.suffix == ".png" and path.is_file():
            with Image.open(path) as image:
                image.load()
        elif path.name == "run.json":
            json.loads(path.read_text())
    resumed = run_json("explore", PROMPT, *TINY, *SMALL, "--out", out, "--seeds", "1-6", "--run", "r")
    assert not [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]  # the rerun cleared them
    cached = {i["seed"] for i in resumed["items"] if i["cached"]}
    assert {int(name[5:-4]) for name in finished} <= cached
    reference = explore(tmp_path / "reference", "--seeds", "1-6")
    for mine, ref in zip(resumed["items"], reference["items"]):
        assert Path(mine["path"]).read_bytes() == Path(ref["path"]).read_bytes()
    record = json.loads((out / "r" / "run.json").read_text())
    assert [c["seed"] for c in record["explore"]["pictures"]] == [1, 2, 3, 4, 5, 6]


def test_python_api_returns_typed_results(tmp_path):
    from pipeline import Pipeline

    with Pipeline(model="tiny-random", out=tmp_path / "api") as p:
        result = p.explore(PROMPT, seeds=range(2), size=(128, 128))
        again = p.explore(PROMPT, seeds=[1], size=(128, 128))
    assert result.seeds == [0, 1] and result.computed == 2
    assert all(path.is_file() for path in result.paths)
    assert again.items[0].cached and again.items[0].key == result.items[1].key


def test_explore_keeps_what_another_process_recorded_meanwhile(tmp_path):
    """explore holds run.json in memory for a whole run; a refine finishing meanwhile must survive its saves."""
    from pipeline.core.runs import load_run, save_run, update_run
    from pipeline.stages.explore import _save

    run_dir = tmp_path / "r"
    stale = {"version": 2, "prompt": PROMPT, "explore": {"pictures": [{"seed": 1}]}}
    save_run(run_dir.mkdir() or run_dir, stale)
    update_run(run_dir, lambda data: data.update(refine={"pictures": [{"seed": 1}]}))  # another process
    _save(run_dir, dict(stale, explore={"pictures": [{"seed": 1}, {"seed": 2}]}))
    data = load_run(run_dir)
    assert data["refine"] == {"pictures": [{"seed": 1}]}
    assert [c["seed"] for c in data["explore"]["pictures"]] == [1, 2]


def test_explore_saves_only_its_own_keys_so_a_section_it_does_not_know_survives(tmp_path):
    """A section explore has never heard of (a newer stage's, the app's picks), in the copy explore read at start
    and changed on disk since by another process, is left as the other process wrote it."""
    from pipeline.core.runs import load_run, save_run, update_run
    from pipeline.stages.explore import _save

    run_dir = tmp_path / "r"
    stale = {"version": 2, "prompt": PROMPT, "explore": {"pictures": [{"seed": 1}]},
             "inpaint": {"pictures": [{"seed": 1}]}, "picks": [1]}
    save_run(run_dir.mkdir() or run_dir, stale)
    update_run(run_dir, lambda data: data.update(inpaint={"pictures": [{"seed": 1}, {"seed": "1i1"}]},
                                                 picks=[1, 2]))  # another process
    _save(run_dir, dict(stale, explore={"pictures": [{"seed": 1}, {"seed": 2}]}))
    data = load_run(run_dir)
    assert data["inpaint"] == {"pictures": [{"seed": 1}, {"seed": "1i1"}]} and data["picks"] == [1, 2]
    assert [c["seed"] for c in data["explore"]["pictures"]] == [1, 2] and data["prompt"] == PROMPT
