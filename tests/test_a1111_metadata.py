"""Picture metadata exactly as AUTOMATIC1111 writes and reads it.

The reader below is A1111's own, re-implemented from its source: ``quote``/``unquote`` and
``re_param_code`` from ``modules/infotext_utils.py``, the settings-line rule of
``parse_generation_parameters`` (the last line holds the settings when at least three match), and
the hires-fix target size and crop of ``StableDiffusionProcessingTxt2Img.calculate_target_resolution``
and ``sample_hr_pass`` (``modules/processing.py``), the hires pass's step count of ``setup_img2img_steps``
(``modules/sd_samplers_common.py``), and which fields a paste fills in the txt2img and img2img tabs
(``modules/ui.py`` paste fields). If our writer's output reads back wrong here, it reads back wrong in A1111.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from conftest import run_cli, run_json
from pipeline.core.images import a1111_parameters, parse_a1111

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


def a1111_hires_crop(res: dict):
    """(calculate_target_resolution, sample_hr_pass) for Hires resize: the size the first pass is enlarged
    to, and the target's offset in it once the latent is truncated (8 pixels a latent cell)."""
    width, height = int(res["Size-1"]), int(res["Size-2"])
    target_w, target_h = int(res["Hires resize-1"]), int(res["Hires resize-2"])
    if width / height < target_w / target_h:
        to_x, to_y = target_w, target_w * height // width
    else:
        to_x, to_y = target_h * width // height, target_h
    truncate_x, truncate_y = (to_x - target_w) // 8, (to_y - target_h) // 8
    return (to_x, to_y), (truncate_x // 2 * 8, truncate_y // 2 * 8)


def a1111_paste(text: str, tab: str) -> dict:
    """The fields a paste of ``text`` fills in A1111's ``tab`` (modules/ui.py paste fields; Seed, Steps and
    Sampler come from the seed and sampler scripts). In the hires pass A1111 runs ``Hires steps`` (else
    ``Steps``) steps (setup_img2img_steps with steps given); in img2img ``Steps`` × denoising strength."""
    res = a1111_parse(text)
    fields = {"prompt": res["Prompt"], "negative": res["Negative prompt"], "steps": int(res["Steps"]),
              "cfg_scale": float(res["CFG scale"]), "seed": int(res["Seed"]),
              "width": int(res["Size-1"]), "height": int(res["Size-2"])}
    if "Denoising strength" in res:
        fields["denoising_strength"] = float(res["Denoising strength"])
        if tab == "img2img":  # setup_img2img_steps (img2img_fix_steps off) and the k-diffusion img2img schedule:
            # t_enc = int(min(strength, 0.999) × steps); it runs sigmas[steps − t_enc − 1:], t_enc + 1 steps
            t_enc = int(min(fields["denoising_strength"], 0.999) * fields["steps"])
            fields["img2img_runs"] = (t_enc + 1, fields["steps"] - t_enc - 1)  # steps run, index of the first
    if tab == "txt2img":
        # ui.py: enable_hr when "Denoising strength" and a Hires key are there ("Hires resize-1" is always
        # there after parse_generation_parameters, which defaults it to 0: so any denoising strength)
        fields["enable_hr"] = "Denoising strength" in res
        if fields["enable_hr"]:
            fields.update(hr_target=a1111_hires_target(res), hr_upscaler=res.get("Hires upscaler"),
                          hr_steps_run=int(res.get("Hires steps", 0)) or fields["steps"],
                          hr_negative=res.get("Hires negative prompt") or fields["negative"],
                          hr_cfg_scale=float(res.get("Hires CFG Scale", fields["cfg_scale"])))  # Forge's field
    return fields


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


FIRST = {"width": 512, "height": 512, "steps": 8, "guidance": 0.0, "negative": ""}


def test_hires_refine_is_a1111_hires_fix():
    text = a1111_parameters(base(mode="hires", strength=0.5, parent_size=[512, 512], enlarge="realesrgan-x4plus@0123",
                                 first_pass={**FIRST, "negative": HOSTILE["negative"]}))
    res = a1111_parse(text)
    assert (res["Size-1"], res["Size-2"]) == ("512", "512")  # the first pass: the candidate
    assert res["Hires upscale"] == "2" and res["Hires upscaler"] == "R-ESRGAN 4x+"
    assert res["Denoising strength"] == "0.5"
    assert res["Hires steps"] == "4"  # the 4 steps the pass ran (8 × 0.5), not the 8 of its schedule
    assert "Hires CFG Scale" not in res and "Hires negative prompt" not in res  # the same in both passes
    assert a1111_hires_target(res) == (1024, 1024)  # A1111's second pass: the refined picture
    ours = parse_a1111(text)
    assert (ours["width"], ours["hires_width"], ours["strength"], ours["hires_upscaler"]) == (512, 1024, 0.5,
                                                                                             "R-ESRGAN 4x+")


def test_hires_fix_writes_the_first_pass_and_the_second_where_they_differ():
    first = {**FIRST, "steps": 4, "guidance": 1.5, "negative": "blurry, dark"}
    text = a1111_parameters(base(mode="hires", strength=0.5, steps=6, guidance=0.0, negative="",
                                 enlarge="lanczos", first_pass=first))
    fields = a1111_paste(text, "txt2img")
    assert (fields["steps"], fields["cfg_scale"], fields["negative"]) == (4, 2.5, "blurry, dark")
    assert (fields["hr_steps_run"], fields["hr_cfg_scale"]) == (3, 1.0)  # 6 × 0.5 steps, guidance 0 = CFG 1
    other = a1111_parse(a1111_parameters(base(mode="hires", strength=0.5, steps=8, guidance=2.0,
                                              negative="grainy", enlarge="lanczos", first_pass=first)))
    assert other["Hires negative prompt"] == "grainy" and other["Negative prompt"] == "blurry, dark"
    assert "Hires steps" not in other  # the 4 steps it ran are the first pass's Steps: A1111 runs those


def test_hires_refine_to_another_aspect_is_hires_resize():
    text = a1111_parameters(base(mode="hires", strength=0.4, parent_size=[512, 512], width=768, height=1024,
                                 enlarge="lanczos", first_pass=FIRST))
    res = a1111_parse(text)
    assert "Hires upscale" not in res and a1111_hires_target(res) == (768, 1024)
    assert res["Hires upscaler"] == "Lanczos"


def test_a_hires_refine_of_anything_else_is_img2img():
    for params in (base(mode="hires", strength=0.4, parent_size=[2048, 2048], enlarge="lanczos"),  # no first pass
                   base(kind="vary", strength=0.85, variation="42v3", parent_seed=7)):
        res = a1111_parse(a1111_parameters(params))
        assert (res["Size-1"], res["Size-2"]) == ("1024", "1024")  # the result
        assert res["Denoising strength"] in ("0.4", "0.85")
        assert not any(k.startswith("Hires") for k in res)
    assert (res["Vary parent"], res["Vary parent seed"]) == ("42", "7")


def test_cfg_scale_is_guidance_plus_one():
    # diffusers' Z-Image: pos + g (pos - neg); A1111: neg + s (pos - neg); so s = g + 1 (no CFG: 0 and 1)
    for guidance, cfg in ((0.0, "1"), (1.5, "2.5"), (3.7, "4.7")):
        text = a1111_parameters(base(mode="rerender", guidance=guidance))
        assert a1111_parse(text)["CFG scale"] == cfg
        assert parse_a1111(text)["guidance"] == guidance


def test_hires_steps_is_what_diffusers_img2img_runs():
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageImg2ImgPipeline

    from pipeline.core.images import img2img_steps_run

    class Pipe:
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)

    for steps in (4, 6, 8, 9, 12):
        Pipe.scheduler.set_timesteps(steps)
        for strength in (0.1, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 0.85, 1.0):
            _, ran = ZImageImg2ImgPipeline.get_timesteps(Pipe(), steps, strength, "cpu")
            assert img2img_steps_run(steps, strength) == ran, (steps, strength)


