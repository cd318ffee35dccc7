"""The ComfyUI graph in every picture, checked against ComfyUI's node definitions (tests/data/comfyui_nodes.json,
read from ComfyUI's sources and the official Z-Image-Turbo template): every node class and required input
exists, links join outputs of the right type, values lie in each input's range, the UI graph matches the API
graph, and the graph read back (with KSampler's own step rule) gives the settings we used."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import cli_env, run_cli, run_json
from lora_files import lora_tensors, write_lora
from test_a1111_metadata import a1111_parse

DEFINITIONS = json.loads((Path(__file__).parent / "data" / "comfyui_nodes.json").read_text())
NODES = DEFINITIONS["nodes"]
PROMPT, NEGATIVE = "a lighthouse, at dusk", "blurry, dark"
JS_SAFE = 2**53
FILE_ENDINGS = {"diffusion_models": (".safetensors", ".gguf"), "text_encoders": (".safetensors",),
                "vae": (".safetensors",), "loras": (".safetensors",), "upscale_models": (".pth", ".safetensors"),
                "input": (".png",), "model_patches": (".safetensors",)}


def chunks(path) -> tuple[dict, dict, dict, str]:
    with Image.open(path) as image:
        text = image.text
        return (json.loads(text["prompt"]), json.loads(text["workflow"]), json.loads(text["pipeline"]),
                text.get("parameters", ""))


def check_graph(prompt: dict) -> None:
    """What ComfyUI's validate_prompt checks, from the definitions: classes, required inputs, link types,
    values within range or among the options; one output node."""
    assert sum(node["class_type"] == "SaveImage" for node in prompt.values()) == 1
    for node_id, node in prompt.items():
        assert node["class_type"] in NODES, node["class_type"]
        spec = NODES[node["class_type"]]["input"]
        required, optional = spec["required"], spec.get("optional", {})
        assert set(required) <= set(node["inputs"]), (node_id, node)
        for name, value in node["inputs"].items():
            assert name in required or name in optional, (node["class_type"], name)
            kind, settings = (required.get(name) or optional[name])
            where = (node["class_type"], name, value)
            if isinstance(value, list):  # a link: [node id, output slot]
                source = prompt[value[0]]
                assert NODES[source["class_type"]]["output"][value[1]] == kind, where
            elif isinstance(kind, list):
                assert value in kind, where
            elif kind == "COMBO":
                assert isinstance(value, str) and value.endswith(FILE_ENDINGS[settings["folder"]]), where
            elif kind == "INT":
                assert isinstance(value, int) and not isinstance(value, bool), where
                assert settings.get("min", -2**64) <= value <= settings.get("max", 2**64), where
                if settings.get("step", 1) > 1:
                    assert value % settings["step"] == 0, where
            elif kind == "FLOAT":
                assert isinstance(value, (int, float)), where
                assert settings.get("min", -1e9) <= value <= settings.get("max", 1e9), where
            elif kind == "STRING":
                assert isinstance(value, str), where
            elif kind == "BOOLEAN":
                assert isinstance(value, bool), where
            else:
                pytest.fail(f"input {name} of {node['class_type']} takes a {kind} link, not {value!r}")
        if node["class_type"] == "KSampler":
            assert 0 <= node["inputs"]["seed"] < JS_SAFE  # ComfyUI's page holds it as a JavaScript number


def check_workflow(workflow: dict, prompt: dict) -> None:
    """The UI graph is the API graph: the same nodes, a link for each link input of the right type, and the
    widget values in the order the node's widgets take them."""
    from pipeline.core.comfy_nodes import UI_WIDGETS, widget_inputs

    assert workflow["version"] == 0.4 and {str(n["id"]) for n in workflow["nodes"]} == set(prompt)
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    links = {link[0]: link for link in workflow["links"]}
    linked = 0
    for node_id, node in prompt.items():
        ui = nodes[node_id]
        assert ui["type"] == node["class_type"]
        for slot, entry in enumerate(ui["inputs"]):
            if entry["link"] is None:  # an optional input left unconnected (ZImageFunControlnet's mask)
                assert entry["name"] in NODES[node["class_type"]]["input"].get("optional", {})
                assert entry["name"] not in node["inputs"]
                continue
            value = node["inputs"][entry["name"]]
            link = links[entry["link"]]
            assert link[1:] == [int(value[0]), value[1], int(node_id), slot, entry["type"]]
            assert entry["link"] in nodes[value[0]]["outputs"][value[1]]["links"]
            linked += 1
        widgets = []
        for name in widget_inputs(node["class_type"]):
            widgets.append(node["inputs"][name])
            if (node["class_type"], name) in UI_WIDGETS:
                widgets.append(UI_WIDGETS[(node["class_type"], name)])
        assert ui["widgets_values"] == widgets
    assert linked == len(links) == workflow["last_link_id"]


