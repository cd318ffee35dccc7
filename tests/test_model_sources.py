"""The model sources users already have, through the CLI, offline: a Hugging Face cache as `hf download`
leaves it (by repo id, @revision), and ComfyUI's single files. Each gives tiny-random's pixels."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli_env, run_cli, run_json
from hf_cache import REPO, add_snapshot, make_comfy_install, make_hub_cache, save_tiny_diffusers

PROMPT = "a cat, on a table: 日本語"
SMALL = ["--size", "64", "--seeds", "1,2"]
COMMIT, NEW_COMMIT = "1" * 40, "2" * 40


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The reference: tiny-random built in code."""
    out = tmp_path_factory.mktemp("tiny") / "outputs"
    return run_json("explore", PROMPT, "--model", "tiny-random", *SMALL, "--out", out)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    source = save_tiny_diffusers(root / "source")
    make_hub_cache(root / "hf", COMMIT, source=source)
    return root, source


def hub_env(root: Path):
    return cli_env(HF_HOME=root / "hf", HF_HUB_OFFLINE="1")


@pytest.fixture(scope="module")
def hub_run(hub):
    """Explore by repo id from the cache, at COMMIT."""
    root, _ = hub
    out = root / "outputs"
    return out, run_json("explore", PROMPT, "--model", REPO, *SMALL, "--out", out, env=hub_env(root))


def test_repo_id_explore_refine_upscale_from_the_cache(hub, hub_run, tiny_run):
    root, _ = hub
    (out, result), env = hub_run, hub_env(root)
    record = json.loads((Path(result["run_dir"]) / "run.json").read_text())
    assert record["model_fingerprint"] == f"hub:{REPO}@{COMMIT}"
    for ours, theirs in zip(result["items"], tiny_run["items"]):
        assert ours["key"] != theirs["key"]  # another model identity, so other keys...
        assert np.array_equal(pixels(ours["path"]), pixels(theirs["path"]))  # ...but the same pixels

    refined = run_json("refine", "--seeds", "1", "--out", out, env=env)  # the run's model: the repo id
    assert refined["computed"] == 1
    assert pixels(refined["items"][0]["path"]).shape == (128, 128, 3)
    upscaled = run_json("upscale", "--seeds", "1", "--upscaler", "realesr-animevideov3", "--out", out, env=env)
    assert pixels(upscaled["items"][0]["path"]).shape == (512, 512, 3)

    # a pinned revision is the same snapshot: the same keys, all stored
    pinned = run_json("explore", PROMPT, "--model", f"{REPO}@{COMMIT}", *SMALL, "--out", out, "--dry-run", env=env)
    assert (pinned["planned"], pinned["stored"]) == (2, 2)


def test_a_new_commit_in_refs_main_rekeys(hub, hub_run, tmp_path):
    root, source = hub
    hf = tmp_path / "hf"
    shutil.copytree(root / "hf", hf, symlinks=True)
    out, env = hub_run[0], cli_env(HF_HOME=hf, HF_HUB_OFFLINE="1")
    before = run_json("explore", PROMPT, "--model", REPO, *SMALL, "--out", out, "--dry-run", env=env)
    assert before["stored"] == 2  # rendered at COMMIT (hub_run)
    add_snapshot(hf / "hub", source, NEW_COMMIT)  # `hf download` after an upstream commit
    after = run_json("explore", PROMPT, "--model", REPO, *SMALL, "--out", out, "--dry-run", env=env)
    assert after["stored"] == 0
    old = run_json("explore", PROMPT, "--model", f"{REPO}@{COMMIT}", *SMALL, "--out", out, "--dry-run", env=env)
    assert old["stored"] == 2


def broken(hf: Path, how: str) -> None:
    snapshot = hf / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    shard = sorted((snapshot / "transformer").glob("*-00002-of-*.safetensors"))[0]
    blob = shard.resolve()
    if how == "missing shard":
        shard.unlink()
    elif how == "dangling symlink":
        blob.unlink()
    else:  # interrupted download: the blob is still .incomplete and the snapshot has no link yet
        blob.rename(blob.with_name(blob.name + ".incomplete"))
        shard.unlink()


