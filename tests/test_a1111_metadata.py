"""Picture metadata exactly as AUTOMATIC1111 writes and reads it.

The reader below is A1111's own, re-implemented from its source: ``quote``/``unquote`` and
``re_param_code`` from ``modules/infotext_utils.py``, the settings-line rule of
``parse_generation_parameters`` (the last line holds the settings when at least three match), and
the hires-fix target size of ``StableDiffusionProcessingTxt2Img.calculate_target_resolution``
(``modules/processing.py``). If our writer's output reads back wrong here, it reads back wrong in A1111.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from conftest import run_json
from pipeline.images import a1111_parameters, parse_a1111

# ---- A1111 (modules/infotext_utils.py)
re_param = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
re_imagesize = re.compile(r"^(\d+)x(\d+)$")


def a1111_unquote(text):
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def a1111_parse(x: str) -> dict:
    """``parse_generation_parameters`` without the UI's option-dependent defaults."""
    res, prompt, negative_prompt, done_with_prompt = {}, "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"], res["Negative prompt"] = prompt, negative_prompt
    for k, v in re_param.findall(lastline):
        if v[0] == '"' and v[-1] == '"':
            v = a1111_unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"], res[f"{k}-2"] = m.group(1), m.group(2)
        else:
            res[k] = v
    return res


def a1111_hires_target(res: dict) -> tuple[int, int]:
    """(modules/processing.py, calculate_target_resolution) for the scale and the explicit-size cases."""
    width, height = int(res["Size-1"]), int(res["Size-2"])
    if "Hires resize-1" in res:
        return int(res["Hires resize-1"]), int(res["Hires resize-2"])
    scale = float(res["Hires upscale"])
    return int(width * scale), int(height * scale)


# ---- the writer, by A1111's rules

HOSTILE = {
    "prompt": 'a "quoted" cat, sitting: on a mat\nsecond line, with 日本語 and émojis ✨',
    "negative": "blurry, low quality: bad\nugly",
    "model_name": "Z-Image, Turbo: v2 \"q\"",
    "upscaler": "my, weights: x4.pth",
}


def base(**extra) -> dict:
    return {"steps": 8, "guidance": 0.0, "seed": 42, "width": 1024, "height": 1024, "version": "pipeline 0.1.0",
            **HOSTILE, **extra}


def test_values_with_commas_colons_quotes_newlines_read_back_exactly():
    text = a1111_parameters(base(mode="rerender"))
    res = a1111_parse(text)
    assert res["Prompt"] == HOSTILE["prompt"]
    assert res["Negative prompt"] == HOSTILE["negative"]
    assert res["Model"] == HOSTILE["model_name"]
    assert res["Upscaler"] == HOSTILE["upscaler"]
    assert (res["Steps"], res["Seed"], res["Size-1"], res["Size-2"]) == ("8", "42", "1024", "1024")
    # nothing invented from the rest of a cut value
    assert set(res) == {"Prompt", "Negative prompt", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed",
                        "Size-1", "Size-2", "Model", "Upscaler", "Version"}
    ours = parse_a1111(text)
    assert (ours["prompt"], ours["negative"], ours["model_name"], ours["seed"]) == \
        (HOSTILE["prompt"], HOSTILE["negative"], HOSTILE["model_name"], 42)
    assert ours["settings"]["Upscaler"] == HOSTILE["upscaler"]


def test_hires_refine_is_a1111_hires_fix():
    text = a1111_parameters(base(mode="hires", strength=0.5, parent_size=[512, 512], enlarge="realesrgan-x4plus@0123"))
    res = a1111_parse(text)
    assert (res["Size-1"], res["Size-2"]) == ("512", "512")  # the first pass: the candidate
    assert res["Hires upscale"] == "2" and res["Hires upscaler"] == "R-ESRGAN 4x+"
    assert res["Denoising strength"] == "0.5"
    assert a1111_hires_target(res) == (1024, 1024)  # A1111's second pass: the refined picture
    ours = parse_a1111(text)
    assert (ours["width"], ours["hires_width"], ours["strength"], ours["hires_upscaler"]) == (512, 1024, 0.5,
                                                                                             "R-ESRGAN 4x+")


def test_hires_refine_to_another_aspect_is_hires_resize():
    text = a1111_parameters(base(mode="hires", strength=0.4, parent_size=[512, 512], width=768, height=1024,
                                 enlarge="lanczos"))
    res = a1111_parse(text)
    assert "Hires upscale" not in res and a1111_hires_target(res) == (768, 1024)
    assert res["Hires upscaler"] == "Lanczos"


def test_rerender_is_plain_text_to_image_at_its_size():
    res = a1111_parse(a1111_parameters(base(mode="rerender")))
    assert (res["Size-1"], res["Size-2"]) == ("1024", "1024")
    assert not any(k.startswith("Hires") or k == "Denoising strength" for k in res)


settable = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda v: v == v.strip() and v.strip("\n") and not (v.startswith('"') and v.endswith('"')) and v[0] != "\x00")


@settings(max_examples=150, deadline=None)
@given(model=settable, upscaler=settable)
def test_any_value_reads_back_in_a1111(model, upscaler):
    res = a1111_parse(a1111_parameters(base(model_name=model, upscaler=upscaler, mode="rerender")))
    assert res.get("Model") == model and res.get("Upscaler") == upscaler


# ---- through the CLI: a hires refine's picture, pasted into A1111 or read back by refine --from


def test_refine_writes_hires_fix_and_refine_from_reads_it(tmp_path):
    out = tmp_path / "outputs"
    prompt = 'a fox, in snow: "winter"\n雪の中の狐'
    explored = run_json("explore", prompt, "--model", "tiny-random", "--size", "64", "--seeds", "5", "--out", out)
    refined = run_json("refine", "--seeds", "5", "--out", out)
    path = Path(refined["items"][0]["path"])
    with Image.open(path) as image:
        text = image.text["parameters"]
        assert image.size == (128, 128)
    res = a1111_parse(text)
    assert res["Prompt"] == prompt and res["Seed"] == "5"
    assert (res["Size-1"], res["Size-2"], res["Hires upscale"], res["Hires upscaler"]) == ("64", "64", "2", "Lanczos")
    assert a1111_hires_target(res) == (128, 128)
    assert explored["items"][0]["seed"] == 5

    # a copy that kept only A1111's chunk (as many tools do): refine --from reads prompt and seed from it
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    foreign = tmp_path / "only-a1111.png"
    with Image.open(path) as image:
        image.save(foreign, pnginfo=info)
    again = run_json("refine", "--from", foreign, "--model", "tiny-random", "--scale", "1", "--out", out)
    with Image.open(again["items"][0]["path"]) as image:
        record = json.loads(image.text["pipeline"])
    assert (record["prompt"], record["seed"]) == (prompt, 5)
    assert record["parent_size"] == [128, 128]
