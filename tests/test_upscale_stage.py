"""`pipeline upscale` through the CLI: run pictures and image files, caching, metadata, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_json

FAST = ["--model", "realesr-animevideov3"]  # SRVGGNetCompact: the quick one of the three presets


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
    # the candidate's parameters are carried over, plus the upscale step
    assert parameters.startswith("a lighthouse at dusk\n")
    assert "Seed: 2" in parameters and "Postprocess upscaler: realesr-animevideov3" in parameters
    assert record["seed"] == 2 and record["upscale"]["upscaler"] == "realesr-animevideov3"
    data = json.loads((run_dir / "run.json").read_text())
    assert [c["seed"] for c in data["explore"]["pictures"]] == [1, 2]  # nothing lost
    assert data["upscale"]["pictures"][0]["path"] == "upscale/seed-2.png"

    again = run_json("upscale", "--seeds", "2", *FAST, "--out", out)
    assert again["computed"] == 0 and again["items"][0]["cached"] is True


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
