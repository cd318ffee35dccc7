"""`pipeline upscale --detail`: super-resolution, then the tiny Z-Image re-draws the picture over tiles."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_json

FAST = ["--upscaler", "realesr-animevideov3"]
DETAIL = ["--detail", "0.4", "--detail-tile", "64"]  # 128² out of a 64² candidate: 3 x 3 tiles sharing 16 px


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detail") / "outputs"
    result = run_json("explore", "a lighthouse at dusk", "--model", "tiny-random", "--size", "64", "--seeds", "1,2",
                      "--out", out)
    return out, Path(result["run_dir"])


@pytest.fixture(scope="module")
def detailed(run):
    out, run_dir = run
    return run_json("upscale", "--seeds", "1", *FAST, *DETAIL, "--out", out)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_detail_upscales_by_2_and_a_rerun_computes_nothing(run, detailed):
    out, run_dir = run
    assert detailed["computed"] == 1
    dest = Path(detailed["items"][0]["path"])
    assert dest == run_dir / "upscale" / "seed-1.png"
    assert pixels(dest).shape == (128, 128, 3)
    again = run_json("upscale", "--seeds", "1", *FAST, *DETAIL, "--out", out)
    assert again["computed"] == 0 and again["items"][0]["key"] == detailed["items"][0]["key"]
    dry = run_json("upscale", "--seeds", "1,2", *FAST, *DETAIL, "--out", out, "--dry-run")
    assert (dry["planned"], dry["stored"], dry["computed"]) == (2, 1, 1)


def test_detail_changes_the_upscaled_picture_and_strength_0_is_the_plain_upscale(run, detailed):
    out, run_dir = run
    detail_pixels = pixels(detailed["items"][0]["path"])
    zero = run_json("upscale", "--seeds", "1", *FAST, "--detail", "0", "--scale", "2", "--out", out)
    plain = run_json("upscale", "--seeds", "1", *FAST, "--scale", "2", "--out", out)
    assert zero["items"][0]["key"] == plain["items"][0]["key"] != detailed["items"][0]["key"]
    assert plain["computed"] == 0  # the detail run stored its plain upscale under the same key
    plain_pixels = pixels(plain["items"][0]["path"])
    assert np.array_equal(pixels(zero["items"][0]["path"]), plain_pixels)
    assert np.abs(detail_pixels - plain_pixels).mean() > 2  # it re-drew the picture
    run_json("upscale", "--seeds", "1", *FAST, *DETAIL, "--out", out)  # leave the detail picture in place


def _seam_lines(tiles: list, axis: int) -> set:
    """Where a seam could show along one axis: each tile's inner edges and the middle of each shared band."""
    starts = sorted({t[axis] for t in tiles})
    size = tiles[0][axis + 2]
    lines = set(starts[1:]) | {s + size for s in starts[:-1]}
    return lines | {(b + a + size) // 2 for a, b in zip(starts, starts[1:])}


def _line_steps(image: np.ndarray, tiles: list) -> tuple[list[float], np.ndarray]:
    """Mean |Δ| across each whole column/row line where a tile edge or a seam could be, and the same for
    every line between neighbouring columns and rows of the picture."""
    gray = image.mean(axis=2)
    across_columns = np.abs(np.diff(gray, axis=1)).mean(axis=0)  # [c - 1]: between columns c - 1 and c
    across_rows = np.abs(np.diff(gray, axis=0)).mean(axis=1)
    steps = [float(across_columns[c - 1]) for c in sorted(_seam_lines(tiles, 0))]
    steps += [float(across_rows[r - 1]) for r in sorted(_seam_lines(tiles, 1))]
    return steps, np.concatenate([across_columns, across_rows])


def _smooth_picture(path: Path, size: int = 64) -> Path:
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    rgb = np.stack([0.3 + 0.5 * x, 0.4 + 0.3 * np.sin(3 * y + 1), 0.6 - 0.4 * x * y], axis=2)
    Image.fromarray((rgb * 255).astype("uint8")).save(path)
    return path


def test_no_step_at_tile_edges(tmp_path):
    """Across the lines where tiles meet (their edges and the middles of the shared bands) the picture
    changes no more than anywhere: their mean |Δ| is on average within 1.25x the picture's median line.
    The tiny random model draws blob-like texture, so single lines of a seamless picture exceed 1.25x the
    median (a third of all lines do), which is why the lines are averaged; a cut in the middle of each
    band instead of the cross-fade (the control below) puts that average at 1.4-4.5x (measured: 3 seeds,
    2 pictures, strengths 0.1-0.4), the cross-fade at 0.9-1.3x."""
    from pipeline.engines.detail import add_detail
    from pipeline.core.jobs import DetailJob
    from pipeline.session import Session

    picture = _smooth_picture(tmp_path / "smooth.png")
    result = run_json("upscale", picture, *FAST, *DETAIL, "--prompt", "a lighthouse at dusk", "--model",
                      "tiny-random", "--out", tmp_path / "o")
    path = result["items"][0]["path"]
    with Image.open(path) as image:
        record = json.loads(image.text["pipeline"])["upscale"]
        tiles = record["detail"]["tiles"]
    assert len(tiles) == 9
    steps, lines = _line_steps(pixels(path), tiles)
    assert np.mean(steps) <= 1.25 * float(np.median(lines)), (steps, float(np.median(lines)))

    # control: the same tiles cut in the middle of each band show their seams to this measure
    session = Session(model="tiny-random", out=tmp_path / "o")
    job = DetailJob(**{k: v for k, v in record["detail"].items() if k in (
        "strength", "tile", "overlap", "steps", "guidance", "seed", "prompt", "model", "dtype")},
        sr=record["sr_key"], negative="", width=128, height=128)
    with Image.open(_stored(session, record["sr_key"])) as sr:
        canvas = sr.convert("RGB")
    engine = session.engine()
    assert np.array_equal(np.asarray(add_detail(engine, canvas, job)), pixels(path).astype(np.uint8))
    cut = add_detail(engine, canvas, job, blend=0.0)
    cut_steps, cut_lines = _line_steps(np.asarray(cut, np.float64), tiles)
    assert np.mean(cut_steps) > 1.25 * float(np.median(cut_lines))


def _stored(session, key: str) -> Path:
    return session.store.get(key).path


def test_record_and_metadata(run, detailed):
    out, run_dir = run
    path = detailed["items"][0]["path"]
    with Image.open(path) as image:
        parameters = image.text["parameters"]
        record = json.loads(image.text["pipeline"])
        assert "postprocessing" not in image.text  # an img2img pass, not an Extras-tab one
    # what A1111's SD upscale script writes: the img2img text, Size = its tile, and its two entries
    assert parameters.splitlines()[0] == "a lighthouse at dusk"
    assert ("Seed: 1, Size: 64x64, Model: tiny-random, Denoising strength: 0.4, SD upscale overlap: 16, "
            "SD upscale upscaler: R-ESRGAN AnimeVideo") in parameters
    step = record["upscale"]
    assert step["key"] == detailed["items"][0]["key"] and step["upscaler"] == "realesr-animevideov3"
    assert (step["width"], step["height"], step["scale"]) == (128, 128, 2.0)
    detail = step["detail"]
    assert (detail["strength"], detail["tile"], detail["overlap"], detail["seed"]) == (0.4, 64, 16, 1)
    assert detail["tiles"][0] == [0, 0, 64, 64] and detail["tiles"][-1] == [64, 64, 64, 64]
    assert record["seed"] == 1 and record["kind"] == "explore"  # the source's record is kept
    entry = json.loads((run_dir / "run.json").read_text())["upscale"]["pictures"][0]
    assert entry["upscaler"] == "realesr-animevideov3"
    assert (entry["detail"], entry["detail_tile"], entry["detail_overlap"], entry["scale"]) == (0.4, 64, 16, 2.0)
    shown = run_cli("show", path).stdout
    assert "detail: strength 0.4, tiny-random, 8 steps, seed 1, 9 tiles of at most 64 px sharing 16 px" in shown
    page = (run_dir / "index.html").read_text()
    assert "+ detail 0.4" in page


def test_a_file_needs_a_prompt_and_odd_sizes_work(tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    Image.fromarray((rng.random((50, 70, 3)) * 255).astype("uint8")).save(photo)
    proc = run_cli("upscale", photo, *FAST, "--detail", "0.3", "--model", "tiny-random", "--out", tmp_path / "o",
                   check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {photo} carries no prompt: give --prompt to add detail to it"
    result = run_json("upscale", photo, *FAST, "--detail", "0.3", "--detail-tile", "64", "--prompt", "a harbour",
                      "--model", "tiny-random", "--out", tmp_path / "o")
    dest = Path(result["items"][0]["path"])
    assert dest == tmp_path / "o" / "upscaled" / "photo-x2.png"
    assert pixels(dest).shape == (100, 140, 3)


@pytest.mark.parametrize("args, message", [
    (["--detail", "1.5"], "error: --detail must be from 0 (off) to 1, not 1.5"),
    (["--detail", "-0.2"], "error: --detail must be from 0 (off) to 1, not -0.2"),
    (["--detail", "0.3", "--detail-tile", "32"], "error: --detail-tile must be 64 to 4096 output pixels, not 32"),
])
def test_bad_values_are_one_sentence(tmp_path, args, message):
    picture = tmp_path / "p.png"
    Image.new("RGB", (32, 32), (10, 120, 200)).save(picture)
    proc = run_cli("upscale", picture, *FAST, *args, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == message


def test_library_detail_with_another_model_and_ctrl_c_keeps_finished_pictures(run):
    from pipeline import Pipeline

    out, run_dir = run
    seen = []

    def on_progress(done, total):
        seen.append((done, total))
        if done >= total - 8:  # the first of the second picture's 9 tiles is done
            raise KeyboardInterrupt

    with Pipeline(out=out) as p:  # the default (Z-Image-Turbo) Pipeline; the detail pass uses model=
        with pytest.raises(KeyboardInterrupt):
            p.upscale(seeds=[1, 2], upscaler="realesr-animevideov3", detail=0.25, detail_tile=64,
                      model="tiny-random", run=str(run_dir), on_progress=on_progress)
        entries = json.loads((run_dir / "run.json").read_text())["upscale"]["pictures"]
        finished = [e for e in entries if e.get("detail") == 0.25]
        assert [e["seed"] for e in finished] == [1]
        again = p.upscale(seeds=[1, 2], upscaler="realesr-animevideov3", detail=0.25, detail_tile=64,
                          model="tiny-random", run=str(run_dir))
    assert [item.cached for item in again.items] == [True, False]


def test_detail_uses_the_pictures_loras(tmp_path):
    """A picture made with a LoRA is detailed with it (as refine does): the key and record carry it, and
    without its file nothing is computed (one sentence)."""
    import hashlib
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import cli_env
    from lora_files import lora_tensors, write_lora

    weights = tmp_path / "weights"
    lora = write_lora(weights / "loras" / "style.safetensors", "kohya", lora_tensors(seed=7), alpha=2.0)
    env = cli_env(PIPELINE_WEIGHTS=str(weights), PIPELINE_LORAS=str(tmp_path / "mine"))
    out = tmp_path / "out"
    run_cli("explore", "a red fox", "--seeds", "3", "--lora", "style:0.8", "--model", "tiny-random", "--size", "64",
            "--out", out, env=env)
    result = run_json("upscale", "--seeds", "3", *FAST, *DETAIL, "--out", out, env=env)
    with Image.open(result["items"][0]["path"]) as image:
        detail = json.loads(image.text["pipeline"])["upscale"]["detail"]
    sha = hashlib.sha256(lora.read_bytes()).hexdigest()
    assert detail["loras"] == [{"sha256": sha, "weight": 0.8}]
    lora.rename(tmp_path / "elsewhere.safetensors")
    proc = run_cli("upscale", "--seeds", "3", *FAST, "--detail", "0.3", "--detail-tile", "64", "--out", out,
                   env=env, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "LoRA 'style'" in proc.stderr and proc.stderr.strip().endswith(
        "put the file there to add detail with it, or upscale without --detail")


def test_stop_during_the_detail_pass_ends_between_tiles_and_keeps_what_was_finished(tmp_path):
    """Stop set while a picture's tiles are drawn: no further model call, that picture is not stored, and the
    next call makes it whole."""
    import threading

    from pipeline import Pipeline

    stop = threading.Event()
    calls = []

    def on_progress(done, total):
        calls.append(done)
        if done > total - 2 * 9:  # the first tile of the first picture is drawn (3 x 3 tiles a picture)
            stop.set()

    with Pipeline(model="tiny-random", out=tmp_path / "out") as p:
        run = p.explore("a lighthouse at dusk", seeds=[1, 2], size=64)
        stopped = p.upscale(run, upscaler="realesr-animevideov3", detail=0.4, detail_tile=64,
                            on_progress=on_progress, stop=stop)
        assert stopped.items == [] and stopped.computed == 0  # picture 1 was left after its first tile
        whole = p.upscale(run, upscaler="realesr-animevideov3", detail=0.4, detail_tile=64)
    assert whole.computed == 2 and all(item.path.is_file() for item in whole.items)
