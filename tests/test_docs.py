"""The manual as a site: `mkdocs build --strict` fails on a broken link, a missing anchor or a page left out of
the nav, so a page moved or renamed cannot leave a dead link behind."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, manual_files


def test_every_page_of_docs_is_in_the_manual_and_every_page_exists():
    pages = {path.name for path in manual_files()[1:]}
    assert pages == {path.name for path in (ROOT / "docs").glob("*.md")}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in pages - {"index.md"}:
        assert f"(docs/{page})" in readme, f"the README does not link docs/{page}"


def test_the_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]'; the test extra has it)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "refine" / "index.html").is_file()
