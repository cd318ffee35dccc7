"""Shared test helpers: run the CLI as a user does, on real files, offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "PIPELINE_OFFLINE": "1", "PYTHONHASHSEED": "0"})
    env.pop("PIPELINE_STORE", None)
    env.pop("PIPELINE_MODEL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(*args, env=None, check=True, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """Run `pipeline ARGS` in a fresh process, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def run_json(*args, **kwargs) -> dict:
    return json.loads(run_cli(*args, "--json", **kwargs).stdout)


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "outputs"
