"""The WebUI-style shim: get_generator().generate(...) -> (output_paths, gen_time, metadata)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from pipeline import UserError
from pipeline import compat
from pipeline.compat import get_generator


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIPELINE_MODEL", raising=False)
    monkeypatch.delenv("PIPELINE_STORE", raising=False)
    monkeypatch.setattr(compat, "_GENERATORS", {})
    return tmp_path


def test_generate_returns_paths_time_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(compat, "_now", lambda: "20260102030405")  # several pictures in one second
    generator = get_generator(model="tiny-random")
    paths, gen_time, metadata = generator.generate(prompt="a red fox in snow", negative_prompt="blurry", width=64,
                                                   height=64, num_inference_steps=4, cfg_scale=0.0, num_images=2,
                                                   seed=5)
    assert paths == ["outputs/outputs_20260102030405.png", "outputs/outputs_20260102030405_1.png"]
    for path in paths:
        with Image.open(tmp_path / path) as image:
            assert image.size == (64, 64)
            assert "Seed: " in image.text["parameters"]
    assert isinstance(gen_time, float) and gen_time > 0
    assert metadata["seed"] == 5 and metadata["seeds"] == [5, 6]
    assert (metadata["width"], metadata["height"], metadata["num_inference_steps"], metadata["cfg_scale"]) == (
        64, 64, 4, 0.0)
    assert (metadata["prompt"], metadata["negative_prompt"], metadata["num_images"]) == (
        "a red fox in snow", "blurry", 2)
    assert metadata["model"] == "tiny-random" and metadata["cached"] == [False, False]

    # the same call again: from the store, new files next to the old ones, same pictures
    again, _, meta2 = generator.generate(prompt="a red fox in snow", negative_prompt="blurry", width=64, height=64,
                                         num_inference_steps=4, num_images=2, seed=5)
    assert again == ["outputs/outputs_20260102030405_2.png", "outputs/outputs_20260102030405_3.png"]
    assert meta2["cached"] == [True, True] and meta2["keys"] == metadata["keys"]
    assert [Path(p).read_bytes() for p in again] == [Path(p).read_bytes() for p in paths]


def test_file_names_use_the_clock(tmp_path):
    paths, _, metadata = get_generator("tiny-random").generate(prompt="a cat", width=64, height=64, seed=-1)
    assert len(paths) == 1
    assert re.fullmatch(r"outputs/outputs_\d{14}(_\d+)?\.png", paths[0])
    assert 0 <= metadata["seed"] < 2**32  # -1: a random seed, reported
    assert (tmp_path / paths[0]).is_file()


def test_model_from_argument_environment_or_default(monkeypatch):
    assert get_generator().model == "Tongyi-MAI/Z-Image-Turbo"  # nothing loads until generate()
    monkeypatch.setenv("PIPELINE_MODEL", "tiny-random")
    assert get_generator().model == "tiny-random"
    assert get_generator() is get_generator()  # one generator (one loaded model) per model
    assert get_generator("Tongyi-MAI/Z-Image-Turbo").model == "Tongyi-MAI/Z-Image-Turbo"


def test_bad_arguments_are_user_errors():
    generator = get_generator("tiny-random")
    with pytest.raises(UserError, match="multiple of 16"):
        generator.generate(prompt="a cat", width=100, height=64)
    with pytest.raises(UserError, match="num_images"):
        generator.generate(prompt="a cat", width=64, height=64, num_images=0)
    with pytest.raises(UserError, match="prompt"):
        generator.generate(prompt=" ", width=64, height=64)
    assert not Path("outputs").exists() or not list(Path("outputs").glob("outputs_*.png"))
