"""The manual's examples run as written (the README and every page of docs/, in the site's order).

Convention (docs/development.md): a fenced block right after a `<!-- test -->` line is
tested. `sh` blocks run with bash -e, `python` blocks with this Python, in order, in one
scratch folder that holds a copy of `configs/` (so later blocks see earlier blocks' files).

In an `sh` block, bash runs every line (quotes, redirections, `python`, `torchrun`), and each
`pipeline ARGS` it starts is run by this test process, as `run_cli` runs the other tests'
commands: a `pipeline` on bash's PATH hands its arguments, folder and environment over a socket
and prints what the command printed, with its exit status. A process per command cost ~5 s of
imports each (torch, diffusers), most of this module's time. The installed `pipeline` script
itself is run once, by `test_the_installed_command_runs`.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli_env, manual_files, run_cli

MARK = "<!-- test -->"
BLOCK = re.compile(r"^" + re.escape(MARK) + r"\s*\n```(\w+)\n(.*?)^```", re.S | re.M)


def marked_blocks() -> list[tuple[str, str, str]]:
    """(language, code, where: 'docs/refine.md:12') of every marked block of the manual, in order."""
    blocks = []
    for path in manual_files():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT).as_posix()
        blocks += [(m.group(1), m.group(2), f"{where}:{text.count(chr(10), 0, m.start()) + 1}")
                   for m in BLOCK.finditer(text)]
    return blocks


def test_marked_blocks_are_found():
    blocks = marked_blocks()
    assert {lang for lang, _, _ in blocks} <= {"sh", "python"}
    assert len(blocks) == sum(path.read_text(encoding="utf-8").count(MARK + "\n") for path in manual_files())
    assert any("configs/smoke.yaml" in code for _, code, _ in blocks)


# `pipeline` on bash's PATH: its arguments, folder and environment to the test process; what the command printed
# and its exit status back (python -S: no site packages needed, 20 ms)
HANDOVER = """#!{python} -S
import json, os, socket, sys
with socket.socket(socket.AF_UNIX) as sock:
    sock.connect({address!r})
    sock.sendall(json.dumps({{"args": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}}).encode())
    sock.shutdown(socket.SHUT_WR)
    done = json.loads(b"".join(iter(lambda: sock.recv(1 << 16), b"")))
sys.stdout.write(done["stdout"])
sys.stderr.write(done["stderr"])
sys.exit(done["code"])
"""
SHELL = {"PWD", "OLDPWD", "SHLVL", "_"}  # what bash sets in the environment it was given


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", work / "configs")
    env = cli_env(PIPELINE_STORE=tmp_path_factory.getbasetemp() / "smoke-store")  # shared with test_config
    handover = tmp_path_factory.mktemp("handover")
    script = handover / "pipeline"
    script.write_text(HANDOVER.format(python=sys.executable, address=str(handover / "socket")))
    script.chmod(0o755)
    env["PATH"] = os.pathsep.join([str(handover), str(Path(sys.executable).parent), env.get("PATH", "")])
    return work, env, handover / "socket"


def run_block(command: list[str], work: Path, env: dict, address: Path) -> tuple[int, str, str]:
    """Run a block's command, running here each `pipeline` command it starts, until it exits."""
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(address))
        listener.listen()
        out, err = address.with_name("stdout"), address.with_name("stderr")
        with open(out, "w") as stdout, open(err, "w") as stderr:
            proc = subprocess.Popen(command, cwd=work, env=env, stdout=stdout, stderr=stderr, text=True)
        try:
            ended = os.pidfd_open(proc.pid)
            while not select.select([listener, ended], [], [])[0].count(ended):
                connection, _ = listener.accept()
                with connection:
                    asked = json.loads(b"".join(iter(lambda: connection.recv(1 << 16), b"")))
                    # bash's own variables and PATH as this process has them (the command reads none of them;
                    # run_cli starts a process for an environment that differs in what a process reads at start)
                    given = {k: v for k, v in asked["env"].items() if k not in SHELL | {"PATH"}}
                    given.update({k: os.environ[k] for k in SHELL | {"PATH"} if k in os.environ})
                    done = run_cli(*asked["args"], env=given, cwd=asked["cwd"], check=False)
                    connection.sendall(json.dumps({"stdout": done.stdout, "stderr": done.stderr,
                                                   "code": done.returncode}).encode())
            os.close(ended)
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
            address.unlink()
    return proc.returncode, out.read_text(), err.read_text()


@pytest.mark.parametrize("lang,code,line", marked_blocks(),
                         ids=lambda v: v if isinstance(v, str) and ".md:" in v else None)
def test_readme_block_runs_as_written(scratch, lang, code, line):
    work, env, address = scratch
    command = ["bash", "-e", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    status, stdout, stderr = run_block(command, work, env, address)
    assert status == 0, f"{line} ({lang}) failed:\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr


def test_the_installed_command_runs(tmp_path):
    """The `pipeline` that pip installs (the blocks above reach the same command through this test process)."""
    installed = Path(sys.executable).parent / "pipeline"
    if not installed.is_file():
        pytest.skip(f"no {installed}: this Python's environment has not installed the project (pip install -e .)")
    proc = subprocess.run([installed, "explore", "--help"], env=cli_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--seeds" in proc.stdout