def test_rerender_is_plain_text_to_image_at_its_size():
    res = a1111_parse(a1111_parameters(base(mode="rerender")))
    assert (res["Size-1"], res["Size-2"]) == ("1024", "1024")
    assert not any(k.startswith("Hires") or k == "Denoising strength" for k in res)


settable = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda v: v.strip() and v[0] != "\x00")  # quotes and spaces at either end too: '"0' broke the line


@settings(max_examples=150, deadline=None)
@given(model=settable, upscaler=settable)
def test_any_value_reads_back_in_a1111(model, upscaler):
    res = a1111_parse(a1111_parameters(base(model_name=model, upscaler=upscaler, mode="rerender")))
    assert res.get("Model") == model and res.get("Upscaler") == upscaler


# ---- through the CLI: each picture kind, pasted into A1111 or read back by refine --from

JS_SAFE = 2**53  # a seed box in A1111's or ComfyUI's page is a JavaScript number


def picture(path) -> tuple[str, dict]:
    with Image.open(path) as image:
        return image.text["parameters"], json.loads(image.text["pipeline"])


def seeds_written(text: str) -> list[int]:
    res = a1111_parse(text)
    return [int(res[k]) for k in ("Seed", "Variance seed", "Vary parent seed") if k in res]


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


def ran_by_us(record: dict) -> tuple[int, int]:
    """The steps our img2img ran and the index of the first in the ``steps``-step schedule."""
    from pipeline.core.images import img2img_steps_run

    ran = img2img_steps_run(record["steps"], record["strength"])
    return ran, record["steps"] - ran


