"""`pipeline refine` on the tiny model, offline: composition, caching, errors, --from, aspect ratios.

The CLI runs in this process (click's CliRunner) so torch and the tiny model are imported and
built once; the cache-hit test runs a real subprocess with torch made unimportable.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, PngImagePlugin

from conftest import DATA, ROOT, cli_env, run_cli

from pipeline.cli import main
from pipeline.models import tiny

TINY = ["--model", "tiny-random"]
PROMPT = "a red fox in snow"
PHOTO = DATA / "rocket.jpg"  # held out from the tiny VAE's training (scripts/train_tiny_vae.py)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    weights = tmp_path_factory.mktemp("weights")  # Real-ESRGAN weights converted from the ncnn package
    return {**cli_env(PIPELINE_WEIGHTS=weights), "PIPELINE_STORE": None, "PIPELINE_MODEL": None}


def invoke(env, *args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)
    assert result.exit_code == code, f"pipeline {' '.join(map(str, args))} → {result.exit_code}:\n{result.output}"
    return result


def invoke_json(env, *args) -> dict:
    return json.loads(invoke(env, *args, "--json").stdout)


@pytest.fixture(scope="module")
def explored(tmp_path_factory, env):
    """A 128×192 explore of seeds 1-3 and a default (hires, ×2) refine of seeds 1 and 2."""
    out = tmp_path_factory.mktemp("refine") / "outputs"
    invoke_json(env, "explore", PROMPT, *TINY, "--size", "128x192", "--seeds", "1-3", "--out", out)
    loads = []
    import pipeline.engines.zimage as zimage

    real_init = zimage.ZImageEngine.__init__

    def counting_init(self, *args, **kwargs):
        loads.append(1)
        real_init(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(zimage.ZImageEngine, "__init__", counting_init)
        refined = invoke_json(env, "refine", "--seeds", "1,2", "--out", out)  # the run's model: tiny-random
    return out, Path(refined["run_dir"]), refined, len(loads)


def thumbnail(image) -> np.ndarray:
    if not isinstance(image, Image.Image):
        image = Image.open(image)
    return np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BOX), dtype=np.float64).ravel()


def correlation(a, b) -> float:
    return float(np.corrcoef(thumbnail(a), thumbnail(b))[0, 1])


def png_record(path) -> tuple[dict, str]:
    with Image.open(path) as image:
        return json.loads(image.text["pipeline"]), image.text["parameters"]


# ---------------------------------------------------------------- a run's candidates


def test_hires_refine_doubles_the_size_keeps_aspect_and_records_everything(explored):
    out, run_dir, refined, loads = explored
    assert loads == 1  # the model loaded once for both picks
    assert (refined["planned"], refined["computed"], refined["stored"]) == (2, 2, 0)
    assert run_dir.resolve() == (out / "latest").resolve()
    run = json.loads((run_dir / "run.json").read_text())
    candidates = {c["seed"]: c for c in run["explore"]["pictures"]}
    for item in refined["items"]:
        path = Path(item["path"])
        assert path == run_dir / "refine" / f"seed-{item['seed']}.png"
        with Image.open(path) as image:
            assert image.size == (256, 384)  # 128×192 × 2
        record, parameters = png_record(path)
        assert (record["mode"], record["strength"], record["width"], record["height"]) == ("hires", 0.5, 256, 384)
        assert record["prompt"] == PROMPT and record["seed"] == item["seed"] and record["key"] == item["key"]
        assert record["parent_key"] == candidates[item["seed"]]["key"]
        stored = json.loads(next((out / ".store" / "objects").glob(f"*/{record['parent_key']}.json")).read_text())
        assert record["parent"] == stored["digest"]  # the key holds the parent picture's digest
        # A1111's hires fix: Size is the first pass (the candidate), then how it was enlarged and the 4
        # steps the second pass ran (8 × 0.5; A1111 runs Hires steps in its hires pass)
        assert "Size: 128x192, Model: tiny-random, Denoising strength: 0.5, Hires upscale: 2, " \
               "Hires steps: 4, Hires upscaler: Lanczos" in parameters
    # run.json kept the explore record and gained a refine record
    assert sorted(candidates) == [1, 2, 3] and run["prompt"] == PROMPT and run["width"] == 128
    pictures = {p["seed"]: p for p in run["refine"]["pictures"]}
    assert sorted(pictures) == [1, 2]
    assert pictures[1]["path"] == "refine/seed-1.png" and pictures[1]["parent_key"] == candidates[1]["key"]
    assert pictures[1]["mode"] == "hires" and pictures[1]["strength"] == 0.5
    assert "refine/seed-1.png" in (run_dir / "index.html").read_text()  # the gallery shows the refined pictures


def test_second_refine_computes_nothing_and_imports_no_torch(explored, tmp_path):
    out, run_dir, refined, _ = explored
    fake = tmp_path / "fake"
    for name in ("torch", "diffusers"):
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(f"raise ImportError('{name} imported on a cache hit')\n")
    proc = run_cli("refine", "--seeds", "2,1", "--out", out, env=cli_env(PYTHONPATH=f"{fake}{os.pathsep}{ROOT}"))
    assert "0 computed, 2 reused" in proc.stdout
    assert f"seed 2: {run_dir / 'refine' / 'seed-2.png'}" in proc.stdout


def test_a_changed_candidate_is_refined_again(explored, env):
    out, run_dir, refined, _ = explored
    copy = out / "changed"
    shutil.copytree(run_dir, copy)
    run = json.loads((copy / "run.json").read_text())
    by_seed = {c["seed"]: c for c in run["explore"]["pictures"]}
    by_seed[1]["key"] = by_seed[3]["key"]  # candidate 1 now holds other pixels (as after a re-render)
    (copy / "run.json").write_text(json.dumps(run))
    again = invoke_json(env, "refine", "--run", "changed", "--seeds", "1,2", "--out", out)
    items = {i["seed"]: i for i in again["items"]}
    assert items[2]["cached"] is True  # unchanged candidate: reused
    assert items[1]["cached"] is False  # changed candidate: refined again, under another key
    assert items[1]["key"] != next(i["key"] for i in refined["items"] if i["seed"] == 1)
    after = json.loads((copy / "run.json").read_text())
    assert after["explore"]["pictures"] == run["explore"]["pictures"]


def test_unknown_seeds_are_one_sentence_listing_the_runs_seeds(explored):
    out, run_dir, _, _ = explored
    proc = run_cli("refine", "--seeds", "2,7-9", "--out", out, "--run", run_dir, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: seeds 7-9 are not candidates of run {run_dir.name}; "
                                   f"its seeds are 1-3")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args, message", [
    ([], "say what to refine"),
    (["--seeds", "1", "--from", "x.png"], "not both"),
    (["--seeds", "1", "--size", "1000"], "not a multiple of 16"),
    (["--seeds", "1", "--size", "256", "--scale", "3"], "give --size or --scale, not both"),
    (["--seeds", "1", "--strength", "0"], "strength"),
    (["--seeds", "1", "--prompt", "x"], "--prompt and --seed go with --from"),
    (["--from", "missing.png"], "does not exist"),
])
def test_bad_options_are_user_errors(explored, env, args, message):
    out, _, _, _ = explored
    result = invoke(env, "refine", *args, "--out", out, code=2)
    assert message in result.stderr and "Traceback" not in result.output


def test_dry_run_counts_and_rerender_warns_once(explored, env):
    out, run_dir, _, _ = explored
    plan = invoke(env, "refine", "--seeds", "1-3", "--out", out, "--run", run_dir.name, "--dry-run", "--json")
    assert {k: json.loads(plan.stdout)[k] for k in ("planned", "stored", "computed")} == \
           {"planned": 3, "stored": 2, "computed": 1}
    rerender = invoke(env, "refine", "--seeds", "1-3", "--out", out, "--mode", "rerender", "--dry-run")
    assert rerender.stderr.count("composition may change") == 1
    assert "3 pictures, 0 stored, 3 to compute" in rerender.stdout


def test_upscaler_enlarges_the_candidate_and_enters_the_key(explored, env):
    out, run_dir, refined, _ = explored
    result = invoke_json(env, "refine", "--seeds", "1", "--upscaler", "realesr-animevideov3", "--out", out,
                         "--run", run_dir.name)
    item = result["items"][0]
    assert item["cached"] is False and item["key"] != refined["items"][0]["key"]
    record, parameters = png_record(item["path"])
    assert record["enlarge"].startswith("realesr-animevideov3@") and "Hires upscaler: R-ESRGAN AnimeVideo," in parameters
    with Image.open(item["path"]) as image:
        assert image.size == (256, 384)


# ---------------------------------------------------------------- --from IMAGE


def test_from_our_png_reads_its_parameters_and_reuses_the_runs_refine(explored, env):
    out, run_dir, refined, _ = explored
    candidate = run_dir / "explore" / "seed-2.png"
    result = invoke_json(env, "refine", "--from", candidate, "--out", out)  # no --model: the image's
    item = result["items"][0]
    # same prompt, seed, size and parent pixels as `refine --seeds 2`: the same job, already stored
    assert item["cached"] is True and item["key"] == next(i["key"] for i in refined["items"] if i["seed"] == 2)
    new_run = Path(result["run_dir"])
    assert new_run.parent == out and new_run.name.startswith("from-seed-2-")
    assert Path(item["path"]) == new_run / "refine" / "seed-2.png"
    run = json.loads((new_run / "run.json").read_text())
    assert run["source"] == str(candidate.resolve()) and run["refine"]["pictures"][0]["seed"] == 2
    assert (out / "latest").resolve() == new_run.resolve()


def test_from_an_a1111_png_takes_prompt_negative_and_seed(explored, env, tmp_path):
    out, run_dir, _, _ = explored
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cup of coffee on a table\nNegative prompt: blurry\n"
                                "Steps: 30, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 128x192, Model: sd15")
    source = tmp_path / "a1111.png"
    with Image.open(run_dir / "explore" / "seed-3.png") as image:
        image.convert("RGB").save(source, pnginfo=info)
    result = invoke_json(env, "refine", "--from", source, *TINY, "--scale", "1", "--out", out)
    record, _ = png_record(result["items"][0]["path"])
    assert (record["prompt"], record["seed"], record["width"], record["height"]) == \
           ("a cup of coffee on a table", 1234, 128, 192)
    # A1111's Steps/CFG are for another sampler and model: Turbo's 8 steps and guidance 0 stay
    assert (record["steps"], record["guidance"], record["negative"]) == (8, 0.0, "")
    with_cfg = invoke_json(env, "refine", "--from", source, *TINY, "--scale", "1", "--out", out, "--guidance", "2",
                           "--dry-run")
    assert with_cfg["computed"] == 1  # guidance on: the negative prompt now counts, a new job


def test_from_an_image_without_metadata_needs_a_prompt(explored, env, tmp_path):
    out, _, _, _ = explored
    plain = tmp_path / "plain.png"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(plain)
    result = invoke(env, "refine", "--from", plain, *TINY, "--out", out, code=2)
    assert "carries no generation parameters: give --prompt" in result.stderr


# ---------------------------------------------------------------- composition (needs the trained tiny VAE)


@pytest.fixture(scope="module")
def photo() -> Path:
    if not PHOTO.is_file() or not tiny.VAE_WEIGHTS_PATH.is_file():
        pytest.fail(f"{PHOTO} and {tiny.VAE_WEIGHTS_PATH} ship with the repo (scripts/train_tiny_vae.py)")
    return PHOTO


def test_hires_keeps_a_photos_composition_and_rerender_does_not(explored, env, photo):
    """The photo (640×427, no generation metadata) refined ×2 to 1280×848.

    The tiny model's transformer is random: it does not remove the noise that img2img adds
    (σ = 0.75 at strength 0.5), it only perturbs. What keeps the composition visible is that
    each 32×32-thumbnail cell averages ~40×26 pixels (5×3 latents) of that noise away, so the
    check needs a realistic target size; at 384×256 the same refine correlates at only ~0.4.
    """
    out, _, _, _ = explored
    args = ["refine", "--from", photo, *TINY, "--prompt", "a red rocket on the launch pad", "--seed", "1",
            "--out", out]
    hires = invoke_json(env, *args, "--strength", "0.5", "--run", "photo-hires")["items"][0]
    rerender = invoke_json(env, *args, "--mode", "rerender", "--run", "photo-rerender")["items"][0]
    assert hires["key"] != rerender["key"]
    for item in (hires, rerender):
        with Image.open(item["path"]) as image:
            assert image.size == (1280, 848)  # 640×427 × 2, each side rounded to a multiple of 16
    keep, lose = correlation(hires["path"], photo), correlation(rerender["path"], photo)
    assert keep >= 0.7, f"hires lost the composition: thumbnail correlation {keep:.2f}"
    assert lose < 0.3, f"rerender kept the composition: thumbnail correlation {lose:.2f}"
