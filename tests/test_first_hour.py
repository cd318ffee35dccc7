"""What a new user meets in the first hour (issue 18): failed starts leave no trace, waits say
what they are for, quiet pipes, helpful wording. Through the CLI, on the tiny model, offline."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from conftest import cli_env, run_cli, run_json

TINY = ["--model", "tiny-random", "--size", "64"]
PROMPT = "a red fox in snow"


def _good_run(out):
    """A finished explore: the user's previous run, OUT/latest pointing at it."""
    result = run_json("explore", PROMPT, *TINY, "--out", out, "--seeds", "1")
    return result["run_dir"]


def _runs(out) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def test_an_explore_failing_before_its_first_picture_keeps_the_previous_run_latest(tmp_path):
    out = tmp_path / "outputs"
    good = _good_run(out)
    before = _runs(out)
    proc = run_cli("explore", "a new prompt", "--model", "someone/not-cached", "--out", out, "--seeds", "1",
                   env=cli_env(HF_HOME=tmp_path / "hf"), check=False)
    assert proc.returncode == 2 and "not in the local Hugging Face cache" in proc.stderr
    assert _runs(out) == before  # no empty run folder left behind
    assert os.path.realpath(out / "latest") == os.path.realpath(good)
    refine = run_json("refine", "--seeds", "1", *TINY[:2], "--size", "128", "--out", out, "--dry-run")
    assert refine["planned"] == 1  # the workflow goes on with the good run


def test_ctrl_c_before_the_first_picture_leaves_no_run_folder(tmp_path):
    out = tmp_path / "outputs"
    good = _good_run(out)
    before = _runs(out)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "explore", "another prompt", *TINY, "--out", str(out),
                             "--seeds", "1-4"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not any("building" in line for line in seen):
        time.sleep(0.02)  # the model starts loading (torch is being imported): press Ctrl-C
    for _ in range(10):  # press it again if the first press was swallowed (seen once during torch's imports)
        proc.send_signal(signal.SIGINT)
        pressed = time.time()
        while time.time() - pressed < 1 and proc.poll() is None and not any("interrupted" in line for line in seen):
            time.sleep(0.02)
        if proc.poll() is not None or any("interrupted" in line for line in seen):
            break
    proc.wait(timeout=120)
    reader.join(timeout=10)
    rest = "".join(seen)
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    assert _runs(out) == before
    assert os.path.realpath(out / "latest") == os.path.realpath(good)


def test_the_wait_before_the_first_picture_says_what_is_loading(tmp_path):
    out = tmp_path / "outputs"
    first = run_cli("explore", PROMPT, *TINY, "--out", out, "--seeds", "1-2", "--json")
    json.loads(first.stdout)  # stdout stays one JSON document
    assert "building the tiny-random test model in code" in first.stderr
    assert "encoding the prompt" in first.stderr
    again = run_cli("explore", PROMPT, *TINY, "--out", out, "--seeds", "1-2")
    assert "building" not in again.stderr and "encoding" not in again.stderr  # all cached: nothing loads


