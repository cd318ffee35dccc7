"""`pipeline vary`: variations of picked candidates join the run as candidates 42v1, 42v2, ..."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import ROOT, cli_env, run_cli, run_json

TINY = ["--model", "tiny-random"]
PROMPT = "a red fox in snow"


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Candidates 1-2 (64²), then two subtle variations of candidate 1."""
    out = tmp_path_factory.mktemp("vary") / "outputs"
    explored = run_json("explore", PROMPT, *TINY, "--size", "64", "--seeds", "1-2", "--out", out, "--run", "fox")
    result = run_json("vary", "--seeds", "1", "--count", "2", "--out", out)
    return out, out / "fox", explored, result


def run_data(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def candidates(run_dir: Path) -> dict:
    return {c["seed"]: c for c in run_data(run_dir)["explore"]["pictures"]}


def test_variations_join_the_run_next_to_their_parent(varied):
    out, run_dir, explored, result = varied
    assert (result["stage"], result["computed"], result["stored"]) == ("vary", 2, 0)
    assert [item["seed"] for item in result["items"]] == ["1v1", "1v2"]
    parent_key = explored["items"][0]["key"]
    for item in result["items"]:
        path = Path(item["path"])
        assert path == run_dir / "explore" / f"seed-{item['seed']}.png"
        with Image.open(path) as image:
            assert image.size == (64, 64)  # the candidate's own size
            record = json.loads(image.text["pipeline"])
        assert record["kind"] == "vary" and record["strength"] == 0.5 and record["parent_key"] == parent_key
        assert record["variation"] == item["seed"]
    found = candidates(run_dir)
    assert list(found) == [1, "1v1", "1v2", 2]  # in run.json, the variations follow their parent
    assert found["1v1"]["parent"] == 1 and found["1v1"]["parent_key"] == parent_key
    assert found["1v1"]["noise_seed"] != found["1v2"]["noise_seed"]
    assert Path(result["items"][0]["path"]).read_bytes() != Path(result["items"][1]["path"]).read_bytes()
    page = (run_dir / "index.html").read_text()
    assert 'data-seed="1v1"' in page and "variation 1v1" in page


def test_rerun_is_cached_and_more_count_adds_only_the_new_ones(varied):
    out, run_dir, _, first = varied
    plan = run_json("vary", "--seeds", "1", "--count", "3", "--out", out, "--dry-run")
    assert (plan["planned"], plan["stored"], plan["computed"]) == (3, 2, 1)
    again = run_json("vary", "--seeds", "1", "--count", "3", "--out", out)
    assert [(i["seed"], i["cached"]) for i in again["items"]] == [("1v1", True), ("1v2", True), ("1v3", False)]
    assert [i["key"] for i in again["items"][:2]] == [i["key"] for i in first["items"]]
    # another strength: new numbers, the subtle ones stay
    strong = run_json("vary", "--seeds", "1", "--count", "1", "--strength", "strong", "--out", out)
    assert strong["items"][0]["seed"] == "1v4" and candidates(run_dir)["1v4"]["strength"] == 0.85
    assert run_json("vary", "--seeds", "1", "--count", "1", "--strength", "0.85", "--out", out)["items"][0] == \
        {**strong["items"][0], "cached": True}


def test_a_cached_rerun_imports_no_torch(varied, tmp_path):
    out, _, _, _ = varied
    fake = tmp_path / "fake"
    for name in ("torch", "diffusers"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('{name} imported on a cache hit')\n")
    env = cli_env(PYTHONPATH=f"{fake}{os.pathsep}{ROOT}")
    assert "0 computed, 2 reused" in run_cli("vary", "--seeds", "1", "--count", "2", "--out", out, env=env).stdout


def test_a_variation_of_a_variation(varied):
    out, run_dir, _, first = varied
    result = run_json("vary", "--seeds", "1v2", "--count", "1", "--strength", "0.35", "--out", out)
    assert result["items"][0]["seed"] == "1v2v1"
    entry = candidates(run_dir)["1v2v1"]
    assert entry["parent"] == "1v2" and entry["parent_key"] == first["items"][1]["key"]
    assert list(candidates(run_dir)).index("1v2v1") == list(candidates(run_dir)).index("1v2") + 1


def test_refine_and_upscale_take_a_variation(varied):
    out, run_dir, _, first = varied
    refined = run_json("refine", "--seeds", "1v1", "--scale", "1.5", "--out", out)
    item = refined["items"][0]
    assert item["seed"] == "1v1" and Path(item["path"]) == run_dir / "refine" / "seed-1v1.png"
    with Image.open(item["path"]) as image:
        assert image.size == (96, 96)
        assert json.loads(image.text["pipeline"])["parent_key"] == first["items"][0]["key"]
    upscaled = run_json("upscale", "--seeds", "1v1", "--upscaler", "realesr-animevideov3", "--scale", "2",
                        "--out", out)
    assert upscaled["items"][0]["seed"] == "1v1"
    with Image.open(upscaled["items"][0]["path"]) as image:
        assert image.size == (192, 192)  # the refined variation, ×2
    assert run_data(run_dir)["upscale"]["pictures"][0]["seed"] == "1v1"


def test_contact_sheet_shows_the_variations(varied):
    out, run_dir, _, _ = varied
    with Image.open(run_dir / "explore" / "contact.png") as sheet:
        assert sheet.width >= 3 * 160  # the 2 candidates and their variations: a grid, not a row of 2


def test_variation_ids_are_read_everywhere_a_seed_spec_is():
    from pipeline.config.schema import Pick, VarySection
    from pipeline.core.errors import UserError
    from pipeline.core.seeds import parse_seeds, pick_parent, seed_ranges
    from pipeline.stages.specs import RefineSpec, VarySpec

    assert parse_seeds("42v3,42V1-2, 7,42v3v1", variations=True) == ["42v3", "42v1", "42v2", 7, "42v3v1"]
    assert pick_parent("42v3v1") == "42v3" and pick_parent("42v3") == 42 and pick_parent(42) is None
    assert seed_ranges([1, 2, 3, "1v2", "1v1"]) == "1-3, 1v1, 1v2"
    assert RefineSpec(seeds="42v3,5").seeds == ["42v3", 5]
    assert VarySpec(seeds=["42v3", 5]).seeds == ["42v3", 5]
    assert Pick.model_validate("fox:42v3").seed == "42v3" and Pick.model_validate(42).seed == 42
    assert [p.seed for p in VarySection(picks="1,1v2").picks] == [1, "1v2"]
    with pytest.raises(UserError, match="names a variation"):
        parse_seeds("42v3")  # explore renders from text: a variation is not a seed
    with pytest.raises(UserError, match="numbered from 1"):
        parse_seeds("42v0", variations=True)


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1", "--strength", "1.5"], "strength: 1.5 is out of range"),
    (["--seeds", "1", "--strength", "wild"], "strength: 'wild' is not subtle, strong or a number"),
    (["--seeds", "9"], "9 is not a candidate of run fox; its candidates are 1-2, 1v1"),
    (["--seeds", "1v9"], "1v9 is not a candidate of run fox"),
    (["--seeds", "1x"], "cannot read seed '1x'"),
])
def test_bad_input_is_one_sentence_and_writes_nothing(varied, args, message):
    out, run_dir, _, _ = varied
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    proc = run_cli("vary", "--out", out, *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_explore_refuses_a_variation_id(tmp_path):
    proc = run_cli("explore", PROMPT, *TINY, "--seeds", "4v1", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "'4v1' names a variation" in proc.stderr


def test_a_config_explores_with_variance_varies_and_refines_a_variation(tmp_path):
    config = tmp_path / "fox.yaml"
    config.write_text(f"""\
model: tiny-random
out: {tmp_path / 'out'}
prompts: [{{text: {PROMPT}, name: fox}}]
explore: {{seeds: 1-2, size: 64, variance: 0.3}}
vary: {{picks: [1], count: 2, strength: strong}}
refine: {{picks: [1v2], scale: 1.5}}
""")
    result = run_json("run", config)
    stages = result["runs"][0]["stages"]
    assert [i["seed"] for i in stages["vary"]["items"]] == ["1v1", "1v2"]
    assert [i["seed"] for i in stages["refine"]["items"]] == ["1v2"]
    run = run_data(tmp_path / "out" / "fox")
    assert run["variance"]["strength"] == 0.3 and candidates(tmp_path / "out" / "fox")["1v2"]["strength"] == 0.85
    plan = run_json("run", config, "--dry-run")
    assert plan["totals"]["vary"] == {"planned": 2, "stored": 2, "computed": 0}
    config.write_text(config.read_text().replace("strength: strong", "strength: 1.5"))
    proc = run_cli("run", config, check=False)
    assert proc.returncode == 2 and "fox.yaml:5: vary.strength: 1.5 is out of range" in proc.stderr, proc.stderr


def test_repair_rebuilds_the_variations_with_their_ids_and_parents(varied):
    out, run_dir, _, _ = varied
    from pipeline import Pipeline

    recorded = candidates(run_dir)
    (run_dir / "run.json").rename(run_dir / "run.json.bak")
    try:
        with Pipeline(model="tiny-random", out=out) as p:
            p.repair(run_dir)
        rebuilt = candidates(run_dir)
        assert set(rebuilt) == set(recorded)
        for pick, entry in recorded.items():
            for field in ("key", "path", "parent", "parent_key", "noise_seed", "strength"):
                assert rebuilt[pick].get(field) == entry.get(field), (pick, field)
    finally:
        (run_dir / "run.json.bak").replace(run_dir / "run.json")


def test_variations_made_before_seeds_were_cut_to_53_bits_stay_reachable(tmp_path, monkeypatch):
    """Variations made with 64-bit noise seeds keep their keys and pictures: vary reuses the noise seed
    run.json recorded for an id already made; new ids get seeds below 2**53 (exact in JavaScript)."""
    import hashlib

    import pipeline.stages.vary as vary_stage

    def old_seed(variation):  # the derivation before: all 64 bits
        return int.from_bytes(hashlib.sha256(f"pipeline vary {variation}".encode()).digest()[:8], "big")

    out = tmp_path / "outputs"
    run_json("explore", PROMPT, *TINY, "--size", "64", "--seeds", "1", "--out", out, "--run", "fox")
    with monkeypatch.context() as patch:
        patch.setattr(vary_stage, "variation_seed", old_seed)
        before = run_json("vary", "--seeds", "1", "--count", "1", "--out", out)
    assert candidates(out / "fox")["1v1"]["noise_seed"] == old_seed("1v1") >= 2**53
    picture = (out / "fox" / "explore" / "seed-1v1.png").read_bytes()

    again = run_json("vary", "--seeds", "1", "--count", "2", "--out", out)
    assert (again["stored"], again["computed"]) == (1, 1)  # 1v1 found under its old key, 1v2 made
    assert again["items"][0]["key"] == before["items"][0]["key"]
    assert (out / "fox" / "explore" / "seed-1v1.png").read_bytes() == picture
    found = candidates(out / "fox")
    assert found["1v1"]["noise_seed"] == old_seed("1v1") and found["1v2"]["noise_seed"] < 2**53
    refined = run_json("refine", "--seeds", "1v1", "--scale", "1.5", "--out", out)  # the old one refines as before
    with Image.open(refined["items"][0]["path"]) as image:
        assert json.loads(image.text["pipeline"])["seed"] == old_seed("1v1")
