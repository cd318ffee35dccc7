"""A config's `inpaint:` section and `detail_faces` keys: read like the CLI's options, refused with file:line,
run after explore (and refine), found again on a rerun."""
from __future__ import annotations

import json
import textwrap

from conftest import run_cli
from pipeline.config.loader import load_config

CONFIG = """\
model: tiny-random
out: outs
prompts:
  - text: a red fox in snow
    name: fox
explore:
  seeds: 1
  size: 64
  steps: 2
inpaint:
  picks: 1
  from: explore
  extend: right:16
  strength: 0.5
"""


def write(tmp_path, text, name="fox.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_the_section_reads_as_the_cli_options_do(tmp_path):
    config = load_config(write(tmp_path, CONFIG), ["refine={picks: [1], detail_faces: 0.35}",
                                                   "upscale.detail_faces=0.3"]).config
    spec = config.inpaint.spec()
    assert (spec.seeds, spec.source, spec.extend, spec.chosen_strength) == (["1"], "explore", "right:16", 0.5)
    assert (config.refine.detail_faces, config.upscale.detail_faces) == (0.35, 0.3)
    shown = config.resolved()["inpaint"]
    assert shown["extend"] == "right:16" and shown["source"] == "explore"


def test_a_bad_inpaint_section_names_file_line_and_key(tmp_path):
    path = write(tmp_path, CONFIG.replace("  extend: right:16\n", "  extnd: right:16\n"))
    proc = run_cli("run", path, check=False)
    assert proc.returncode == 2 and "fox.yaml:13: inpaint.extnd: unknown key" in proc.stderr
    path = write(tmp_path, CONFIG.replace("  extend: right:16\n", ""))
    proc = run_cli("run", path, check=False)
    assert proc.returncode == 2
    assert "inpaint: say what to re-draw: --mask MASK.png, --faces, or --extend SIDE:PX" in proc.stderr
    assert not (tmp_path / "outs").exists()


def test_a_config_makes_the_fix_once(tmp_path):
    path = write(tmp_path, CONFIG)
    first = json.loads(run_cli("run", path, "--json", cwd=tmp_path).stdout)
    assert first["totals"]["inpaint"] == {"planned": 1, "stored": 0, "computed": 1}
    fix = first["runs"][0]["stages"]["inpaint"]["items"][0]
    assert fix["seed"] == "1i1" and fix["path"].endswith("fox/inpaint/seed-1i1.png")
    planned = json.loads(run_cli("run", path, "--json", "--dry-run", cwd=tmp_path).stdout)
    assert planned["totals"]["inpaint"] == {"planned": 1, "stored": 1, "computed": 0}
    again = json.loads(run_cli("run", path, "--json", cwd=tmp_path).stdout)
    assert again["totals"]["inpaint"]["computed"] == 0
