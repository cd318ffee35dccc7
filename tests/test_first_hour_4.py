"""A new user's first hour, round 4 (issue 30): no silent hang, a config checked whole before anything
runs, LoRA weight sentences, repair of every kind of picture, hints that point the right way.
Through the CLI, on the tiny model, offline."""
from __future__ import annotations

import subprocess

import pytest

from conftest import cli_env, run_cli

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
    from pipeline.engines.lora import parse_lora

    folder = tmp_path / "a:b"
    folder.mkdir()
    (folder / "ink.safetensors").write_bytes(b"")
    assert parse_lora(f"{folder}/ink.safetensors") == (f"{folder}/ink.safetensors", 1.0)
    assert parse_lora(f"{folder}/ink.safetensors:0.5") == (f"{folder}/ink.safetensors", 0.5)
    assert parse_lora("C:\\loras\\ink.safetensors") == ("C:\\loras\\ink.safetensors", 1.0)
