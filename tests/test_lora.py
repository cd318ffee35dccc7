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


def test_two_loras_are_both_applied(tmp_path, tensors):
    other = lora_tensors(rank=2, seed=11)
    first = write_lora(tmp_path / "a.safetensors", "diffusers", tensors)
    second = write_lora(tmp_path / "b.safetensors", "kohya", other, alpha=1.0)  # rank 2, alpha 1: scale 0.5
    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        both = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[(str(first), 0.7), (str(second), 0.6)])
        only_first = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[(str(first), 0.7)])
    merged = {name: (tensors[name], other.get(name)) for name in tensors}
    import torch

    with Pipeline(model="tiny-random", out=tmp_path / "by-hand", dtype="fp32") as p:
        transformer = p.session.engine().pipe.transformer
        with torch.no_grad():
            for name, ((down, up), second_pair) in merged.items():
                delta = 0.7 * (up @ down) + (0.6 * 0.5 * (second_pair[1] @ second_pair[0]) if second_pair else 0)
                transformer.get_submodule(name).weight += delta
        reference = p.explore(PROMPT, seeds=[3], size=SIZE)
    ours, theirs = pixels(both.items[0].path), pixels(reference.items[0].path)
    assert np.abs(ours - theirs).max() <= MAX_PIXEL and np.abs(ours - theirs).mean() <= MEAN_PIXEL
    assert np.abs(ours - pixels(only_first.items[0].path)).mean() > 20 * MEAN_PIXEL


# ---------------------------------------------------------------- memory profiles, int8, compile

def _engine(profile: str, weights_dtype: str | None = None):
    """The tiny model's engine with ``profile`` applied even on the CPU (``profiles_on_cpu``: low streams
    the transformer block by block through diffusers' group offload, as on a GPU)."""
    from diffusers import ZImagePipeline

    from pipeline.models import tiny
    from pipeline.engines.memory import EngineOptions
    from pipeline.engines.zimage import ZImageEngine

    parts = tiny.build_tiny_components()
    pipe = ZImagePipeline(transformer=parts["transformer"], vae=parts["vae"], scheduler=parts["scheduler"],
                          text_encoder=None, tokenizer=None)
    return ZImageEngine.from_pipeline(pipe, device="cpu", dtype="fp32", memory=profile, fingerprint="tiny",
                                      text_encoder_loader=lambda: (parts["tokenizer"], parts["text_encoder"]),
                                      options=EngineOptions(weights_dtype=weights_dtype), profiles_on_cpu=True)


def test_the_lora_changes_pictures_alike_under_every_profile_and_int8(tmp_path, tensors):
    """delta = picture with the LoRA − picture without, per setting. Under low (block streaming) and
    balanced the delta equals full's to 1/255 per pixel; under int8 weights (the LoRA added to the
    Int8Linear's output, nothing re-quantized) it stays within 10 % of full's mean delta, while the
    delta itself is far larger than that."""
    from pipeline.models.loras import digests
    from pipeline.engines.quantize import is_quantized
    from pipeline.core.jobs import LoraUse, RenderJob, render_fields

    path = write_lora(tmp_path / "style.safetensors", "kohya", tensors, alpha=ALPHA)
    sha = digests(path)[0]

    def job(loras=None):
        return RenderJob(**render_fields(model="tiny", prompt=PROMPT, negative="", width=128, height=128, steps=4,
                                         guidance=0.0, seed=3, dtype="fp32", loras=loras))

    deltas = {}
    for name, (profile, weights) in {"full": ("full", None), "balanced": ("balanced", None), "low": ("low", None),
                                     "int8": ("full", "int8")}.items():
        engine = _engine(profile, weights)
        engine.lora_paths[sha] = path
        plain = np.asarray(engine.txt2img([job()])[0], dtype=np.float64)
        styled = np.asarray(engine.txt2img([job((LoraUse(sha, 0.8),))])[0], dtype=np.float64)
        again = np.asarray(engine.txt2img([job()])[0], dtype=np.float64)  # switched off without a reload
        assert np.array_equal(plain, again), name
        assert engine.profile == profile and is_quantized(engine.pipe.transformer) == (weights == "int8")
        deltas[name] = styled - plain
    size = np.abs(deltas["full"]).mean()
    assert size > 1.0
    for name in ("balanced", "low"):
        assert np.abs(deltas[name] - deltas["full"]).max() <= 1.0 + 1e-9, name
    assert np.abs(deltas["int8"] - deltas["full"]).mean() <= 0.1 * size


def test_compile_applies_and_switches_loras(tmp_path, tensors, monkeypatch):
    """--compile (torch's aot_eager backend here, as tests/test_quantize.py does): the same pictures as
    without compiling, with the LoRA on, then off again."""
    import torch

    from pipeline.engines import zimage

    try:
        torch.compile(lambda x: x + 1, backend="aot_eager")(torch.ones(2))
    except Exception as err:  # noqa: BLE001 - torch.compile unusable on this interpreter
        pytest.skip(f"torch.compile is unusable here: {err}")
    monkeypatch.setattr(zimage, "COMPILE_BACKEND", "aot_eager")
    path = write_lora(tmp_path / "style.safetensors", "comfyui", tensors, alpha=ALPHA)
    results = {}
    for compiled in (False, True):
        with Pipeline(model="tiny-random", out=tmp_path / f"out-{compiled}", dtype="fp32", compile=compiled) as p:
            results[compiled] = [p.explore(PROMPT, seeds=[3], size=SIZE, loras=loras).items[0].path
                                 for loras in ([(str(path), 0.8)], None, [(str(path), 0.5)])]
    for eager, compiled in zip(results[False], results[True]):
        assert np.abs(pixels(eager) - pixels(compiled)).max() <= MAX_PIXEL


def test_variance_and_a_lora_together(tmp_path, tensors):
    path = write_lora(tmp_path / "style.safetensors", "diffusers", tensors)
    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        noisy = p.explore(PROMPT, seeds=[3], size=SIZE, variance=0.5)
        both = p.explore(PROMPT, seeds=[3], size=SIZE, variance=0.5, loras=[(str(path), 0.8)])
        styled = p.explore(PROMPT, seeds=[3], size=SIZE, loras=[(str(path), 0.8)])
    keys = {noisy.items[0].key, both.items[0].key, styled.items[0].key}
    assert len(keys) == 3
    assert np.abs(pixels(both.items[0].path) - pixels(noisy.items[0].path)).mean() > 20 * MEAN_PIXEL
    assert np.abs(pixels(both.items[0].path) - pixels(styled.items[0].path)).max() > 0  # the noise is there too