@pytest.mark.parametrize("how", ["missing shard", "dangling symlink", "incomplete blob"])
def test_a_broken_snapshot_is_one_sentence(hub, tmp_path, how):
    root, _ = hub
    hf = tmp_path / "hf"
    shutil.copytree(root / "hf", hf, symlinks=True)
    broken(hf, how)
    proc = run_cli("explore", "another prompt", "--model", REPO, *SMALL, "--out", tmp_path / "out", check=False,
                   env=cli_env(HF_HOME=hf, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert f"snapshot {COMMIT[:12]} of {REPO}" in lines[0] and "is incomplete" in lines[0]
    assert "-00002-of-" in lines[0] and f"hf download {REPO}" in lines[0]
    if how == "incomplete blob":
        assert ".incomplete" in lines[0]


def test_an_uncached_revision_is_one_sentence(hub, tmp_path):
    root, _ = hub
    proc = run_cli("explore", PROMPT, "--model", f"{REPO}@v2.0", *SMALL, "--out", tmp_path / "out", check=False,
                   env=hub_env(root))
    assert proc.returncode == 2
    assert f"model {REPO} at revision v2.0 is not in the local Hugging Face cache" in proc.stderr
    assert f"hf download {REPO} --revision v2.0" in proc.stderr


# ---------------------------------------------------------------- ComfyUI


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    return make_comfy_install(tmp_path_factory.mktemp("comfy") / "ComfyUI")


def test_comfyui_install_gives_tiny_random_pixels(comfy, tiny_run, tmp_path):
    out = tmp_path / "outputs"
    result = run_json("explore", PROMPT, "--model", comfy, *SMALL, "--out", out)
    record = json.loads((Path(result["run_dir"]) / "run.json").read_text())
    assert record["model_fingerprint"].startswith("comfy:z_image_turbo_bf16:")
    for ours, theirs in zip(result["items"], tiny_run["items"]):
        assert np.array_equal(pixels(ours["path"]), pixels(theirs["path"]))
    # its models/ folder is the same model; touching a file changes its identity
    same = run_json("explore", PROMPT, "--model", comfy / "models", *SMALL, "--out", out, "--dry-run")
    assert same["stored"] == 2
    vae = comfy / "models" / "vae" / "ae.safetensors"
    os.utime(vae, ns=(vae.stat().st_atime_ns, vae.stat().st_mtime_ns + 10**9))
    changed = run_json("explore", PROMPT, "--model", comfy, *SMALL, "--out", out, "--dry-run")
    assert changed["stored"] == 0


def test_single_files_replace_tiny_random_components(comfy, tiny_run, tmp_path):
    models = comfy / "models"
    result = run_json("explore", PROMPT, "--model", "tiny-random", *SMALL, "--out", tmp_path / "outputs",
                      "--transformer", models / "diffusion_models" / "z_image_turbo_bf16.safetensors",
                      "--text-encoder", models / "text_encoders" / "qwen_3_4b.safetensors",
                      "--vae", models / "vae" / "ae.safetensors")
    for ours, theirs in zip(result["items"], tiny_run["items"]):
        assert ours["key"] != theirs["key"]
        assert np.array_equal(pixels(ours["path"]), pixels(theirs["path"]))


def test_comfyui_missing_pieces_are_one_sentence(comfy, tmp_path):
    copy = tmp_path / "models"
    shutil.copytree(comfy / "models", copy)  # a models/ folder without ComfyUI's code: no tokenizer
    proc = run_cli("explore", PROMPT, "--model", copy, *SMALL, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2
    assert "no Qwen tokenizer" in proc.stderr and str(tmp_path / "comfy" / "text_encoders") in proc.stderr
    (copy / "vae" / "ae.safetensors").unlink()
    proc = run_cli("explore", PROMPT, "--model", copy, *SMALL, "--out", tmp_path / "out", check=False)
    assert proc.returncode == 2 and "no VAE (ae.safetensors) found in" in proc.stderr
    proc = run_cli("explore", PROMPT, "--model", "tiny-random", *SMALL, "--out", tmp_path / "out",
                   "--vae", copy / "text_encoders" / "qwen_3_4b.safetensors", check=False)
    assert proc.returncode == 2 and "is not a VAE" in proc.stderr


def test_a_config_model_section_names_the_files(comfy, tmp_path):
    from pipeline.config.loader import RunConfig

    models = comfy / "models"
    config = RunConfig.model_validate({"prompts": "a cat", "model": {
        "source": "tiny-random", "vae": str(models / "vae" / "ae.safetensors"),
        "text_encoder": str(models / "text_encoders" / "qwen_3_4b.safetensors")}})
    assert config.model == "tiny-random" and config.vae.endswith("ae.safetensors") and config.transformer is None
    flat = RunConfig.model_validate({"prompts": "a cat", "model": "tiny-random", "vae": config.vae,
                                     "text_encoder": config.text_encoder})
    assert flat == config
    from pipeline.runner import pipeline_for

    with_files = pipeline_for(config).session.fingerprint
    assert with_files.startswith("tiny-random@") and "+text_encoder:" in with_files and "+vae:" in with_files
