"""LoRA on the tiny model (CPU, fp32): the three file layouts, identity in the key, refusals.

Tolerance: a LoRA applied by the engine's hooks equals the tiny model with the LoRA merged into its
weights by hand (W + weight · alpha/rank · B·A) to within 2/255 on any pixel channel and 0.05/255 on
average (fp32: the two differ only in the order of float sums).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from lora_files import LAYOUTS, lora_tensors, scale_of, write_lora  # noqa: E402

from pipeline import Pipeline  # noqa: E402
from pipeline.errors import UserError  # noqa: E402

PROMPT = "a red fox in the snow"
SIZE = (128, 128)
ALPHA = 2.0  # rank 4: the kohya and ComfyUI layouts scale by 0.5
MAX_PIXEL, MEAN_PIXEL = 2.0, 0.05


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64)


@pytest.fixture(scope="module")
def tensors():
    return lora_tensors(rank=4, seed=7)


def _merged_by_hand(tmp_path, tensors, scale: float, weight: float, seeds=(3,)):
    """The tiny model with W += weight · scale · B·A merged into its weights, rendered without any LoRA."""
    import torch

    with Pipeline(model="tiny-random", out=tmp_path / "by-hand", dtype="fp32") as p:
        transformer = p.session.engine().pipe.transformer
        with torch.no_grad():
            for name, (down, up) in tensors.items():
                transformer.get_submodule(name).weight += weight * scale * (up @ down)
        return p.explore(PROMPT, seeds=list(seeds), size=SIZE)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lora_equals_the_model_merged_by_hand(tmp_path, tensors, layout):
    lora = write_lora(tmp_path / "loras" / f"style-{layout}.safetensors", layout, tensors, alpha=ALPHA)
    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        plain = p.explore(PROMPT, seeds=[3], size=SIZE)
        styled = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[(str(lora), 0.8)])
    reference = _merged_by_hand(tmp_path, tensors, scale_of(layout, tensors, ALPHA), 0.8)
    ours, theirs, base = pixels(styled.items[0].path), pixels(reference.items[0].path), pixels(plain.items[0].path)
    assert np.abs(ours - theirs).max() <= MAX_PIXEL and np.abs(ours - theirs).mean() <= MEAN_PIXEL
    assert np.abs(ours - base).mean() > 20 * MEAN_PIXEL, "the LoRA should visibly change the picture"
    assert styled.items[0].key != plain.items[0].key


def test_weight_zero_is_no_lora(tmp_path, tensors):
    lora = write_lora(tmp_path / "loras" / "style.safetensors", "kohya", tensors, alpha=ALPHA)
    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        styled = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[(str(lora), 1.0)])  # the LoRA is on the model now
        zero = p.explore(PROMPT, seeds=[4], size=SIZE, loras=[(str(lora), 0.0)])
    with Pipeline(model="tiny-random", out=tmp_path / "plain", dtype="fp32") as p:
        plain = p.explore(PROMPT, seeds=[4], size=SIZE)
    assert zero.items[0].key == plain.items[0].key
    assert np.array_equal(pixels(zero.items[0].path), pixels(plain.items[0].path))
    assert styled.computed == 1


def test_loras_lists_the_files_found(tmp_path, tensors, monkeypatch):
    weights = tmp_path / "weights"
    write_lora(weights / "loras" / "style.safetensors", "kohya", tensors, alpha=ALPHA)
    extra = write_lora(tmp_path / "more" / "character.safetensors", "diffusers", tensors)
    (tmp_path / "more" / "old.ckpt").write_bytes(b"not listed")
    monkeypatch.setenv("PIPELINE_WEIGHTS", str(weights))
    monkeypatch.setenv("PIPELINE_LORAS", str(tmp_path / "more"))
    with Pipeline(model="tiny-random", out=tmp_path / "out") as p:
        found = p.loras()
    assert [(f["name"], Path(f["folder"])) for f in found] == [
        ("style", weights / "loras"), ("character", tmp_path / "more")]
    assert found[1]["path"] == str(extra.resolve()) and found[1]["size"] == extra.stat().st_size


def test_names_resolve_in_the_folders(tmp_path, tensors, monkeypatch):
    weights = tmp_path / "weights"
    write_lora(weights / "loras" / "style.safetensors", "kohya", tensors, alpha=ALPHA)
    monkeypatch.setenv("PIPELINE_WEIGHTS", str(weights))
    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        by_name = p.explore(PROMPT, seeds=[3], size=SIZE, loras=["style:0.8"])
        by_pair = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[("style.safetensors", 0.8)])
    assert by_name.items[0].key == by_pair.items[0].key and by_pair.stored == 1