def test_img2img_strength_makes_a1111_run_the_steps_we_ran():
    """A paste into img2img runs the same steps from the same point of the schedule as we ran: the
    written strength is ours where A1111 runs that already, else the largest two-decimal value that does."""
    from pipeline.core.images import img2img_steps_run

    for steps in (4, 6, 8, 9, 12):
        for strength in (0.1, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75, 0.85, 1.0):
            params = base(kind="vary", steps=steps, strength=strength, variation="42v3", parent_seed=7)
            fields = a1111_paste(a1111_parameters(params), "img2img")
            ran = img2img_steps_run(steps, strength)
            assert fields["img2img_runs"] == (ran, steps - ran), (steps, strength, fields)
            assert abs(fields["denoising_strength"] - strength) < 1 / steps, (steps, strength)
    assert a1111_paste(a1111_parameters(base(kind="vary", strength=0.5, variation="42v3")), "img2img")[
        "denoising_strength"] == 0.49  # 8 steps at 0.5: A1111 would run 5 from σ 0.83 where we ran 4 from 0.75


def test_every_picture_kind_pastes_as_what_was_done(tmp_path):
    from pipeline.core.images import img2img_steps_run

    out = tmp_path / "outputs"
    prompt, negative = "a lighthouse, at dusk", "blurry, dark"
    explored = run_json("explore", prompt, "--model", "tiny-random", "--size", "64", "--seeds", "5", "--steps", "4",
                        "--guidance", "1.5", "--negative", negative, "--out", out)
    run_dir = Path(explored["run_dir"])
    texts = {}

    text, record = picture(run_dir / "explore" / "seed-5.png")
    texts["explore"] = text
    fields = a1111_paste(text, "txt2img")
    assert (fields["steps"], fields["cfg_scale"], fields["seed"], fields["negative"]) == (4, 2.5, 5, negative)
    assert (fields["width"], fields["height"], fields["enable_hr"]) == (64, 64, False)

    # hires refine of a candidate: A1111's hires fix, first pass = the candidate's 4 steps at CFG 2.5
    for extra, hr_cfg, hr_negative in ((), 2.5, negative), (("--guidance", "0", "--steps", "6"), 1.0, negative), \
            (("--negative", "grainy"), 2.5, "grainy"):
        refined = run_json("refine", "--seeds", "5", *extra, "--out", out)
        text, record = picture(refined["items"][0]["path"])
        texts["hires " + " ".join(extra)] = text
        fields = a1111_paste(text, "txt2img")
        assert (fields["prompt"], fields["negative"], fields["steps"], fields["cfg_scale"]) == (prompt, negative, 4, 2.5)
        assert (fields["seed"], fields["width"], fields["height"], fields["enable_hr"]) == (5, 64, 64, True)
        assert (fields["hr_target"], fields["denoising_strength"]) == ((128, 128), 0.5)
        assert fields["hr_steps_run"] == img2img_steps_run(record["steps"], record["strength"])
        assert (fields["hr_cfg_scale"], fields["hr_negative"]) == (hr_cfg, hr_negative)

    # to another aspect: Hires resize, and the candidate cropped as A1111 crops it
    refined = run_json("refine", "--seeds", "5", "--size", "64x128", "--out", out)
    text, record = picture(refined["items"][0]["path"])
    res = a1111_parse(text)
    assert a1111_hires_target(res) == (64, 128) and "Hires upscale" not in res
    (cover_w, cover_h), (x, y) = a1111_hires_crop(res)
    assert record["crop"] == f"{cover_w}x{cover_h}+{x}+{y}" == "128x128+32+0"

    # rerender: a txt2img at its own size and settings
    refined = run_json("refine", "--seeds", "5", "--mode", "rerender", "--out", out)
    text, record = picture(refined["items"][0]["path"])
    texts["rerender"] = text
    fields = a1111_paste(text, "txt2img")
    assert (fields["steps"], fields["width"], fields["seed"], fields["enable_hr"]) == (8, 128, 5, False)

    # vary: img2img of the candidate at its size, with the variation's own seed and the parent's in our key
    varied = run_json("vary", "--seeds", "5", "--count", "1", "--out", out)
    text, record = picture(varied["items"][0]["path"])
    texts["vary"] = text
    fields = a1111_paste(text, "img2img")
    assert (fields["width"], fields["height"], record["strength"]) == (64, 64, 0.5)
    assert fields["img2img_runs"] == ran_by_us(record) == (2, 2)  # the last 2 of 4 steps, not 3 (strength 0.5)
    assert (fields["steps"], fields["cfg_scale"], fields["seed"]) == (4, 2.5, record["seed"])
    res = a1111_parse(text)
    assert (res["Vary parent"], res["Vary parent seed"]) == ("5", "5")
    assert not any(k.startswith("Hires") for k in res)

    # hires and rerender refine of a variation: img2img (its parent is no txt2img), txt2img with its seed
    refined = run_json("refine", "--seeds", "5v1", "--out", out)
    text, record = picture(refined["items"][0]["path"])
    texts["hires 5v1"] = text
    fields = a1111_paste(text, "img2img")
    assert (fields["width"], fields["height"], record["strength"]) == (128, 128, 0.5)
    assert fields["img2img_runs"] == ran_by_us(record) == (4, 4)
    assert (fields["steps"], fields["seed"]) == (8, record["seed"])
    assert not any(k.startswith("Hires") for k in a1111_parse(text))
    refined = run_json("refine", "--seeds", "5v1", "--mode", "rerender", "--out", out)
    text, record = picture(refined["items"][0]["path"])
    texts["rerender 5v1"] = text
    assert a1111_paste(text, "txt2img")["seed"] == record["seed"] and "Denoising strength" not in text

    # upscale: the source's text is kept; refine --from the upscaled picture is an img2img at its size
    refined = run_json("refine", "--seeds", "5", "--run", run_dir)
    upscaled = run_json("upscale", "--seeds", "5", "--run", run_dir, "--upscaler", "realesr-animevideov3", "--out", out)
    text, record = picture(upscaled["items"][0]["path"])
    texts["upscale"] = text
    again = run_json("refine", "--from", upscaled["items"][0]["path"], "--scale", "0.25", "--out", out)
    text, record = picture(again["items"][0]["path"])
    texts["from upscaled"] = text
    fields = a1111_paste(text, "img2img")
    assert (fields["width"], fields["height"], record["strength"]) == (128, 128, 0.5)
    assert fields["img2img_runs"] == ran_by_us(record)
    assert not any(k.startswith("Hires") for k in a1111_parse(text))

    # refine --from the candidate's own file: the same hires fix as --seeds 5
    again = run_json("refine", "--from", run_dir / "explore" / "seed-5.png", "--out", out)
    assert a1111_paste(picture(again["items"][0]["path"])[0], "txt2img")["hr_target"] == (128, 128)

    for kind, text in texts.items():
        assert all(0 <= seed < JS_SAFE for seed in seeds_written(text)), (kind, text)