def test_loading_message_names_where_the_model_comes_from(tmp_path, monkeypatch):
    from pipeline.models.names import download_message, loading_message

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("PIPELINE_OFFLINE", raising=False)
    repo = tmp_path / "hf" / "hub" / "models--Tongyi-MAI--Z-Image-Turbo"
    assert loading_message("Tongyi-MAI/Z-Image-Turbo") is None  # not cached: said once the Hub answers (issue 30)
    assert download_message("Tongyi-MAI/Z-Image-Turbo").startswith(f"downloading Tongyi-MAI/Z-Image-Turbo from "
                                                                   f"Hugging Face into {repo}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert loading_message("Tongyi-MAI/Z-Image-Turbo") is None  # not cached, offline: the error follows at once
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    assert loading_message("Tongyi-MAI/Z-Image-Turbo").startswith(f"loading Tongyi-MAI/Z-Image-Turbo from the "
                                                                  f"Hugging Face cache {repo / 'snapshots' / commit}")
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")  # a diffusers folder
    assert loading_message(str(folder)) == f"loading my-model from the folder {folder}"


def test_verbose_shows_no_empty_float32_warning_from_diffusers(tmp_path):
    proc = run_cli("-v", "explore", PROMPT, *TINY, "--out", tmp_path, "--seeds", "1")
    assert "loaded tiny-random" in proc.stderr  # -v does say more
    assert "should be kept in float32" not in proc.stderr


# ---------------------------------------------------------------- upscale names its upscaler --upscaler

def _picture(tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (16, 16), (10, 120, 200)).save(path)
    return path


def test_upscale_takes_upscaler_and_an_upscaler_given_to_model_is_one_sentence(tmp_path):
    picture = _picture(tmp_path)
    new = run_json("upscale", picture, "--upscaler", "realesr-animevideov3", "--out", tmp_path / "o", "--dry-run")
    assert new["planned"] == 1
    old = run_cli("upscale", picture, "--model", "realesr-animevideov3", "--out", tmp_path / "o", check=False)
    assert old.returncode == 2 and old.stderr.strip() == (
        "error: realesr-animevideov3 is an upscaler: give it as --upscaler realesr-animevideov3 (upscaler=...); "
        "--model (model=) names the diffusion model that --detail draws with")
    wrong = run_cli("upscale", picture, "--upscaler", "tiny-random", "--out", tmp_path / "o", check=False)
    assert wrong.returncode == 2 and "unknown upscaler weights 'tiny-random'" in wrong.stderr
    assert "--upscaler NAME" in run_cli("upscale", "--help").stdout


def test_a_config_with_the_old_upscale_model_key_is_refused_in_one_sentence(tmp_path):
    config = tmp_path / "fox.yaml"
    config.write_text("model: tiny-random\nprompts: a fox\nupscale:\n  model: realesr-animevideov3\n")
    proc = run_cli("config", "show", config, check=False)
    assert proc.returncode == 2 and "rename it upscale.upscaler" in proc.stderr and "Traceback" not in proc.stderr


def test_the_api_refuses_an_upscaler_as_model(tmp_path):
    import pytest

    from pipeline import Pipeline
    from pipeline.core.errors import UserError

    picture = _picture(tmp_path)
    with Pipeline(out=tmp_path / "o") as p:
        with pytest.raises(UserError, match="is an upscaler"):
            p.upscale([picture], model="realesr-animevideov3", dry_run=True)


# ---------------------------------------------------------------- output cut short by a closed pipe

def test_a_closed_pipe_ends_the_command_quietly_with_status_0(tmp_path):
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = tmp_path / "ours.png"
    info = PngInfo()
    info.add_text("parameters", "a fox")
    info.add_text("pipeline", json.dumps({f"key{i:05d}": "v" * 40 for i in range(5000)}))  # > a pipe's buffer
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    for args in (["show", str(path)], ["--help"], ["show", "--help"]):
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], env=cli_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        first = proc.stdout.readline()  # what `| head -1` reads
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.wait(timeout=60)
        assert first and proc.returncode == 0 and err == "", (args, proc.returncode, err)


# ---------------------------------------------------------------- where the runs are, and wording

def test_no_run_in_out_names_the_output_folders_below_it_that_hold_runs(tmp_path):
    outputs = tmp_path / "outputs"
    run_json("explore", PROMPT, *TINY, "--out", outputs / "demo", "--seeds", "1")  # as `make demo` leaves it
    proc = run_cli("refine", "--seeds", "1", "--out", outputs, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: no run found in {outputs}/: runs were found in {outputs / 'demo'}/: "
                                   f"pass --out {outputs / 'demo'} (or set PIPELINE_OUT)")
    named = run_cli("refine", "--seeds", "1", "--run", "nosuchrun", "--out", outputs / "demo", check=False)
    assert named.returncode == 2
    assert named.stderr.strip() == f"error: there is no run 'nosuchrun' (no such folder here or in {outputs / 'demo'}/)"
    one = run_cli("refine", "--seeds", "1", "--out", outputs / "demo", "--dry-run")
    assert one.stdout.startswith("refine: 1 picture, 0 stored, 1 to compute")
    strength = run_cli("refine", "--seeds", "1", "--strength", "1.5", "--out", outputs / "demo", check=False)
    assert strength.returncode == 2 and strength.stderr.strip() == "error: --strength must be between 0 and 1, not 1.5"


def test_an_output_folder_without_latest_names_its_newest_run(tmp_path):
    outputs = tmp_path / "outputs"
    for name in ("older", "newer"):
        (outputs / name).mkdir(parents=True)
        (outputs / name / "run.json").write_text("{}")
        time.sleep(0.05)
    os.utime(outputs / "older" / "run.json", (1, 1))
    proc = run_cli("refine", "--seeds", "1", "--model", "tiny-random", "--out", outputs, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no run found in {outputs}/: it has no latest link; pass --run NAME, " \
                                  "e.g. --run newer (the newest)"
    proc = run_cli("gallery", "--out", outputs, check=False)  # gallery takes the run as its argument (issue 30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: no run found in {outputs}/: it has no latest link; give the run, " \
                                  "e.g. pipeline gallery newer (the newest)"
