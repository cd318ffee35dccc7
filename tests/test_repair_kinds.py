"""`pipeline repair` rebuilds every kind of picture a stage records (issue 30): candidates, variations,
refined pictures (hires and rerender), plain upscales and detail upscales, each with the fields the
stage wrote, from the store, and from the pictures' own records when the store lost them."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli

TINY = ["--model", "tiny-random"]
TIMING = ("seconds", "cached")  # how long it took and whether it was stored: repair cannot know


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds") / "outputs"
    where = [*TINY, "--out", out, "--run", "r"]
    run_cli("explore", "a fox", "--size", "64", "--seeds", "1-2", *where)
    run_cli("vary", "--seeds", "1", "--count", "1", *where)
    run_cli("refine", "--seeds", "1,1v1", "--size", "128", "--mode", "hires", *where)
    run_cli("refine", "--seeds", "2", "--size", "96", "--mode", "rerender", *where)
    run_cli("upscale", "--seeds", "1", "--upscaler", "realesr-animevideov3", *where)
    run_cli("upscale", "--seeds", "2", "--upscaler", "realesr-animevideov3", "--detail", "0.3", *where)
    run_dir = out / "r"
    return out, run_dir, json.loads((run_dir / "run.json").read_text())


def _by_path(data: dict, stage: str) -> dict:
    return {p["path"]: {k: v for k, v in p.items() if k not in TIMING} for p in data.get(stage, {}).get("pictures", [])}


def _copy(made, tmp_path):
    out, run_dir, original = made
    copy = tmp_path / "outputs"
    shutil.copytree(out, copy, symlinks=True)
    return copy, copy / "r", original


def test_the_run_holds_every_kind_of_picture(made):
    _, run_dir, original = made
    records = [json.loads(p.read_text()) for p in (run_dir.parent / ".store" / "objects").glob("*/*.json")]
    kinds = {r["job"].get("kind") for r in records if isinstance(r.get("job"), dict)}
    assert {"explore", "vary", "refine", "upscale", "detail"} <= kinds
    upscaled = _by_path(original, "upscale")
    assert upscaled["upscale/seed-2.png"]["detail"] == 0.3 and "detail" not in upscaled["upscale/seed-1.png"]
    assert {p["mode"] for p in original["refine"]["pictures"]} == {"hires", "rerender"}


def test_repair_rebuilds_every_kind_of_picture_with_its_fields(made, tmp_path):
    out, run_dir, original = _copy(made, tmp_path)
    (run_dir / "run.json").unlink()
    result = json.loads(run_cli("repair", "r", "--out", out, "--json").stdout)
    assert result["recorded"] == {"explore": 3, "refine": 3, "inpaint": 0, "upscale": 2} and result["unknown"] == []
    rebuilt = json.loads((run_dir / "run.json").read_text())
    for stage in ("explore", "refine", "upscale"):
        assert _by_path(rebuilt, stage) == _by_path(original, stage), stage


@pytest.mark.parametrize("store", ["kept", "lost"])
def test_repair_adds_missing_upscales_of_both_kinds_with_their_fields(made, tmp_path, store):
    out, run_dir, original = _copy(made, tmp_path)
    data = json.loads((run_dir / "run.json").read_text())
    del data["upscale"]
    (run_dir / "run.json").write_text(json.dumps(data))
    if store == "lost":
        shutil.rmtree(out / ".store")  # from the pictures' own records
    result = json.loads(run_cli("repair", "r", "--out", out, "--json").stdout)
    assert result["added"]["upscale"] == 2
    added = _by_path(json.loads((run_dir / "run.json").read_text()), "upscale")
    expected = _by_path(original, "upscale")
    if store == "lost":  # the input's file name is in the store's record only
        expected = {path: {**entry, "source": ""} for path, entry in expected.items()}
    assert added == expected
