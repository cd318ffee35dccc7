"""A new user's first hour, round 4 (issue 30): no silent hang, a config checked whole before anything
runs, LoRA weight sentences, repair of every kind of picture, hints that point the right way.
Through the CLI, on the tiny model, offline."""
from __future__ import annotations

import subprocess

import pytest

from conftest import cli_env, manual_text, run_cli

TINY = ["--model", "tiny-random", "--size", "64"]
PROMPT = "a red fox in snow"


# ---------------------------------------------------------------- 1. --out is a file: no hang


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_explore_into_an_out_that_is_a_file_says_so_instead_of_hanging(tmp_path, how):
    afile = tmp_path / "afile"
    afile.write_text("notes\n")
    args = ["explore", PROMPT, *TINY, "--seeds", "1-2"] + (["--out", afile] if how == "flag" else [])
    env = cli_env(PIPELINE_OUT=afile) if how == "environment" else cli_env()
    try:  # a process with a time limit: before the fix it spun at 100 % CPU forever
        proc = run_cli(*args, env=env, check=False, process=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("explore with --out naming a file did not end")
    assert proc.returncode == 2, proc.stderr
    assert f"--out {afile} is a file: give a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert afile.read_text() == "notes\n"


def test_every_command_says_the_same_of_an_out_that_is_a_file(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for args in (["refine", "--seeds", "1", "--model", "tiny-random"], ["vary", "--seeds", "1", "--model", "tiny-random"]):
        proc = run_cli(*args, "--out", afile, check=False)
        assert proc.returncode == 2 and f"--out {afile} is a file: give a folder" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- 3. LoRA weight sentences


@pytest.mark.parametrize("given, sentence", [
    ("ink:abc", "LoRA weight 'abc' for 'ink' is not a number, e.g. ink:0.8"),
    ("style.safetensors:abc", "LoRA weight 'abc' for 'style.safetensors' is not a number"),
    (":0.5", "a LoRA needs a file or a name"),
    ("ink:", "LoRA 'ink:' has no weight after the colon: give one, e.g. ink:0.8"),
    ("files/missing.safetensors", "LoRA file files/missing.safetensors does not exist"),
])
def test_a_lora_mistake_gets_the_sentence_about_it(tmp_path, given, sentence):
    out = tmp_path / "outputs"
    proc = run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--out", out, "--lora", given, check=False)
    assert proc.returncode == 2
    assert sentence in proc.stderr, proc.stderr
    assert "only .safetensors" not in proc.stderr and "not found" not in proc.stderr
    assert not out.exists()  # nothing written for a refused LoRA


def test_a_lora_path_holding_a_colon_is_still_a_path(tmp_path):
    from pipeline.models.loras import parse_lora

    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "ink.safetensors").write_bytes(b"")
    assert parse_lora(f"{folder}/ink.safetensors") == (f"{folder}/ink.safetensors", 1.0)
    assert parse_lora(f"{folder}/ink.safetensors:0.5") == (f"{folder}/ink.safetensors", 0.5)
    assert parse_lora("C:\\loras\\ink.safetensors") == ("C:\\loras\\ink.safetensors", 1.0)


# ---------------------------------------------------------------- 2. a config checked whole


def _config(tmp_path, text: str):
    path = tmp_path / "fox.yaml"
    path.write_text(text)
    return path


def test_every_lora_a_config_names_is_resolved_before_anything_runs(tmp_path):
    out = tmp_path / "outputs"
    config = _config(tmp_path, f"""\
model: tiny-random
out: {out}
loras: [nosuch-top]
prompts:
  - name: fox
    text: a red fox in snow
explore:
  seeds: 1-2
  size: 64
refine:
  picks: [1]
  size: 128
  loras: [ink:abc, nosuch-refine:0.5]
upscale:
  upscaler: {tmp_path / "missing.pth"}
""")
    proc = run_cli("run", config, "--set", "vary.picks=[2]", "--set", "vary.loras=[nosuch-vary]", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"{config}:3: loras[0]: LoRA 'nosuch-top' not found" in proc.stderr, proc.stderr
    assert f"{config}:13: refine.loras: " in proc.stderr and "weight 'abc' for 'ink' is not a number" in proc.stderr
    assert "--set vary.loras=[nosuch-vary]: vary.loras[0]: LoRA 'nosuch-vary' not found" in proc.stderr
    assert any(line.startswith(f"{config}:15: upscale.upscaler:") for line in lines), proc.stderr
    assert not out.exists()  # nothing computed, no run folder, no store


def test_a_missing_stage_lora_is_listed_with_the_other_problems(tmp_path):
    out = tmp_path / "outputs"
    config = _config(tmp_path, f"""\
model: tiny-random
out: {out}
prompts:
  - name: fox
    text: a red fox in snow
refine:
  picks: [1]
  size: 128
  loras: [nosuch]
""")
    proc = run_cli("run", config, "--dry-run", check=False)
    assert proc.returncode == 2
    assert f"{config}:9: refine.loras[0]: LoRA 'nosuch' not found" in proc.stderr, proc.stderr
    assert f"{config}:4: prompts[0]: run {out / 'fox'} does not exist yet" in proc.stderr, proc.stderr
    assert not out.exists()


def test_single_files_and_an_uncached_model_are_resolved_in_the_check(tmp_path):
    config = _config(tmp_path, f"""\
model:
  source: someone/not-cached
  vae: {tmp_path / "ae.safetensors"}
out: {tmp_path / "outputs"}
prompts: a red fox
explore:
  seeds: 1
""")
    proc = run_cli("run", config, check=False, env=cli_env(HF_HOME=tmp_path / "hf"))
    assert proc.returncode == 2
    assert f"{config}:1: model: model someone/not-cached is not in the local Hugging Face cache" in proc.stderr
    assert f"{config}:3: model.vae: file {tmp_path / 'ae.safetensors'} does not exist" in proc.stderr
    assert "--set model=tiny-random" in proc.stderr  # what works in a config
    assert "downloading" not in proc.stderr


def test_the_resolvers_are_a_list_a_new_kind_of_file_joins(tmp_path, monkeypatch):
    from pipeline.config import resolve as config_resolve

    monkeypatch.setattr(config_resolve, "RESOLVERS", list(config_resolve.RESOLVERS))
    config_resolve.resolver(lambda config: [(("explore", "size"), "a mask of another size")])
    config = _config(tmp_path, f"model: tiny-random\nout: {tmp_path / 'o'}\nprompts: a fox\nexplore:\n  size: 64\n")
    proc = run_cli("run", config, "--dry-run", check=False)
    assert proc.returncode == 2 and f"{config}:5: explore.size: a mask of another size" in proc.stderr


def test_an_unknown_key_from_set_is_blamed_on_the_set(tmp_path):
    config = _config(tmp_path, "# a comment\n\nmodel: tiny-random\nprompts: a fox\n")
    proc = run_cli("run", config, "--set", "nosuch.key=1", check=False)
    assert proc.returncode == 2
    assert "error: --set nosuch.key=1: nosuch: unknown key" in proc.stderr, proc.stderr
    assert f"{config}:" not in proc.stderr


# ---------------------------------------------------------------- 6. hints that point the right way


def test_gallery_without_runs_says_to_give_the_run_as_its_argument(tmp_path):
    proc = run_cli("gallery", "--out", tmp_path / "empty", check=False)
    assert proc.returncode == 2
    assert "pipeline gallery RUN" in proc.stderr and "--run" not in proc.stderr, proc.stderr
    (tmp_path / "o" / "fox").mkdir(parents=True)
    (tmp_path / "o" / "fox" / "run.json").write_text("{}")
    proc = run_cli("gallery", "--out", tmp_path / "o", check=False)
    assert "e.g. pipeline gallery fox" in proc.stderr and "--run" not in proc.stderr, proc.stderr


def test_no_network_says_so_without_first_saying_downloading(tmp_path):
    """No offline switch set, but the Hub cannot be reached: nothing is said to download."""
    env = cli_env(HF_HOME=tmp_path / "hf", HF_ENDPOINT="http://127.0.0.1:9")
    env.pop("HF_HUB_OFFLINE")
    env.pop("PIPELINE_OFFLINE")
    proc = run_cli("explore", PROMPT, "--seeds", "1", "--out", tmp_path / "o", env=env, check=False, timeout=300)
    assert proc.returncode == 2
    assert "cannot be downloaded here (the Hugging Face Hub cannot be reached" in proc.stderr, proc.stderr
    assert "downloading" not in proc.stderr and "33 GB" not in proc.stderr
    assert "with a config: --set model=tiny-random" in proc.stderr


# ---------------------------------------------------------------- 7. the smaller ones


def test_a_negative_seed_names_the_limit_of_new_pictures(tmp_path):
    for args in (["--seed", "-5"], ["--seeds", "-5"]):
        proc = run_cli("explore", PROMPT, *TINY, *args, "--out", tmp_path / "o", "--dry-run", check=False)
        assert proc.returncode == 2 and "9007199254740991 (2^53 - 1)" in proc.stderr, proc.stderr
        assert "18446744073709551615" not in proc.stderr


def test_a_refused_lora_leaves_no_empty_store(tmp_path):
    from safetensors.numpy import save_file
    import numpy as np

    bad = tmp_path / "other-model.safetensors"
    save_file({"lora_unet_foo.lora_down.weight": np.zeros((4, 8), np.float32),
               "lora_unet_foo.lora_up.weight": np.zeros((8, 4), np.float32)}, str(bad))
    out = tmp_path / "outputs"
    proc = run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--out", out, "--lora", bad, check=False)
    assert proc.returncode == 2 and "matches no layer" in proc.stderr, proc.stderr
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--out", out, "--lora", bad, check=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # no empty .store; the user's file kept


def test_a_truncated_png_is_refused_before_the_upscaler_loads(tmp_path, monkeypatch):
    from pipeline.stages import superres

    def loaded(*args, **kwargs):
        raise AssertionError("the upscaler was loaded for a picture that cannot be read")

    monkeypatch.setattr(superres, "load", loaded)  # the super-resolution step loads the upscaler (seams)
    whole = tmp_path / "whole.png"
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(whole)
    data = whole.read_bytes()
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(data[: len(data) // 2])
    proc = run_cli("upscale", truncated, "--out", tmp_path / "o", "--upscaler", "realesr-animevideov3", check=False)
    assert proc.returncode == 2 and f"{truncated} is truncated or corrupt" in proc.stderr, proc.stderr


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_converted_weights_are_readable_as_the_umask_says(tmp_path, umask):
    import os

    from pipeline.models import upscaler_weights as weights

    before = os.umask(umask)
    try:
        path = weights.convert_ncnn_weights(weights.PRESETS["realesr-animevideov3"], tmp_path)
    finally:
        os.umask(before)
    assert path is not None and (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_a_progress_line_says_tiles_in_the_plural(capsys):
    from pipeline.stages.common import LineProgress

    bar = LineProgress(2, "upscale", "tile")
    bar.update(2)
    bar.close()
    assert "upscale: 2 tiles in " in capsys.readouterr().err


def test_the_readme_command_makes_a_lora_that_fits_tiny_random(tmp_path):
    import sys

    from conftest import ROOT

    folder = tmp_path / "loras"
    made = subprocess.run([sys.executable, ROOT / "scripts" / "make_tiny_lora.py", folder / "tiny-ink.safetensors"],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    readme = manual_text()  # the README and the pages of docs/
    assert "python scripts/make_tiny_lora.py" in readme and "--lora tiny-ink:0.8" in readme
    env = cli_env(PIPELINE_LORAS=folder)
    run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--out", tmp_path / "o", "--run", "plain", env=env)
    inked = run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--out", tmp_path / "o", "--run", "ink",
                    "--lora", "tiny-ink:0.8", env=env)
    assert "warning" not in inked.stderr, inked.stderr  # every layer of it matches the tiny model
    assert (tmp_path / "o" / "ink" / "explore" / "seed-1.png").read_bytes() != \
        (tmp_path / "o" / "plain" / "explore" / "seed-1.png").read_bytes()


def test_the_readme_documents_what_the_user_met(tmp_path):
    from conftest import ROOT

    readme = manual_text()  # the README and the pages of docs/
    assert "`512*768`, `512,768`" in readme
    assert "python3 -m venv .venv\n.venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu" in readme
    weights = (ROOT / "weights" / "README.md").read_text()
    assert weights.index("converted") < weights.index("downloaded")  # the order the code tries, as the README says


def test_a_config_whose_out_is_a_file_says_so(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    config = _config(tmp_path, f"model: tiny-random\nout: {afile}\nprompts: a fox\nexplore:\n  seeds: 1\n  size: 64\n")
    try:
        proc = run_cli("run", config, check=False, process=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("a config run into a file did not end")
    assert proc.returncode == 2 and f"{config}:2: out: {afile} is a file: give a folder" in proc.stderr, proc.stderr