def by_class(prompt: dict, class_type: str) -> list[dict]:
    return [node["inputs"] for node in prompt.values() if node["class_type"] == class_type]


def source(prompt: dict, link) -> dict:
    return prompt[link[0]]


def schedule(sampler: dict) -> tuple[int, int]:
    """(steps run, steps of the schedule they are the last of): comfy/samplers.py KSampler.set_steps runs the
    last ``steps`` of an ``int(steps / denoise)``-step schedule when denoise < 1."""
    steps, denoise = sampler["steps"], sampler["denoise"]
    return steps, steps if denoise > 0.9999 else int(steps / denoise)


def text_of(prompt, link) -> str:
    node = source(prompt, link)
    assert node["class_type"] == "CLIPTextEncode"
    return node["inputs"]["text"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Every kind of picture, from one LoRA candidate made with CFG and a negative prompt."""
    tmp = tmp_path_factory.mktemp("comfy")
    weights = tmp / "weights"
    write_lora(weights / "loras" / "style.safetensors", "kohya", lora_tensors(seed=7), alpha=2.0)
    env = cli_env(PIPELINE_WEIGHTS=str(weights), PIPELINE_LORAS=str(tmp / "mine"))
    out = tmp / "outputs"
    explored = run_json("explore", PROMPT, "--model", "tiny-random", "--size", "64", "--seeds", "5", "--steps", "4",
                        "--guidance", "1.5", "--negative", NEGATIVE, "--lora", "style:0.8", "--out", out, env=env)
    run_dir = Path(explored["run_dir"])
    pictures = {"explore": run_dir / "explore" / "seed-5.png"}

    def keep(name: str, *args) -> None:  # a copy: the next refine of seed 5 is placed at the same path
        made = Path(run_json(*args, env=env)["items"][0]["path"])
        pictures[name] = tmp / f"{name}.png"
        pictures[name].write_bytes(made.read_bytes())

    for name, args in (("crop", ("--size", "64x128")), ("rerender", ("--mode", "rerender")), ("hires", ())):
        keep(name, "refine", "--seeds", "5", *args, "--run", run_dir)
    keep("vary", "vary", "--seeds", "5", "--count", "1", "--run", run_dir)
    keep("refine 5v1", "refine", "--seeds", "5v1", "--run", run_dir)
    keep("upscale", "upscale", "--seeds", "5", "--run", run_dir, "--upscaler", "realesr-animevideov3", "--scale", "2")
    keep("detail", "upscale", pictures["explore"], "--model", "tiny-random", "--upscaler", "realesr-animevideov3",
         "--detail", "0.4", "--detail-tile", "64", "--out", out)
    return pictures, env, out


def test_every_picture_carries_a_graph_comfyui_accepts(made):
    pictures, _, _ = made
    for kind, path in pictures.items():
        prompt, workflow, _, _ = chunks(path)
        check_graph(prompt)
        check_workflow(workflow, prompt)
        loras = by_class(prompt, "LoraLoaderModelOnly")
        assert [(l["lora_name"], l["strength_model"]) for l in loras] == [("style.safetensors", 0.8)], kind
        assert by_class(prompt, "CLIPLoader")[0]["type"] == "lumina2"
        assert [m["shift"] for m in by_class(prompt, "ModelSamplingAuraFlow")] == [3.0]


def test_explore_reads_back_as_our_settings(made):
    prompt, _, record, _ = chunks(made[0]["explore"])
    (sampler,) = by_class(prompt, "KSampler")
    assert (sampler["seed"], schedule(sampler), sampler["cfg"]) == (5, (4, 4), 2.5)  # CFG = guidance + 1
    assert (sampler["sampler_name"], sampler["scheduler"]) == ("euler", "simple")
    assert (text_of(prompt, sampler["positive"]), text_of(prompt, sampler["negative"])) == (PROMPT, NEGATIVE)
    latent = source(prompt, sampler["latent_image"])
    assert latent["class_type"] == "EmptySD3LatentImage"
    assert (latent["inputs"]["width"], latent["inputs"]["height"]) == (record["width"], record["height"]) == (64, 64)
    assert {n["class_type"] for n in prompt.values()} >= {"UNETLoader", "VAELoader", "VAEDecode", "SaveImage"}
    assert by_class(prompt, "UNETLoader")[0]["unet_name"] == "z_image_turbo_bf16.safetensors"


def test_hires_refine_is_the_first_pass_enlarged_and_a_second_sampler_at_our_denoise(made):
    from pipeline.core.images import img2img_steps_run

    prompt, _, record, _ = chunks(made[0]["hires"])
    first, second = by_class(prompt, "KSampler")
    assert schedule(first) == (4, 4) and source(prompt, first["latent_image"])["class_type"] == "EmptySD3LatentImage"
    ran = img2img_steps_run(record["steps"], record["strength"])
    assert schedule(second) == (ran, record["steps"]) == (4, 8)  # the last 4 of 8 steps, as we ran them
    assert second["seed"] == first["seed"] == record["seed"] and second["cfg"] == record["guidance"] + 1
    encoded = source(prompt, second["latent_image"])
    assert encoded["class_type"] == "VAEEncode"
    scaled = source(prompt, encoded["inputs"]["pixels"])["inputs"]
    assert (scaled["upscale_method"], scaled["width"], scaled["height"]) == ("lanczos", 128, 128)
    # to another aspect: enlarged to cover, then the crop refine (and A1111's hires fix) made
    prompt, _, record, _ = chunks(made[0]["crop"])
    (crop,) = by_class(prompt, "ImageCrop")
    assert record["crop"] == f"128x128+{crop['x']}+{crop['y']}" and (crop["width"], crop["height"]) == (64, 128)


def test_vary_and_img2img_load_the_parent(made):
    from pipeline.core.images import img2img_steps_run

    for kind in ("vary", "refine 5v1"):
        prompt, _, record, _ = chunks(made[0][kind])
        (load,) = by_class(prompt, "LoadImage")
        (sampler,) = by_class(prompt, "KSampler")
        assert load["image"] == "seed-5.png" if kind == "vary" else load["image"].endswith(".png")
        assert schedule(sampler) == (img2img_steps_run(record["steps"], record["strength"]), record["steps"])
        assert sampler["seed"] == record["seed"]
    prompt, _, record, _ = chunks(made[0]["rerender"])
    (sampler,) = by_class(prompt, "KSampler")
    latent = source(prompt, sampler["latent_image"])["inputs"]
    assert (latent["width"], latent["height"], schedule(sampler)) == (128, 128, (8, 8))


def test_upscale_and_detail_add_the_upscaler_model(made):
    from pipeline.core.images import img2img_steps_run

    prompt, _, record, _ = chunks(made[0]["upscale"])
    (loader,) = by_class(prompt, "UpscaleModelLoader")
    assert loader["model_name"] == "realesr-animevideov3.pth" and len(by_class(prompt, "ImageUpscaleWithModel")) == 1
    save = by_class(prompt, "SaveImage")[0]
    last = source(prompt, save["images"])["inputs"]
    assert (last["width"], last["height"]) == (record["upscale"]["width"], record["upscale"]["height"])
    prompt, _, record, _ = chunks(made[0]["detail"])
    detail = record["upscale"]["detail"]
    *_, sampler = by_class(prompt, "KSampler")
    assert schedule(sampler) == (img2img_steps_run(detail["steps"], detail["strength"]), detail["steps"])
    assert sampler["cfg"] == 1.0 and sampler["seed"] == detail["seed"]


def test_comfyui_model_folder_names_its_own_transformer_file():
    from pipeline.core.comfy_graph import model_files

    assert model_files("comfy:my_turbo_fp8:0123456789abcdef")["unet"] == "my_turbo_fp8.safetensors"
    assert model_files("hub:Tongyi-MAI/Z-Image-Turbo@abc") == DEFINITIONS["template_files"]


def test_a_new_record_field_adds_its_nodes_without_editing_the_builder():
    """The extension point ControlNet and inpaint use: register a function for a record field."""
    from pipeline.core import comfy_graph
    from pipeline.core.metadata import comfy_texts

    record = {"kind": "explore", "prompt": "a fox", "negative": "", "width": 64, "height": 64, "steps": 8,
              "guidance": 0.0, "seed": 1, "model": "tiny", "blur": 3}

    @comfy_graph.image_step("blur")
    def blur(chain, image, value):
        return chain.graph.add("ImageScale", image=image, upscale_method="bicubic", width=64 * value,
                               height=64 * value, crop="disabled")

    try:
        prompt = json.loads(comfy_texts(record)["prompt"])
    finally:
        comfy_graph.IMAGE_STEPS.remove(("blur", blur))
    check_graph(prompt)
    assert [n["width"] for n in by_class(prompt, "ImageScale")] == [192]
    assert by_class(json.loads(comfy_texts(record)["prompt"]), "ImageScale") == []


def test_show_says_the_picture_carries_a_comfyui_graph(made):
    pictures, env, _ = made
    shown = run_cli("show", pictures["explore"], env=env).stdout
    prompt, *_ = chunks(pictures["explore"])
    assert f"ComfyUI graph: {len(prompt)} nodes and its workflow (UI graph)" in shown


def test_detail_text_cfg_loras_and_show_label(made):
    """The detail pass writes CFG scale 1 at guidance 0 (the project's rule), the LoRAs it applied as tags and
    Lora hashes, and `pipeline show` prints its text as the detail pass's, not under "made from"."""
    pictures, env, _ = made
    _, _, record, text = chunks(pictures["detail"])
    res = a1111_parse(text)
    assert res["CFG scale"] == "1" and record["upscale"]["detail"]["guidance"] == 0.0
    assert res["Prompt"] == f"{PROMPT} <lora:style:0.8>" and "style" in res["Lora hashes"]
    shown = run_cli("show", pictures["detail"], env=env).stdout
    lines = shown.splitlines()
    label = lines.index("  detail pass, as A1111's SD upscale writes it:")
    made_from = next(i for i, line in enumerate(lines) if line.startswith("made from: "))
    assert label < lines.index(text.splitlines()[0]) < made_from


def test_lora_tags_in_the_text_and_refine_from_applies_the_lora_once(made):
    pictures, env, out = made
    _, _, record, text = chunks(pictures["explore"])
    assert a1111_parse(text)["Prompt"] == f"{PROMPT} <lora:style:0.8>" and record["prompt"] == PROMPT
    again = run_json("refine", "--from", pictures["explore"], "--out", out, env=env)
    _, _, refined, refined_text = chunks(again["items"][0]["path"])
    assert refined["prompt"] == PROMPT and [(r["name"], r["weight"]) for r in refined["loras"]] == [("style", 0.8)]
    assert refined_text.count("<lora:") == 1


def test_a_new_record_field_adds_its_a1111_settings_without_editing_the_writer():
    from pipeline.core import images

    # a field no stage writes yet (ControlNet, the first real one, registered itself the same way)
    record = {"kind": "explore", "prompt": "a fox", "steps": 8, "guidance": 0.0, "seed": 1, "width": 64,
              "height": 64, "ip_adapter": {"image": "face.png", "weight": 0.6}}

    @images.a1111_entries("ip_adapter")
    def ip_adapter(params):
        return [("IP-Adapter", f"Image: {params['ip_adapter']['image']}, Weight: {params['ip_adapter']['weight']}")]

    try:
        text = images.a1111_parameters(record)
    finally:
        images.A1111_ENTRIES.remove(("ip_adapter", ip_adapter))
    assert a1111_parse(text)["IP-Adapter"] == "Image: face.png, Weight: 0.6"
    assert "IP-Adapter" not in images.a1111_parameters(record)
