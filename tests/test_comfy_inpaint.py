"""The ComfyUI graph of an inpaint picture (a drawn mask, an outpaint, the face pass), made on the tiny model and
checked against ComfyUI's node definitions as every other picture's (test_comfy_graph's checks): LoadImage of the
parent and LoadImageMask of the mask kept beside the picture, InpaintModelConditioning with its noise mask, one
KSampler per rendered region at the steps we ran, and ImageCompositeMasked pasting each region back at its box."""
from __future__ import annotations

import pipeline.core.comfy_kinds  # noqa: F401  (registers our kinds' graph builders, as the writer does)

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_cli, run_json
from test_comfy_graph import by_class, check_graph, check_workflow, chunks, schedule, source

from pipeline.core import masks

TINY = ["--model", "tiny-random", "--steps", "2", "--work", "128"]


@pytest.fixture(scope="module")
def fixes(tmp_path_factory):
    """A corner fix and an outpaint of candidate 1 (128²) of run fox, and the face pass on the astronaut photo."""
    from skimage import data

    root = tmp_path_factory.mktemp("comfy_inpaint")
    out = root / "outputs"
    run_json("explore", "a red fox in snow", "--model", "tiny-random", "--size", "128", "--seeds", "1", "--steps", "2",
             "--out", out, "--run", "fox")
    corner = root / "corner.png"
    Image.fromarray(masks.box_mask((128, 128), (88, 8, 120, 40)).astype(np.uint8) * 255).save(corner)
    fixed = run_json("inpaint", "--seeds", "1", "--mask", corner, *TINY, "--out", out)
    wider = run_json("inpaint", "--seeds", "1", "--extend", "left:32", *TINY, "--out", out)
    photo = root / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    faces = run_json("inpaint", photo, "--faces", "--prompt", "a woman in a space suit", *TINY, "--out", out)
    return {name: Path(result["items"][0]["path"]) for name, result in
            (("corner", fixed), ("outpaint", wider), ("faces", faces))}


def region_chain(prompt: dict, sampler: dict) -> tuple[dict, dict, dict]:
    """(InpaintModelConditioning, its pixels' node, its mask's node) behind a KSampler."""
    encoded = source(prompt, sampler["latent_image"])
    assert encoded["class_type"] == "InpaintModelConditioning"
    assert sampler["latent_image"][1] == 2 and sampler["positive"] == [sampler["latent_image"][0], 0]
    assert sampler["negative"] == [sampler["latent_image"][0], 1]
    inputs = encoded["inputs"]
    return inputs, source(prompt, inputs["pixels"]), source(prompt, inputs["mask"])


def test_a_fix_is_the_parent_and_its_kept_mask_through_comfyuis_inpaint_nodes(fixes):
    from pipeline.core.images import img2img_steps_run

    path = fixes["corner"]
    prompt, workflow, record, _ = chunks(path)
    check_graph(prompt)
    check_workflow(workflow, prompt)
    (load,) = by_class(prompt, "LoadImage")
    (mask,) = by_class(prompt, "LoadImageMask")
    assert load["image"] == "seed-1.png" and (path.parents[1] / "explore" / load["image"]).is_file()
    assert (mask["image"], mask["channel"]) == ("seed-1i1-mask.png", "red") and path.with_name(mask["image"]).is_file()
    (sampler,) = by_class(prompt, "KSampler")
    assert schedule(sampler) == (img2img_steps_run(record["steps"], record["strength"]), record["steps"])
    assert sampler["seed"] == record["seed"] and sampler["cfg"] == record["guidance"] + 1
    encoded, pixels, region = region_chain(prompt, sampler)
    assert encoded["noise_mask"] is True
    ((box, size),) = [(r["box"], r["size"]) for r in record["renders"]]
    x0, y0, x1, y1 = box
    # the crop our pass rendered: the box cut from the parent, scaled to the working size
    assert pixels["class_type"] == "ImageScale" and [pixels["inputs"][k] for k in ("width", "height")] == size
    crop = source(prompt, pixels["inputs"]["image"])["inputs"]
    assert (crop["x"], crop["y"], crop["width"], crop["height"]) == (x0, y0, x1 - x0, y1 - y0)
    assert source(prompt, crop["image"])["class_type"] == "LoadImage"
    # the model re-draws the mask grown by the blur band, cut to the box
    assert region["class_type"] == "CropMask" and (region["inputs"]["x"], region["inputs"]["y"]) == (x0, y0)
    grown = source(prompt, region["inputs"]["mask"])
    assert grown["class_type"] == "GrowMask" and grown["inputs"]["expand"] == record["blur"]
    # pasted back at the box through the feathered weight: the mask grown by half the band, then blurred by the rest
    (paste,) = by_class(prompt, "ImageCompositeMasked")
    assert (paste["x"], paste["y"], paste["resize_source"]) == (x0, y0, False)
    back = source(prompt, paste["source"])["inputs"]
    assert (back["width"], back["height"]) == (x1 - x0, y1 - y0)
    assert source(prompt, back["image"])["class_type"] == "VAEDecode"
    assert source(prompt, paste["destination"])["class_type"] == "LoadImage"
    (blur,) = by_class(prompt, "ImageBlur")
    half = [g["expand"] for g in by_class(prompt, "GrowMask") if g is not grown["inputs"]]
    assert half[0] + blur["blur_radius"] == record["blur"]
    (save,) = by_class(prompt, "SaveImage")
    assert source(prompt, save["images"])["class_type"] == "ImageCompositeMasked"
    assert by_class(prompt, "VAEEncodeForInpaint") == []  # it greys the masked pixels: not what our pass does
    shown = run_cli("show", path).stdout
    assert f"ComfyUI graph: {len(prompt)} nodes and its workflow (UI graph)" in shown


