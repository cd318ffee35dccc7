"""ControlNet files: where they are found, what each one is, and the refusals (no torch needed for most).

The tiny ``ZImageControlNetModel`` (models/tiny_controlnet.py) saved as a diffusers folder and as one file in
the key layout alibaba-pai ships; foreign ControlNets are headers with their families' real key names.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import cli_env, run_cli  # noqa: E402

from pipeline.core.errors import UserError  # noqa: E402
from pipeline.models import controlnets  # noqa: E402

UNION = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-2602-8steps"
LITE = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-lite-2602-8steps"
TILE = "Z-Image-Turbo-Fun-Controlnet-Tile-2.1-2601-8steps"


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory) -> Path:
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file

    return save_tiny_controlnet_file(tmp_path_factory.mktemp("cn") / f"{UNION}.safetensors")


def _copy(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    return dest


def _header_file(path: Path, shapes: dict[str, tuple]) -> Path:
    """A safetensors file with these tensor names and shapes (zeros, float16)."""
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(v, np.float16) for k, v in shapes.items()}, str(path))
    return path


@pytest.fixture
def weights(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv("PIPELINE_WEIGHTS", str(folder))
    monkeypatch.delenv("PIPELINE_CONTROLNETS", raising=False)
    return folder


def test_a_name_in_weights_controlnet_and_the_default_for_each_type(weights, tiny_file):
    _copy(tiny_file, weights / "controlnet" / f"{LITE}.safetensors")
    _copy(tiny_file, weights / "controlnet" / f"{UNION}.safetensors")
    _copy(tiny_file, weights / "controlnet" / f"{TILE}.safetensors")
    assert controlnets.resolve(None, "canny").name == UNION  # the full 8-step Union before the lite one
    assert controlnets.resolve(None, "tile").name == TILE
    assert controlnets.resolve(LITE, "gray").name == LITE
    assert controlnets.resolve(f"{LITE}.safetensors", "map").name == LITE
    with pytest.raises(UserError, match="did you mean"):
        controlnets.resolve(LITE[:-3], "canny")


def test_union_asked_to_do_tile_names_the_tile_file(weights, tiny_file):
    _copy(tiny_file, weights / "controlnet" / f"{UNION}.safetensors")
    with pytest.raises(UserError, match=f"cannot do tile.*{controlnets.TILE_FILE}"):
        controlnets.resolve(None, "tile")
    with pytest.raises(UserError, match=controlnets.TILE_FILE):
        controlnets.resolve(UNION, "tile")


def test_none_found_says_what_to_get_and_where(weights):
    with pytest.raises(UserError, match=f"no ControlNet found in .*{controlnets.UNION_FILE}"):
        controlnets.resolve(None, "canny")


def test_a_comfyui_install_and_a_hugging_face_cache(tmp_path, weights, tiny_file, monkeypatch):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "diffusion_models").mkdir(parents=True)
    _copy(tiny_file, comfy / "models" / "controlnet" / f"{UNION}.safetensors")
    _copy(tiny_file, comfy / "models" / "model_patches" / f"{TILE}.safetensors")
    assert controlnets.resolve(None, "canny", model=str(comfy)).path.parent.name == "controlnet"
    assert controlnets.resolve(None, "tile", model=str(comfy)).path.parent.name == "model_patches"

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    repo = cache / "models--alibaba-pai--Z-Image-Turbo-Fun-Controlnet-Union-2.1"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    for name in (UNION, TILE):
        blob = _copy(tiny_file, repo / "blobs" / name)
        link = repo / "snapshots" / commit / f"{name}.safetensors"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    tile = controlnets.resolve(controlnets.UNION_REPO, "tile")
    assert tile.name == TILE and tile.fingerprint == f"hub:{controlnets.UNION_REPO}@{commit}/{TILE}.safetensors"
    assert controlnets.resolve(controlnets.UNION_REPO, "canny").name == UNION
    with pytest.raises(UserError, match="not in the local Hugging Face cache.*hf download"):
        controlnets.resolve("alibaba-pai/Other-Controlnet", "canny")


def test_the_fingerprint_follows_the_file_not_its_folder(tmp_path, tiny_file):
    a = _copy(tiny_file, tmp_path / "a" / f"{UNION}.safetensors")
    b = _copy(tiny_file, tmp_path / "b" / f"{UNION}.safetensors")
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    assert controlnets.resolve(str(a), "canny").fingerprint == controlnets.resolve(str(b), "canny").fingerprint
    os.utime(b, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))  # re-downloaded, say
    assert controlnets.resolve(str(a), "canny").fingerprint != controlnets.resolve(str(b), "canny").fingerprint


def test_the_config_read_from_the_header_of_each_real_layout(tmp_path):
    """What the header says: 2.1 (15 control layers, a control noise refiner with before_proj), lite (3), 1.0 (6)."""
    def real(name, layers, refiner=True):
        shapes = {controlnets.EMBEDDER: (3840, 132)}
        shapes.update({f"control_layers.{i}.after_proj.bias": (1,) for i in range(layers)})
        if refiner:
            shapes.update({f"control_noise_refiner.{i}.before_proj.bias": (1,) for i in range(2)})
            shapes["control_noise_refiner.0.before_proj.weight"] = (1, 1)
        return controlnets.resolve(str(_header_file(tmp_path / f"{name}.safetensors", shapes)), "canny")

    full = controlnets.config_for(real(UNION, 15))
    assert full["control_layers_places"] == list(range(0, 30, 2)) and full["control_in_dim"] == 33
    assert full["add_control_noise_refiner"] == "control_noise_refiner" and full["dim"] == 3840
    assert controlnets.config_for(real(LITE, 3))["control_layers_places"] == [0, 14, 28]
    old = controlnets.config_for(real("Z-Image-Turbo-Fun-Controlnet-Union", 6, refiner=False))
    assert old["control_layers_places"] == [0, 5, 10, 15, 20, 25] and old["add_control_noise_refiner"] is None


SDXL = {"controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3), "add_embedding.linear_1.weight": (1280, 2816),
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight": (640, 2048)}
SD15 = {"control_model.input_hint_block.0.weight": (16, 3, 3, 3),
        "control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)}
FLUX = {"controlnet_x_embedder.weight": (3072, 64), "transformer_blocks.0.attn.to_q.weight": (4, 4),
        "single_transformer_blocks.0.proj_out.weight": (4, 4)}
LORA = {"diffusion_model.layers.0.attention.to_q.lora_A.weight": (4, 64)}
TRANSFORMER = {"x_embedder.weight": (64, 64), "final_layer.linear.weight": (64, 64)}


@pytest.mark.parametrize("shapes, said", [(SDXL, "made for SDXL"), (SD15, "made for SD 1.5"),
                                          (FLUX, "made for Flux"), (LORA, "a LoRA"),
                                          (TRANSFORMER, "a Z-Image transformer"), ({"foo": (1,)}, "not a Z-Image")])
def test_a_foreign_file_is_refused_saying_what_it_is(tmp_path, shapes, said):
    entry = controlnets.resolve(str(_header_file(tmp_path / "control.safetensors", shapes)), "canny")
    with pytest.raises(UserError, match=said):
        controlnets.config_for(entry)


def test_a_foreign_diffusers_folder_is_refused(tmp_path):
    folder = tmp_path / "controlnet-canny-sdxl-1.0"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    with pytest.raises(UserError, match="SDXL or SD 1.5"):
        controlnets.config_for(controlnets.resolve(str(folder), "canny"))


def test_pipeline_weights_lists_the_controlnets(tmp_path, tiny_file):
    weights = tmp_path / "weights"
    _copy(tiny_file, weights / "controlnet" / f"{TILE}.safetensors")
    result = run_cli("weights", env=cli_env(PIPELINE_WEIGHTS=str(weights)))
    assert "ControlNets (--control-model NAME)" in result.stdout
    line = next(line for line in result.stdout.splitlines() if TILE in line)
    assert "tile" in line and "tiny-random" in line
