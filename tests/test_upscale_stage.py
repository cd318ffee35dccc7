"""`pipeline upscale` through the CLI: run pictures and image files, caching, metadata, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_json

FAST = ["--upscaler", "realesr-animevideov3"]  # SRVGGNetCompact: the quick one of the three presets


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("up") / "outputs"
    result = run_json("explore", "a lighthouse at dusk", "--model", "tiny-random", "--size", "64", "--seeds", "1,2",
                      "--out", out)
    return out, Path(result["run_dir"])


def test_upscale_seeds_of_the_latest_run(run):
    out, run_dir = run
    result = run_json("upscale", "--seeds", "2", *FAST, "--out", out)
    assert result["computed"] == 1
    dest = run_dir / "upscale" / "seed-2.png"
    assert Path(result["items"][0]["path"]) == dest
    with Image.open(dest) as image:
        assert image.size == (256, 256)
        parameters = image.text["parameters"]
        record = json.loads(image.text["pipeline"])
        postprocessing, extras = image.text["postprocessing"], image.text["extras"]
    with Image.open(run_dir / "explore" / "seed-2.png") as source:
        assert parameters == source.text["parameters"]  # kept as it was, as A1111's Extras tab does
    # the upscale is recorded where A1111's Extras tab records it
    assert postprocessing == extras == "Postprocess upscale by: 4, Postprocess upscaler: R-ESRGAN AnimeVideo"
    assert record["seed"] == 2 and record["upscale"]["upscaler"] == "realesr-animevideov3"
    assert record["upscale"]["key"] == result["items"][0]["key"]
    data = json.loads((run_dir / "run.json").read_text())
    assert [c["seed"] for c in data["explore"]["pictures"]] == [1, 2]  # nothing lost
    assert data["upscale"]["pictures"][0]["path"] == "upscale/seed-2.png"

    assert data["upscale"]["pictures"][0]["upscaler"] == "realesr-animevideov3"  # "make it again" needs it

    again = run_json("upscale", "--seeds", "2", *FAST, "--out", out)
    assert again["computed"] == 0 and again["items"][0]["cached"] is True


def test_run_json_records_the_upscaler_as_upscaler_takes_it(tmp_path):
    """A preset by its name, a weights file elsewhere by its path: the command made from the record
    (`pipeline upscale --upscaler NAME`) finds the same weights and computes nothing."""
    import shutil

    from pipeline.models.upscaler_weights import resolve_weights

    out = tmp_path / "outputs"
    run_dir = Path(run_json("explore", "a lighthouse", "--model", "tiny-random", "--size", "64", "--seeds", "3",
                            "--out", out)["run_dir"])
    own = tmp_path / "mine" / "my-upscaler.safetensors"
    own.parent.mkdir()
    shutil.copy(resolve_weights("realesr-animevideov3").path, own)
    for upscaler in ("realesr-animevideov3", str(own)):
        run_json("upscale", "--run", run_dir, "--seeds", "3", "--upscaler", upscaler, "--out", out)
        recorded = json.loads((run_dir / "run.json").read_text())["upscale"]["pictures"][0]["upscaler"]
        assert recorded == upscaler
        again = run_json("upscale", "--run", run_dir, "--seeds", "3", "--upscaler", recorded, "--out", out)
        assert again["computed"] == 0


def test_scale_2_with_an_x4_model(run):
    out, run_dir = run
    result = run_json("upscale", "--seeds", "1", "--scale", "2", *FAST, "--out", out)
    with Image.open(result["items"][0]["path"]) as image:
        assert image.size == (128, 128)


def test_default_needs_refined_pictures(run):
    out, run_dir = run
    proc = run_cli("upscale", *FAST, "--out", out, check=False)
    assert proc.returncode == 2
    assert "has no refined pictures yet" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_seed_lists_the_run_seeds(run):
    out, _ = run
    proc = run_cli("upscale", "--seeds", "9", *FAST, "--out", out, check=False)
    assert proc.returncode == 2
    assert "seed 9 is not in run" in proc.stderr and "1, 2" in proc.stderr


def test_files_and_folders_keep_modes(tmp_path):
    rng = np.random.RandomState(0)
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.fromarray((rng.rand(24, 20) * 255).astype("uint8"), "L").save(folder / "gray.png")
    Image.fromarray((rng.rand(24, 20) * 65535).astype("uint16")).save(folder / "deep.png")
    rgba = np.concatenate([(rng.rand(16, 16, 3) * 255), np.full((16, 16, 1), 128)], axis=2).astype("uint8")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sprite.png")
    Image.fromarray((rng.rand(16, 24, 3) * 255).astype("uint8")).save(tmp_path / "photo.jpg", quality=90)
    (folder / "notes.txt").write_text("not an image")

    result = run_json("upscale", tmp_path / "sprite.png", tmp_path / "photo.jpg", folder, *FAST,
                      "--out", tmp_path / "o")
    paths = {Path(i["path"]).name: Path(i["path"]) for i in result["items"]}
    assert sorted(paths) == ["deep-x4.png", "gray-x4.png", "photo-x4.png", "sprite-x4.png"]
    expected = {"sprite-x4.png": ("RGBA", (64, 64)), "photo-x4.png": ("RGB", (96, 64)),
                "gray-x4.png": ("L", (80, 96)), "deep-x4.png": ("I;16", (80, 96))}
    for name, (mode, size) in expected.items():
        with Image.open(paths[name]) as image:
            assert (image.mode, image.size) == (mode, size), name
    with Image.open(paths["sprite-x4.png"]) as image:
        alpha = np.asarray(image)[..., 3]
    assert abs(float(alpha.mean()) - 128) < 3  # the alpha channel is upscaled, not dropped


@pytest.mark.parametrize("content, message", [
    (b"hello, not an image", "is not an image file"),
    (None, "does not exist"),
])
def test_bad_files_are_refused_with_one_sentence(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    proc = run_cli("upscale", path, *FAST, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "upscaled").exists() or not list((tmp_path / "o" / "upscaled").iterdir())


def test_truncated_image_is_refused(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), "uint8") + 90).save(path)
    path.write_bytes(path.read_bytes()[:60])
    proc = run_cli("upscale", path, *FAST, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "truncated" in proc.stderr or "not an image" in proc.stderr


def test_run_given_as_a_path_works_from_any_directory(run, tmp_path):
    out, run_dir = run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_json("upscale", "--run", run_dir, "--seeds", "1", *FAST, cwd=elsewhere)
    assert Path(result["items"][0]["path"]) == run_dir / "upscale" / "seed-1.png"
    assert not (elsewhere / "outputs").exists()  # the run's own output folder (and store) were used


def test_show_says_what_an_upscaled_picture_is_then_where_it_came_from(run):
    out, run_dir = run
    result = run_json("upscale", "--seeds", "1", *FAST, "--out", out)
    shown = run_cli("show", result["items"][0]["path"]).stdout
    lines = shown.splitlines()
    assert lines[0] == f"upscaled picture: 256x256, key {result['items'][0]['key'][:12]}"
    assert "upscaler: realesr-animevideov3, x4" in lines[1]
    assert "postprocessing (A1111 Extras): Postprocess upscale by: 4, Postprocess upscaler: R-ESRGAN AnimeVideo" in shown
    assert "extras (A1111 Extras): Postprocess upscale by: 4" in shown
    made_from = next(i for i, line in enumerate(lines) if line.startswith("made from: "))
    assert lines[made_from].startswith("made from: explore picture, 64x64, key ")
    assert made_from > 1 and lines[made_from + 1] == "a lighthouse at dusk"
    assert "{'" not in shown and "'tile': -1" not in shown  # no Python dict, no -1 placeholders


def test_refine_from_an_upscaled_picture_takes_its_prompt_not_the_postprocessing(run, tmp_path):
    out, run_dir = run
    upscaled = run_json("upscale", "--seeds", "1", *FAST, "--out", out)["items"][0]
    result = run_json("refine", "--from", upscaled["path"], "--size", "64", "--model", "tiny-random",
                      "--out", tmp_path / "o")
    with Image.open(result["items"][0]["path"]) as image:
        record = json.loads(image.text["pipeline"])
    assert record["prompt"] == "a lighthouse at dusk" and record["seed"] == 1
    assert "Postprocess" not in image.text["parameters"]


def test_cached_upscale_draws_no_bar_and_names_the_gallery(run):
    out, run_dir = run
    run_json("upscale", "--seeds", "1", *FAST, "--out", out)
    proc = run_cli("upscale", "--seeds", "1", *FAST, "--out", out)
    assert "upscale: 0 computed, 1 reused from the store" in proc.stdout
    assert "tile" not in proc.stderr and "0/" not in proc.stderr  # no empty progress bar
    assert f"gallery:       {run_dir / 'index.html'}" in proc.stdout


def test_postprocessing_text_quotes_values_as_a1111_does():
    from pipeline.core.images import a1111_postprocessing

    text = a1111_postprocessing({"Postprocess upscale by": 2.0, "Postprocess upscaler": "C:/w, new.pth",
                                 "Postprocess upscaler 2": None})
    assert text == 'Postprocess upscale by: 2, Postprocess upscaler: "C:/w, new.pth"'
