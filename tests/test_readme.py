"""The manual's examples run as written (the README and every page of docs/, in the site's order).

Convention (docs/development.md): a fenced block right after a `<!-- test -->` line is
tested. `sh` blocks run with bash -e, `python` blocks with this Python, in order, in one
scratch folder that holds a copy of `configs/` (so later blocks see earlier blocks' files).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, cli_env, manual_files

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


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "configs", work / "configs")
    env = cli_env(PIPELINE_STORE=tmp_path_factory.getbasetemp() / "smoke-store")  # shared with test_config
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return work, env


@pytest.mark.parametrize("lang,code,line", marked_blocks(),
                         ids=lambda v: v if isinstance(v, str) and ".md:" in v else None)
def test_readme_block_runs_as_written(scratch, lang, code, line):
    work, env = scratch
    command = ["bash", "-e", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{line} ({lang}) failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
