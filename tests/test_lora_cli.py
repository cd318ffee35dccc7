"""LoRA through the CLI on the tiny model: names, records and metadata, refusals, refine and vary."""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from conftest import cli_env, run_cli  # noqa: E402
from lora_files import lora_tensors, write_lora  # noqa: E402
from test_a1111_metadata import a1111_parse  # noqa: E402

PROMPT = "a red fox in the snow"
BASE = ["--model", "tiny-random", "--dtype", "fp32", "--size", "128", "--steps", "4"]


@pytest.fixture
def folders(tmp_path):
    """weights/loras/ holding style.safetensors (kohya layout) and an env pointing at it."""
    weights = tmp_path / "weights"
    write_lora(weights / "loras" / "style.safetensors", "kohya", lora_tensors(seed=7), alpha=2.0)
    env = cli_env(PIPELINE_WEIGHTS=str(weights), PIPELINE_LORAS=str(tmp_path / "mine"))
    return tmp_path, weights / "loras", env


def picture_record(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text["pipeline"]), image.text["parameters"]


def a1111_lora_hash(path: Path) -> str:
    """A1111's LoRA hash (modules/hashes.py ``addnet_hash_safetensors``): sha256 of the bytes after the header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]


def a1111_lora_hashes(value: str) -> dict:
    """extensions-builtin/Lora/scripts/lora_script.py ``infotext_pasted``."""
    hashes = [x.strip().split(":", 1) for x in value.split(",")]
    return {x[0].strip().replace(",", ""): x[1].strip() for x in hashes}


def test_explore_records_the_lora_everywhere(folders):
    tmp, loras, env = folders
    out = tmp / "out"
    run_cli("explore", PROMPT, "--seeds", "3", "--lora", "style:0.8", "--out", out, *BASE, env=env)
    run = json.loads((out / "latest" / "run.json").read_text())
    sha = hashlib.sha256((loras / "style.safetensors").read_bytes()).hexdigest()
    assert [(r["name"], r["sha256"], r["weight"]) for r in run["loras"]] == [("style", sha, 0.8)]
    picture = out / "latest" / "explore" / "seed-3.png"
    record, parameters = picture_record(picture)
    assert [(r["name"], r["sha256"], r["weight"]) for r in record["loras"]] == [("style", sha, 0.8)]
    parsed = a1111_parse(parameters)  # A1111's own reading of the settings line
    assert a1111_lora_hashes(parsed["Lora hashes"]) == {"style": a1111_lora_hash(loras / "style.safetensors")}
    assert 'Lora hashes: "style: ' in parameters  # quoted, as A1111 writes a value holding a colon
    shown = run_cli("show", picture, env=env).stdout
    assert f"style  weight 0.8  sha256 {sha}" in shown
    listed = run_cli("weights", env=env).stdout
    assert "style" in listed and str(loras) in listed


def test_renaming_keeps_the_key_changing_the_content_rekeys(folders):
    tmp, loras, env = folders
    out = tmp / "out"
    args = ["explore", PROMPT, "--seeds", "3", "--out", out, *BASE]
    run_cli(*args, "--lora", "style:0.8", env=env)
    (loras / "style.safetensors").rename(loras / "renamed.safetensors")
    dry = run_cli(*args, "--lora", "renamed:0.8", "--dry-run", "--json", env=env)
    assert json.loads(dry.stdout)["stored"] == 1
    write_lora(loras / "renamed.safetensors", "kohya", lora_tensors(seed=8), alpha=2.0)  # new content
    dry = run_cli(*args, "--lora", "renamed:0.8", "--dry-run", "--json", env=env)
    assert json.loads(dry.stdout)["stored"] == 0
    dry = run_cli(*args, "--lora", "renamed:0.5", "--dry-run", "--json", env=env)  # another weight: another key
    assert json.loads(dry.stdout)["stored"] == 0


def _foreign(path: Path, keys: list[str]) -> Path:
    import torch
    from safetensors.torch import save_file

    save_file({k: torch.zeros(4, 8) for k in keys}, str(path))
    return path


@pytest.mark.parametrize("keys, made_for", [
    (["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
      "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight",
      "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"], "SDXL"),
    (["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight",
      "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight"], "Flux"),
    (["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight",
      "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight"], "Flux"),
])
def test_a_lora_for_another_model_is_refused(folders, keys, made_for):
    tmp, loras, env = folders
    _foreign(loras / "other.safetensors", keys)
    out = tmp / "out"
    proc = run_cli("explore", PROMPT, "--seeds", "3", "--lora", "other", "--out", out, *BASE, env=env, check=False)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: LoRA other.safetensors matches no layer") and made_for in error
    assert "Traceback" not in proc.stderr
    assert not list(out.glob("*/run.json")) and not (out / "latest").exists()


def test_a_pickle_is_refused(folders):
    tmp, loras, env = folders
    (loras / "old.ckpt").write_bytes(b"\x80\x04not really")
    for given in ("old.ckpt", str(loras / "old.ckpt")):
        proc = run_cli("explore", PROMPT, "--lora", given, "--out", tmp / "out", *BASE, env=env, check=False)
        assert proc.returncode == 2
        assert proc.stderr.strip().count("\n") == 0 and "pickle" in proc.stderr and ".safetensors" in proc.stderr


def test_a_missing_name_lists_where_it_looked(folders):
    tmp, loras, env = folders
    proc = run_cli("explore", PROMPT, "--lora", "nowhere:0.5", "--out", tmp / "out", *BASE, env=env, check=False)
    assert proc.returncode == 2
    assert "'nowhere' not found" in proc.stderr and str(loras) in proc.stderr and str(tmp / "mine") in proc.stderr


def test_a_partly_matching_lora_warns_with_counts(folders):
    import torch
    from safetensors.torch import load_file, save_file

    tmp, loras, env = folders
    state = load_file(str(loras / "style.safetensors"))
    state["lora_unet_layers_9_attention_to_q.lora_down.weight"] = torch.zeros(4, 64)  # no layer 9
    state["lora_unet_layers_9_attention_to_q.lora_up.weight"] = torch.zeros(64, 4)
    state["lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(4, 8)
    save_file(state, str(loras / "partly.safetensors"))
    proc = run_cli("explore", PROMPT, "--seeds", "3", "--lora", "partly", "--out", tmp / "out", *BASE, env=env)
    assert "partly.safetensors: 15 of its 16 layers match" in proc.stderr
    assert "1 text-encoder weights; they are not applied" in proc.stderr


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64)


def test_refine_and_vary_use_the_candidates_loras(folders):
    tmp, loras, env = folders
    out = tmp / "out"
    run_cli("explore", PROMPT, "--seeds", "3", "--lora", "style:0.8", "--out", out, *BASE, env=env)
    for mode in ("hires", "rerender"):
        run_cli("refine", "--seeds", "3", "--mode", mode, "--scale", "1.5", "--out", out, "--dtype", "fp32", env=env)
        styled = out / "latest" / "refine" / "seed-3.png"
        record, _ = picture_record(styled)
        assert [(r["name"], r["weight"]) for r in record["loras"]] == [("style", 0.8)], mode
        kept = pixels(styled)
        run_cli("refine", "--seeds", "3", "--mode", mode, "--scale", "1.5", "--no-lora", "--out", out,
                "--dtype", "fp32", env=env)
        record, _ = picture_record(styled)
        assert "loras" not in record
        assert np.abs(kept - pixels(styled)).mean() > 1, f"{mode}: the LoRA should change the refined picture"
    run_cli("vary", "--seeds", "3", "--count", "1", "--out", out, "--dtype", "fp32", env=env)
    record, _ = picture_record(out / "latest" / "explore" / "seed-3v1.png")
    assert [(r["name"], r["weight"]) for r in record["loras"]] == [("style", 0.8)]
    run_cli("vary", "--seeds", "3", "--count", "1", "--no-lora", "--out", out, "--dtype", "fp32", env=env)
    run = json.loads((out / "latest" / "run.json").read_text())
    by_seed = {c["seed"]: c for c in run["explore"]["pictures"]}
    assert by_seed["3v2"]["loras"] == [] and len(by_seed["3v1"]["loras"]) == 1
    run_cli("refine", "--seeds", "3v2", "--scale", "1.5", "--out", out, "--dtype", "fp32", env=env)  # its own: none
    record, _ = picture_record(out / "latest" / "refine" / "seed-3v2.png")
    assert "loras" not in record


def test_refine_from_an_image_finds_its_lora_by_digest(folders):
    tmp, loras, env = folders
    out = tmp / "out"
    run_cli("explore", PROMPT, "--seeds", "3", "--lora", "style:0.8", "--out", out, *BASE, env=env)
    picture = tmp / "picked.png"
    shutil.copy(out / "latest" / "explore" / "seed-3.png", picture)
    (loras / "style.safetensors").rename(loras / "moved.safetensors")  # found by content, not by name
    run_cli("refine", "--from", picture, "--scale", "1.5", "--out", out, "--dtype", "fp32", env=env)
    refined = next((out / "latest" / "refine").glob("*.png"))
    assert [(r["name"], r["weight"]) for r in picture_record(refined)[0]["loras"]] == [("moved", 0.8)]
    shutil.move(loras / "moved.safetensors", tmp / "elsewhere.safetensors")
    again = run_cli("refine", "--from", picture, "--scale", "1.5", "--out", out, "--dtype", "fp32", env=env)
    assert "1 reused" in again.stdout  # stored: the file is not needed
    proc = run_cli("refine", "--from", picture, "--scale", "2", "--out", out, "--dtype", "fp32", env=env, check=False)
    assert proc.returncode == 2
    assert "was made with LoRA 'style'" in proc.stderr and str(loras) in proc.stderr and "--no-lora" in proc.stderr
    run_cli("refine", "--from", picture, "--scale", "2", "--no-lora", "--out", out, "--dtype", "fp32", env=env)
    run_cli("refine", "--from", picture, "--scale", "2", "--lora", f"{tmp / 'elsewhere.safetensors'}:0.8",
            "--out", out, "--dtype", "fp32", env=env)


def test_a_config_takes_loras_at_the_top_and_per_stage(folders):
    tmp, loras, env = folders
    config = tmp / "run.yaml"
    config.write_text(f"model: tiny-random\ndtype: fp32\nout: {tmp / 'out'}\nprompts: [{PROMPT}]\nloras: [style:0.8]\n"
                      "explore: {seeds: [3], size: 128, steps: 4}\n"
                      "refine: {picks: [3], scale: 1.5, loras: []}\n")
    run_cli("run", config, env=env)
    run = json.loads(next((tmp / "out").glob("*/run.json")).read_text())
    assert [(r["name"], r["weight"]) for r in run["loras"]] == [("style", 0.8)]
    assert "loras" not in run["refine"]["pictures"][0]


def test_the_gallery_and_the_contact_sheet_show_the_runs_loras(folders):
    tmp, loras, env = folders
    out = tmp / "out"
    run_cli("explore", PROMPT, "--seeds", "3,4", "--lora", "style:0.8", "--out", out, *BASE, env=env)
    page = (out / "latest" / "index.html").read_text()
    assert '<span class="k">LoRA</span> <span class="v">style 0.8</span>' in page
    assert '"loras": "style 0.8"' in page or '"loras":"style 0.8"' in page
    with Image.open(out / "latest" / "explore" / "contact.png") as sheet:
        with_title = sheet.size
    run_cli("explore", PROMPT, "--seeds", "3,4", "--out", tmp / "plain", *BASE, env=env)
    with Image.open(tmp / "plain" / "latest" / "explore" / "contact.png") as sheet:
        assert with_title[1] == sheet.size[1] + 18  # one line on top: "LoRA: style 0.8"


def test_a_stored_lora_picture_loads_no_torch(folders):
    """Planning with a LoRA needs its digest only: a re-run from the store imports neither torch nor diffusers."""
    import subprocess

    tmp, loras, env = folders
    out = tmp / "out"
    run_cli("explore", PROMPT, "--seeds", "3", "--lora", "style:0.8", "--out", out, *BASE, env=env)
    code = ("import sys; from pipeline.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'diffusers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, "explore", PROMPT, "--seeds", "3", "--lora", "style:0.8",
                           "--out", str(out), *map(str, BASE)], capture_output=True, text=True, env=env, timeout=300)
    assert "0 computed, 1 reused" in proc.stdout and proc.stdout.strip().endswith("False False"), proc.stderr


def test_refining_an_a1111_picture_made_with_loras_says_they_are_not_applied(tmp_path):
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red fox\nNegative prompt: blur\nSteps: 20, Sampler: Euler, CFG scale: 7, "
                                'Seed: 123, Size: 64x64, Lora hashes: "style: abc123def456"')
    picture = tmp_path / "a1111.png"
    Image.new("RGB", (64, 64), "gray").save(picture, pnginfo=info)
    proc = run_cli("refine", "--from", picture, "--model", "tiny-random", "--out", tmp_path / "out", "--dry-run")
    assert "made with LoRAs (style: abc123def456) for another program's model; they are not applied" in proc.stderr
    quiet = run_cli("refine", "--from", picture, "--model", "tiny-random", "--out", tmp_path / "out", "--dry-run",
                    "--no-lora")
    assert "another program's model" not in quiet.stderr  # the user said: no LoRA
