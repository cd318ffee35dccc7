"""Without --ray (or $PIPELINE_RAY) Ray is never imported: `pipeline explore --help` and a whole explore run."""
from __future__ import annotations

import subprocess
import sys

from conftest import cli_env

CHECK = """
import sys
from pipeline.cli import main
try:
    main(sys.argv[1:])
except SystemExit as end:
    assert not end.code, end.code
print("ray imported" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "no ray")
"""


def run(*args, **env) -> str:
    proc = subprocess.run([sys.executable, "-c", CHECK, *map(str, args)], capture_output=True, text=True,
                          env=cli_env(**env), timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_explore_help_imports_no_ray():
    assert run("explore", "--help") == "no ray"


def test_a_run_without_ray_imports_no_ray(tmp_path):
    assert run("explore", "a fox", "--model", "tiny-random", "--size", "64", "--steps", "1", "--seeds", "1",
               "--out", tmp_path, PIPELINE_RAY="") == "no ray"
    assert (tmp_path / ".store").is_dir()


def test_ray_address_that_is_a_prompt_is_one_sentence():
    proc = subprocess.run([sys.executable, "-m", "pipeline", "explore", "--ray", "a red fox"], capture_output=True,
                          text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 2
    assert "--ray took 'a red fox' for a Ray address" in proc.stderr and "Traceback" not in proc.stderr


def test_ray_auto_without_a_cluster_is_one_sentence(tmp_path):
    import pytest

    pytest.importorskip("ray")
    from ray._private.services import find_bootstrap_address

    if find_bootstrap_address(None):
        pytest.skip("`ray start` runs a cluster on this machine: --ray auto joins it")
    env = cli_env()
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "pipeline", "explore", "a fox", "--model", "tiny-random", "--seeds",
                           "1", "--out", str(tmp_path), "--ray", "auto"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: cannot reach the Ray cluster at 'auto'" in proc.stderr and "ray start --head" in proc.stderr


def test_ray_auto_is_ray_address_first(monkeypatch):
    """`--ray auto` joins $RAY_ADDRESS when it is set, as `ray` itself does (else the cluster `ray start` runs)."""
    import pytest

    pytest.importorskip("ray")
    from pipeline.scale.ray_cluster import _started_here

    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert _started_here() == "10.1.2.3:6379"
