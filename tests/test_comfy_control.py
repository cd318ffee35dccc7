"""The ComfyUI graph of a picture made with a ControlNet: ComfyUI's core runs the Z-Image Fun ControlNet as a model
patch (ModelPatchLoader + ZImageFunControlnet on the MODEL) with the map kept in the run's control/ folder loaded
as its image; checked against ComfyUI's node definitions as every other picture's (test_comfy_graph's checks)."""
from __future__ import annotations

import pipeline.core.comfy_kinds  # noqa: F401  (registers our kinds' graph builders, as the writer does)

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import cli_env, run_json
from test_comfy_graph import by_class, check_graph, check_workflow, chunks, source

from pipeline.core.comfy_graph import comfy_prompt
from pipeline.core.comfy_workflow import comfy_workflow

UNION = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-2602-8steps"
CONTROL = {"map": "eee3093e6a2bede8166a267bee24570a8e390ad5a2e82afb0dfdb0106a6fa8e8", "type": "canny",
           "strength": 0.75, "start": 0.0, "end": 1.0, "model": f"controlnet:{UNION}:215556295ce6bb04"}


def explore_record(**extra) -> dict:
    return {"kind": "explore", "prompt": "a fox", "negative": "", "width": 128, "height": 128, "steps": 8,
            "guidance": 0.0, "seed": 3, "model": "tiny", **extra}


def test_a_control_patches_the_model_with_the_kept_map():
    prompt = comfy_prompt(explore_record(control=CONTROL, control_name=UNION,
                                         loras=[{"name": "style", "weight": 0.8}]))
    check_graph(prompt)
    (loader,) = by_class(prompt, "ModelPatchLoader")
    (patched,) = by_class(prompt, "ZImageFunControlnet")
    assert loader["name"] == f"{UNION}.safetensors" and patched["strength"] == 0.75
    assert source(prompt, patched["image"])["inputs"]["image"] == "eee3093e6a2bede8.png"  # control/<digest[:16]>.png
    assert source(prompt, patched["model"])["class_type"] == "LoraLoaderModelOnly"
    assert source(prompt, patched["vae"])["class_type"] == "VAELoader"
    (sampling,) = by_class(prompt, "ModelSamplingAuraFlow")
    assert source(prompt, sampling["model"])["class_type"] == "ZImageFunControlnet"
    (sampler,) = by_class(prompt, "KSampler")
    assert source(prompt, sampler["model"])["class_type"] == "ModelSamplingAuraFlow"
    # the UI graph: the optional inpaint_image and mask inputs are there, unlinked
    workflow = comfy_workflow(prompt)
    node = next(n for n in workflow["nodes"] if n["type"] == "ZImageFunControlnet")
    assert [(i["name"], i["link"] is None) for i in node["inputs"]] == [
        ("model", False), ("model_patch", False), ("vae", False), ("image", False), ("inpaint_image", True),
        ("mask", True)]
    assert node["widgets_values"] == [0.75]


def test_no_control_no_patch_and_the_name_from_the_fingerprint():
    assert by_class(comfy_prompt(explore_record()), "ZImageFunControlnet") == []
    prompt = comfy_prompt(explore_record(control=CONTROL))  # no control_name: the fingerprint's NAME
    assert by_class(prompt, "ModelPatchLoader")[0]["name"] == f"{UNION}.safetensors"


def test_a_detail_pass_runs_its_own_control_and_not_the_sources():
    tile = {"type": "tile", "strength": 0.85, "start": 0.0, "end": 1.0, "model": "Z-Image-Turbo-Fun-Controlnet-Tile",
            "fingerprint": "controlnet:Z-Image-Turbo-Fun-Controlnet-Tile:0123", "map": "ab" * 32,
            "path": "control/abababababababab.png"}
    record = explore_record(control=CONTROL, control_name=UNION, upscale={
        "upscaler": "realesr-animevideov3", "scale": 2, "width": 256, "height": 256,
        "detail": {"strength": 0.4, "steps": 8, "guidance": 0.0, "seed": 9, "prompt": "a fox", "control": tile}})
    prompt = comfy_prompt(record)
    check_graph(prompt)
    first, detail = by_class(prompt, "KSampler")
    explore_model = source(prompt, source(prompt, first["model"])["inputs"]["model"])["inputs"]
    assert source(prompt, explore_model["image"])["inputs"]["image"] == "eee3093e6a2bede8.png"
    detail_model = source(prompt, detail["model"])
    assert detail_model["class_type"] == "ZImageFunControlnet" and detail_model["inputs"]["strength"] == 0.85
    assert source(prompt, detail_model["inputs"]["image"])["inputs"]["image"] == "abababababababab.png"
    assert source(prompt, detail_model["inputs"]["model_patch"])["inputs"]["name"] == \
        "Z-Image-Turbo-Fun-Controlnet-Tile.safetensors"
    under = source(prompt, detail_model["inputs"]["model"])  # the model without the explore pass's control
    assert under["class_type"] == "ModelSamplingAuraFlow" and source(prompt, under["inputs"]["model"])["class_type"] \
        == "UNETLoader"


def test_a_hires_refine_with_control_runs_its_first_pass_without_it():
    record = explore_record(kind="refine", mode="hires", width=256, height=256, strength=0.5, control=CONTROL,
                            control_name=UNION, first_pass={"width": 128, "height": 128, "steps": 8, "guidance": 0.0})
    prompt = comfy_prompt(record)
    check_graph(prompt)
    first, second = by_class(prompt, "KSampler")
    assert source(prompt, source(prompt, first["model"])["inputs"]["model"])["class_type"] == "UNETLoader"
    assert source(prompt, source(prompt, second["model"])["inputs"]["model"])["class_type"] == "ZImageFunControlnet"


@pytest.fixture(scope="module")
def controlled(tmp_path_factory):
    """Candidate 3 of a run made with a canny control on the tiny model and a tiny Union ControlNet."""
    import numpy as np
    from PIL import Image

    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file

    root = tmp_path_factory.mktemp("comfy_control")
    save_tiny_controlnet_file(root / "weights" / "controlnet" / f"{UNION}.safetensors", dtype="fp32")
    layout = np.zeros((128, 128, 3), np.uint8)
    layout[:64, :64], layout[64:, 64:] = (230, 40, 40), (240, 240, 240)
    Image.fromarray(layout).save(root / "layout.png")
    env = cli_env(PIPELINE_WEIGHTS=str(root / "weights"))
    made = run_json("explore", "a fox", "--model", "tiny-random", "--size", "128", "--seeds", "3", "--steps", "2",
                    "--control", root / "layout.png", "--control-type", "canny", "--out", root / "out", env=env)
    return Path(made["items"][0]["path"]), Path(made["run_dir"])


def test_a_picture_made_with_control_loads_the_map_its_run_kept(controlled):
    path, run_dir = controlled
    prompt, workflow, record, _ = chunks(path)
    check_graph(prompt)
    check_workflow(workflow, prompt)
    (patched,) = by_class(prompt, "ZImageFunControlnet")
    assert patched["strength"] == record["control"]["strength"]
    (loader,) = by_class(prompt, "ModelPatchLoader")
    assert loader["name"] == f"{record['control_name']}.safetensors" == f"{UNION}.safetensors"
    kept = source(prompt, patched["image"])["inputs"]["image"]
    assert (run_dir / "control" / kept).is_file()