def test_hires_to_another_aspect_starts_from_the_crop_a1111_makes(tmp_path):
    """A hires fix to another aspect starts from the candidate enlarged to cover the target and cropped
    (as A1111's hires fix); an img2img (here: an image without our record) from the image stretched to the
    target (as A1111's img2img "Just resize")."""
    from pipeline.session import Session
    from pipeline.stages.specs import RefineSpec
    from pipeline.stages import hires, refine

    out = tmp_path / "outputs"
    explored = run_json("explore", "a lighthouse", "--model", "tiny-random", "--size", "64", "--seeds", "3",
                        "--out", out)
    session = Session(model="tiny-random", out=out)
    with Image.open(explored["items"][0]["path"]) as image:
        candidate = image.convert("RGB")
    candidate.save(tmp_path / "plain.png")  # the same pixels, no metadata
    for spec, expected in (
            (RefineSpec(seeds=[3], size=(64, 128)),
             candidate.resize((128, 128), Image.Resampling.LANCZOS).crop((32, 0, 96, 128))),
            (RefineSpec(source=str(tmp_path / "plain.png"), prompt="a lighthouse", seed=3, size=(64, 128)),
             candidate.resize((64, 128), Image.Resampling.LANCZOS))):
        the_plan = refine.plan(session, spec)
        start = hires.enlarge_parents(session, spec, the_plan.picks)[the_plan.picks[0].name]
        assert start.size == (64, 128) and start.tobytes() == expected.tobytes()


