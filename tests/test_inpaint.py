"""`pipeline inpaint` on the tiny model: a fix changes what its mask covers and nothing else, joins the run as
42i1 next to its parent with its mask beside it, is found again in the store, and bad input is one sentence."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_json
from pipeline.core import masks

TINY = ["--model", "tiny-random"]
FAST = ["--steps", "2", "--work", "128"]  # 2 steps at 0.75: one model call per crop


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def save_mask(path: Path, size, box) -> Path:
    Image.fromarray(masks.box_mask(size, box).astype(np.uint8) * 255).save(path)
    return path


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    """Candidate 1 (128²) of run fox, and a fix of its top right corner."""
    root = tmp_path_factory.mktemp("inpaint")
    out = root / "outputs"
    run_json("explore", "a red fox in snow", *TINY, "--size", "128", "--seeds", "1", "--steps", "2", "--out", out,
             "--run", "fox")
    corner = save_mask(root / "corner.png", (128, 128), (88, 8, 120, 40))
    result = run_json("inpaint", "--seeds", "1", "--mask", corner, *FAST, "--out", out)
    return root, out, out / "fox", result


def inpaint_entries(run_dir: Path) -> dict:
    data = json.loads((run_dir / "run.json").read_text())
    return {p["seed"]: p for p in data["inpaint"]["pictures"]}


def test_outside_the_blurred_mask_the_fix_is_the_parent_byte_for_byte(fixed):
    root, out, run_dir, result = fixed
    assert (result["stage"], result["computed"], [i["seed"] for i in result["items"]]) == ("inpaint", 1, ["1i1"])
    fix_path = run_dir / "inpaint" / "seed-1i1.png"
    assert Path(result["items"][0]["path"]) == fix_path
    parent, fix = pixels(run_dir / "explore" / "seed-1.png"), pixels(fix_path)
    weight = masks.feather(masks.box_mask((128, 128), (88, 8, 120, 40)), 4)
    assert np.array_equal(fix[weight == 0], parent[weight == 0])
    assert (fix[weight == 1] != parent[weight == 1]).any()  # inside, the model re-drew it
    kept = pixels(run_dir / "inpaint" / "seed-1i1-mask.png")  # the mask beside the picture
    assert masks.bbox(kept[..., 0] > 0) == (88, 8, 120, 40)
    entry = inpaint_entries(run_dir)["1i1"]
    assert (entry["parent"], entry["from"], entry["mask"]) == ("1", "explore", "inpaint/seed-1i1-mask.png")
    with Image.open(fix_path) as image:
        text, record = image.text["parameters"], json.loads(image.text["pipeline"])
    for key in ("Denoising strength: 0.75", "Mask blur: 4", "Inpaint area: Only masked", "Masked area padding: 32"):
        assert key in text
    assert record["parent_key"] == entry["parent_key"]
    assert record["renders"] == [{"box": [53, 0, 128, 75], "size": [128, 128]}]  # mask + fade + 32 px, at 128²


def test_a_rerun_computes_nothing_and_a_changed_mask_is_a_new_fix(fixed):
    root, out, run_dir, first = fixed
    again = run_json("inpaint", "--seeds", "1", "--mask", root / "corner.png", *FAST, "--out", out)
    assert (again["computed"], again["stored"]) == (0, 1)
    assert again["items"][0]["seed"] == "1i1" and again["items"][0]["key"] == first["items"][0]["key"]
    other = save_mask(root / "other.png", (128, 128), (8, 80, 40, 120))
    moved = run_json("inpaint", "--seeds", "1", "--mask", other, *FAST, "--out", out)
    assert moved["computed"] == 1 and moved["items"][0]["seed"] == "1i2"
    assert moved["items"][0]["key"] != first["items"][0]["key"]
    assert set(inpaint_entries(run_dir)) >= {"1i1", "1i2"}
    chain = run_json("inpaint", "--seeds", "1i1", "--from", "inpaint", "--mask", other, *FAST, "--out", out)
    assert chain["items"][0]["seed"] == "1i1i1"
    assert inpaint_entries(run_dir)["1i1i1"]["parent"] == "1i1"
    page = (run_dir / "index.html").read_text()
    assert "fixed 1i1i1" in page and "fixed 1i2" in page  # the chain, next to candidate 1


def test_outpaint_keeps_the_original_pixels_in_their_place(fixed):
    root, out, run_dir, _ = fixed
    result = run_json("inpaint", "--seeds", "1", "--extend", "left:32,bottom:16", *FAST, "--out", out)
    path = Path(result["items"][0]["path"])
    grown, parent = pixels(path), pixels(run_dir / "explore" / "seed-1.png")
    assert grown.shape == (144, 160, 3)
    assert np.array_equal(grown[0:125, 35:160], parent[0:125, 3:128])  # beyond the 3 px feather band
    with Image.open(path) as image:
        assert "Outpaint: \"left:32,bottom:16\"" in image.text["parameters"]
        assert "Denoising strength: 1" in image.text["parameters"]


def test_a_picture_from_disk_is_fixed_into_out_inpainted(fixed, tmp_path):
    root, out, run_dir, _ = fixed
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels(run_dir / "explore" / "seed-1.png")).save(photo)  # no metadata
    mask = save_mask(tmp_path / "m.png", (64, 64), (0, 0, 16, 16))  # half the size: resized, and said
    refused = run_cli("inpaint", photo, "--mask", mask, *TINY, *FAST, "--out", out, check=False)
    assert refused.returncode == 2 and "carries no prompt in its metadata: give --prompt" in refused.stderr
    done = run_cli("inpaint", photo, "--mask", mask, "--prompt", "a fox", *TINY, *FAST, "--out", out, "--json")
    assert "the mask (64x64) was resized to the picture's 128x128" in done.stderr
    item = json.loads(done.stdout)["items"][0]
    assert Path(item["path"]).parent == out / "inpainted" and Path(item["path"]).name.startswith("photo-")
    changed = (pixels(item["path"]) != pixels(photo)).any(axis=2)
    assert masks.bbox(changed)[2] <= 35 and masks.bbox(changed)[3] <= 35


def snapshot(out: Path) -> dict:
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and ".lock" not in p.name}


@pytest.mark.parametrize("make, args, sentence", [
    (lambda d: (d / "m.txt").write_text("no"), ["--mask", "{d}/m.txt"], "is not an image"),
    (lambda d: Image.new("L", (128, 128)).save(d / "m.png"), ["--mask", "{d}/m.png"], "nothing to re-draw"),
    (lambda d: Image.new("L", (128, 64), 255).save(d / "m.png"), ["--mask", "{d}/m.png"],
     "is 128x64 but the picture is 128x128: a mask must have the picture's shape"),
    (None, ["--hands"], "--hands is not offered"),
    (None, [], "say what to re-draw: --mask MASK.png, --faces, or --extend SIDE:PX"),
    (None, ["--seeds", "7", "--extend", "left:16"], "7: not among run fox's explore pictures"),
    (None, ["--extend", "up:16"], "cannot read --extend item 'up:16'"),
    (None, ["--faces"], "no face was found at confidence 0.3"),
])
def test_refusals_are_one_sentence_and_write_nothing(fixed, tmp_path, make, args, sentence):
    root, out, run_dir, _ = fixed
    if make:
        make(tmp_path)
    before = snapshot(out)
    args = [a.format(d=tmp_path) for a in args]
    seeds = [] if "--seeds" in args else ["--seeds", "1"]
    proc = run_cli("inpaint", *seeds, *args, *FAST, "--out", out, check=False)
    assert proc.returncode == 2, proc.stderr
    assert sentence in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert snapshot(out) == before


def test_a_stored_fix_imports_neither_torch_nor_diffusers(fixed):
    import subprocess
    import sys

    from conftest import ROOT, cli_env

    root, out, run_dir, _ = fixed
    code = ("import json, sys\nfrom pipeline import Pipeline\n"
            f"r = Pipeline(model='tiny-random', out={str(out)!r}).inpaint(\n"
            f"    seeds=['1'], mask={str(root / 'corner.png')!r}, steps=2, work=128)\n"
            "print(json.dumps([r.computed, r.stored, 'torch' in sys.modules, 'diffusers' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=ROOT,
                          timeout=300)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0, 1, False, False], proc.stderr


def test_a_fix_is_refined_and_upscaled_like_any_picture(fixed):
    root, out, run_dir, _ = fixed
    refined = run_json("refine", "--seeds", "1i1", "--scale", "1.5", "--steps", "2", *TINY, "--out", out)
    assert [item["seed"] for item in refined["items"]] == ["1i1"]
    assert Path(refined["items"][0]["path"]) == run_dir / "refine" / "seed-1i1.png"
    with Image.open(refined["items"][0]["path"]) as image:
        assert image.size == (192, 192)
        parent = json.loads(image.text["pipeline"])["parent"]
    assert parent == hashlib.sha256((run_dir / "inpaint" / "seed-1i1.png").read_bytes()).hexdigest()  # from the fix
    upscaled = run_json("upscale", "--seeds", "1i1", "--upscaler", "realesr-animevideov3", "--out", out)
    assert Path(upscaled["items"][0]["path"]).name == "seed-1i1.png"
    assert "1i1" in (run_dir / "index.html").read_text()


def test_a_lora_and_int8_weights_change_the_fix_and_its_key_and_not_the_rest(fixed, tmp_path):
    from lora_files import lora_tensors, write_lora

    root, out, run_dir, plain = fixed
    lora = write_lora(tmp_path / "style.safetensors", "kohya", lora_tensors(seed=7, scale=2.0), alpha=2.0)
    with_lora = run_json("inpaint", "--seeds", "1", "--mask", root / "corner.png", "--lora", lora, *FAST, "--out", out)
    int8 = run_json("inpaint", "--seeds", "1", "--mask", root / "corner.png", "--weights-dtype", "int8", *FAST,
                    "--out", out)
    keys = {plain["items"][0]["key"], with_lora["items"][0]["key"], int8["items"][0]["key"]}
    assert len(keys) == 3 and with_lora["computed"] == int8["computed"] == 1
    parent = pixels(run_dir / "explore" / "seed-1.png")
    weight = masks.feather(masks.box_mask((128, 128), (88, 8, 120, 40)), 4)
    for result in (with_lora, int8):
        fix = pixels(result["items"][0]["path"])
        assert np.array_equal(fix[weight == 0], parent[weight == 0])
    assert not np.array_equal(pixels(with_lora["items"][0]["path"]), pixels(plain["items"][0]["path"]))
    with Image.open(with_lora["items"][0]["path"]) as image:
        assert json.loads(image.text["pipeline"])["loras"][0]["weight"] == 1.0


def test_repair_rebuilds_the_fixes_from_the_store(fixed):
    root, out, run_dir, _ = fixed
    before = inpaint_entries(run_dir)
    (run_dir / "run.json").unlink()
    run_cli("repair", run_dir, "--out", out)
    after = inpaint_entries(run_dir)
    assert set(after) == set(before)
    for ident in before:
        for key in ("key", "path", "mask", "parent", "from", "strength", "noise_seed"):
            assert after[ident].get(key) == before[ident].get(key), (ident, key)
