"""The face detail pass on a real photo (scikit-image's bundled astronaut, 512²): the detector finds her face,
the pass re-draws that region only, and its picture says so in ADetailer's words."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from pipeline.core import masks
from pipeline.engines import faces

TINY = ["--model", "tiny-random", "--steps", "2", "--work", "128"]


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("faces") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


def test_the_detector_finds_the_face_of_the_bundled_photo(astronaut):
    with Image.open(astronaut) as image:
        found = faces.find_faces(np.asarray(image.convert("RGB")))
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    assert 160 <= x0 <= 190 and 60 <= y0 <= 90 and 250 <= x1 <= 280 and 150 <= y1 <= 180  # Eileen Collins' face
    assert found[0].score > 0.3
    assert faces.find_faces(np.zeros((128, 128, 3), np.uint8)) == []


def test_the_detail_pass_changes_only_the_face(astronaut, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("inpaint", astronaut, "--faces", "--prompt", "a woman in a space suit", *TINY, "--out", out,
                   "--json")
    item = json.loads(proc.stdout)["items"][0]
    with Image.open(item["path"]) as image:
        after = np.asarray(image.convert("RGB"))
        text, record = image.text["parameters"], json.loads(image.text["pipeline"])
    with Image.open(astronaut) as image:
        before = np.asarray(image.convert("RGB"))
    (face,) = record["faces"]
    weight = masks.feather(masks.box_mask((512, 512), tuple(face["box"])), 4)
    assert np.array_equal(after[weight == 0], before[weight == 0])  # everything but the face: the photo's bytes
    assert (after[weight == 1] != before[weight == 1]).any()
    assert record["strength"] == 0.35 and record["detector"].startswith("dlib_hog_face@dlib-")
    for key in ("ADetailer model: dlib_hog_face", "ADetailer confidence: 0.3", "ADetailer denoising strength: 0.35",
                "ADetailer mask blur: 4", "ADetailer inpaint only masked: True"):
        assert key in text
    x0, y0, x1, y1 = face["box"]
    assert f"ADetailer inpaint padding: {round(0.75 * max(x1 - x0, y1 - y0))}," in text  # crop factor 2.5
    mask = Path(item["path"]).with_name(Path(item["path"]).stem + "-mask.png")
    with Image.open(mask) as image:
        assert masks.bbox(np.asarray(image) > 0) == tuple(face["box"])


def test_faces_without_the_detector_installed_is_one_sentence(astronaut, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # as if `pip install 'pipeline[faces]'` had not been run
    proc = run_cli("inpaint", astronaut, "--faces", "--prompt", "a face", *TINY, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2
    assert "--faces needs the face detector, which is not installed: pip install 'pipeline[faces]'" in proc.stderr
    assert not (tmp_path / "o" / "inpainted").exists()


def test_upscale_detail_faces_redraws_the_face_of_the_upscaled_picture(astronaut, tmp_path):
    with Image.open(astronaut) as image:
        image.crop((100, 20, 356, 276)).save(tmp_path / "crop.png")  # her face, 256²
    out = tmp_path / "out"
    proc = run_cli("upscale", tmp_path / "crop.png", "--scale", "2", "--detail-faces", "0.35", "--face-prompt",
                   "a smiling woman", "--face-size", "128", "--model", "tiny-random", "--out", out, "--json",
                   "--upscaler", "realesr-animevideov3")  # the face pass is tested, not x4plus (20 s of it on a CPU)
    result = json.loads(proc.stdout)
    (upscaled,), (fixed,) = result["items"], result["fixes"]
    with Image.open(fixed["path"]) as image:
        record, after = json.loads(image.text["pipeline"]), np.asarray(image.convert("RGB"))
    with Image.open(upscaled["path"]) as image:
        before = np.asarray(image.convert("RGB"))
    assert Path(fixed["path"]).parent == out / "inpainted" and record["strength"] == 0.35
    assert record["prompt"] == "a smiling woman" and len(record["faces"]) == 1
    weight = masks.feather(masks.box_mask((512, 512), tuple(record["faces"][0]["box"])), 4)
    assert np.array_equal(after[weight == 0], before[weight == 0])


def test_detail_faces_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    proc = run_cli("upscale", tmp_path / "x.png", "--detail-faces", "1.5", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "--detail-faces must be above 0 and at most 1" in proc.stderr
    monkeypatch.setitem(sys.modules, "dlib", None)
    proc = run_cli("upscale", tmp_path / "x.png", "--detail-faces", "0.3", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "pip install 'pipeline[faces]'" in proc.stderr
    assert not (tmp_path / "o").exists()
