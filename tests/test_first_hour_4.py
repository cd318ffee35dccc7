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