def test_a_new_picture_takes_no_seed_a_javascript_number_would_round(tmp_path):
    out = tmp_path / "outputs"
    for args, said in (
            (["--seeds", str(2**53)], f"seed {2**53} is too large for a new picture: seeds go from 0 to {2**53 - 1}"),
            (["--count", "2", "--seed", str(2**53 - 1)],  # its second seed would be 2^53: the base seed is named
             f"base seed {2**53 - 1} is out of range: with --count 2, seeds go from 0 to {2**53 - 1}")):
        proc = run_cli("explore", "a fox", "--model", "tiny-random", "--size", "64", *args, "--out", out, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert said in proc.stderr
    assert not out.exists() or not list(out.glob("*/explore/*.png"))


def test_a_lora_candidate_refined_without_its_lora_is_an_img2img(tmp_path):
    """A hires refine of a LoRA candidate with its LoRA (refine's default) is its hires fix; without it
    (``loras=[]``, the CLI's --no-lora) it is no hires fix of it, but an img2img."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from lora_files import lora_tensors, write_lora

    from pipeline import Pipeline

    lora = write_lora(tmp_path / "loras" / "style.safetensors", "diffusers", lora_tensors(rank=4, seed=7), alpha=2.0)
    with Pipeline(model="tiny-random", out=tmp_path / "out") as p:
        explored = p.explore("a lighthouse", seeds=[3], size=(64, 64), loras=[(str(lora), 0.8)])
        with_lora = a1111_parse(picture(p.refine(seeds=[3], run=explored).items[0].path)[0])
        refined = p.refine(seeds=[3], run=explored, loras=[])
    assert (with_lora["Size-1"], with_lora["Size-2"], with_lora["Hires upscale"]) == ("64", "64", "2")
    assert "style" in with_lora["Lora hashes"]
    res = a1111_parse(picture(refined.items[0].path)[0])
    assert (res["Size-1"], res["Size-2"], res["Denoising strength"]) == ("128", "128", "0.49")  # runs 4 of 8
    assert not any(k.startswith("Hires") for k in res) and "Lora hashes" not in res
