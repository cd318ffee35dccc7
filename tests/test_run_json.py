"""run.json version 2: one name (`pictures`) for every stage's pictures; version-1 runs still work."""
from __future__ import annotations

import json
import shutil

import pytest

from pipeline import Pipeline
from pipeline.core.runs import RUN_VERSION, load_run

PROMPT = "a red fox in snow"
V1_NAMES = {"explore": "candidates", "refine": "pictures", "upscale": "items"}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run with candidates, refined and upscaled pictures, made once for the module."""
    out = tmp_path_factory.mktemp("v2") / "outputs"
    with Pipeline(model="tiny-random", out=out, progress=False) as p:
        p.explore(PROMPT, seeds=[1, 2], size=(64, 64), run="fox")
        p.refine(seeds=[1], run="fox", size=(128, 128))
        p.upscale(run="fox", seeds=[1], upscaler="realesr-animevideov3")
    return out


def as_version_1(data: dict) -> dict:
    """The same run as round 1's code wrote it."""
    old = json.loads(json.dumps(data))
    old["version"] = 1
    for stage, name in V1_NAMES.items():
        old[stage] = {name: old[stage].pop("pictures"), **old[stage]}
    return old


def test_every_stage_records_its_pictures_under_one_name(made):
    data = json.loads((made / "fox" / "run.json").read_text(encoding="utf-8"))
    assert data["version"] == RUN_VERSION == 2
    assert [p["seed"] for p in data["explore"]["pictures"]] == [1, 2]
    assert [p["seed"] for p in data["refine"]["pictures"]] == [1]
    assert [p["seed"] for p in data["upscale"]["pictures"]] == [1]
    assert not {"candidates", "items"} & (set(data["explore"]) | set(data["upscale"]))


def test_a_version_1_run_is_read_as_it_is_and_rewritten_as_version_2(made, tmp_path):
    out = tmp_path / "outputs"
    shutil.copytree(made, out, symlinks=True)
    run_dir = out / "fox"
    v2 = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    (run_dir / "run.json").write_text(json.dumps(as_version_1(v2)), encoding="utf-8")

    assert load_run(run_dir)["explore"]["pictures"] == v2["explore"]["pictures"]  # read as version 2
    assert json.loads((run_dir / "run.json").read_text())["version"] == 1  # reading does not write

    with Pipeline(model="tiny-random", out=out, progress=False) as p:
        page = p.gallery("fox")
        assert "seed-2.png" in page.read_text(encoding="utf-8")  # the gallery sees version 1's candidates
        refined = p.refine(seeds=[1], run="fox", size=(128, 128))
        upscaled = p.upscale(run="fox", seeds=[1], upscaler="realesr-animevideov3")
    assert refined.computed == 0 and upscaled.computed == 0  # refine/upscale found the v1 records

    data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert data["version"] == 2
    for stage in V1_NAMES:
        assert [p["key"] for p in data[stage]["pictures"]] == [p["key"] for p in v2[stage]["pictures"]], stage
    assert "candidates" not in data["explore"] and "items" not in data["upscale"]


def test_repair_writes_version_2(made, tmp_path):
    out = tmp_path / "outputs"
    shutil.copytree(made, out, symlinks=True)
    (out / "fox" / "run.json").unlink()
    with Pipeline(out=out, progress=False) as p:
        p.repair("fox")
    data = json.loads((out / "fox" / "run.json").read_text(encoding="utf-8"))
    assert data["version"] == 2
    assert {stage: len(data[stage]["pictures"]) for stage in V1_NAMES} == {"explore": 2, "refine": 1, "upscale": 1}