def test_an_outpaint_pads_the_parent_with_comfyuis_outpaint_node(fixes):
    prompt, workflow, record, _ = chunks(fixes["outpaint"])
    check_graph(prompt)
    check_workflow(workflow, prompt)
    (pad,) = by_class(prompt, "ImagePadForOutpaint")
    assert (pad["left"], pad["top"], pad["right"], pad["bottom"], pad["feathering"]) == (32, 0, 0, 0, 0)
    assert (record["width"], record["height"]) == (160, 128)
    (mask,) = by_class(prompt, "LoadImageMask")
    with Image.open(fixes["outpaint"].with_name(mask["image"])) as kept:
        assert kept.size == (160, 128)  # the mask is on the canvas: the new border
    (crop,) = by_class(prompt, "ImageCrop")
    assert source(prompt, crop["image"])["class_type"] == "ImagePadForOutpaint"


def test_an_outpaint_off_comfyuis_step_of_8_is_placed_on_a_grey_canvas():
    from pipeline.core.comfy_graph import comfy_prompt
    from pipeline.core.comfy_workflow import comfy_workflow

    record = {"kind": "inpaint", "prompt": "a fox", "negative": "", "width": 148, "height": 128, "steps": 8,
              "guidance": 0.0, "seed": 3, "model": "tiny", "strength": 0.75, "area": "whole", "blur": 0,
              "extend": "left:20", "inpaint": "1i2", "parent_name": "1", "parent_stage": "explore",
              "renders": [{"box": [0, 0, 148, 128], "size": [160, 128]}]}
    prompt = comfy_prompt(record)
    check_graph(prompt)
    check_workflow(comfy_workflow(prompt), prompt)  # the placing composite's mask input left unlinked
    (empty,) = by_class(prompt, "EmptyImage")
    placed, pasted = by_class(prompt, "ImageCompositeMasked")
    assert (empty["width"], empty["height"], placed["x"], placed["y"]) == (148, 128, 20, 0)
    assert by_class(prompt, "ImageCrop") == [] and by_class(prompt, "ImageScale") == []  # whole: the canvas as is
    assert by_class(prompt, "GrowMask") == [] and pasted["mask"] == [next(k for k, n in prompt.items()
                                                                         if n["class_type"] == "LoadImageMask"), 0]


def test_the_face_pass_redraws_each_face_box_at_its_strength(fixes):
    from pipeline.core.images import img2img_steps_run

    path = fixes["faces"]
    prompt, workflow, record, text = chunks(path)
    check_graph(prompt)
    check_workflow(workflow, prompt)
    assert "ADetailer model: dlib_hog_face" in text and record["strength"] == 0.35
    (load,) = by_class(prompt, "LoadImage")
    (mask,) = by_class(prompt, "LoadImageMask")
    assert load["image"] == "astronaut.png"
    assert mask["image"] == f"{path.stem}-mask.png" and path.with_name(mask["image"]).is_file()
    samplers = by_class(prompt, "KSampler")
    assert len(samplers) == len(record["renders"]) == len(record["faces"]) == 1
    (sampler,) = samplers
    assert schedule(sampler) == (img2img_steps_run(record["steps"], 0.35), record["steps"]) == (1, 2)
    assert sampler["seed"] == record["seed"]
    _, pixels, region = region_chain(prompt, sampler)
    (face,) = record["faces"]
    x0, y0, x1, y1 = record["renders"][0]["box"]
    fx0, fy0, fx1, fy1 = face["box"]
    assert x0 <= fx0 < fx1 <= x1 and y0 <= fy0 < fy1 <= y1  # the crop around the face (crop factor)
    assert (region["inputs"]["x"], region["inputs"]["y"], region["inputs"]["width"]) == (x0, y0, x1 - x0)
    assert pixels["class_type"] == "ImageScale"  # the crop at the working size (--work 128), as our pass ran it
    assert [pixels["inputs"]["width"], pixels["inputs"]["height"]] == record["renders"][0]["size"]
    (paste,) = by_class(prompt, "ImageCompositeMasked")
    assert (paste["x"], paste["y"]) == (x0, y0)
    assert json.loads(json.dumps(prompt)) == prompt  # the chunk is plain JSON
