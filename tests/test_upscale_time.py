"""An upscale says beforehand how long it will take, counts tiles as it goes, and a Ctrl-C
keeps the pictures finished before it.  Library and CLI, offline, on the compact model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, run_cli
from PIL import Image

from pipeline.api import Pipeline
from pipeline.stages.upscale_time import TileProgress

FAST = "realesr-animevideov3"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("PIPELINE_OFFLINE", "1")


def _upscaled_shapes(monkeypatch) -> list:
    """The (height, width) of every array the upscaler runs on from now on (probes and pictures), in order."""
    from pipeline.engines import upscaler as U

    shapes = []
    real = U.Upscaler.upscale_arrays

    def watched(self, arrays, **kwargs):
        shapes.extend(a.shape[:2] for a in arrays)
        return real(self, arrays, **kwargs)

    monkeypatch.setattr(U.Upscaler, "upscale_arrays", watched)
    return shapes


def _pictures(folder: Path, sizes) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"p{i}.png"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")).save(path)
        paths.append(path)
    return paths


def test_a_long_upscale_says_how_long_and_what_is_faster(tmp_path):
    (picture,) = _pictures(tmp_path / "in", [(40, 40)])
    # "long" is anything over PIPELINE_UPSCALE_WARN_SECONDS; 0 makes every upscale long
    proc = run_cli("upscale", picture, "--upscaler", "realesrgan-x4plus-anime", "--tile", "32", "--out", tmp_path / "o",
                   env=cli_env(PIPELINE_UPSCALE_WARN_SECONDS="0"))
    assert "this will take about" in proc.stderr and "1 picture" in proc.stderr
    assert "--upscaler realesr-animevideov3" in proc.stderr and "GPU" in proc.stderr
    assert "tile" in proc.stderr  # the progress bar counts tiles
    short = run_cli("upscale", picture, "--upscaler", FAST, "--out", tmp_path / "o2")
    assert "this will take about" not in short.stderr  # well under the default minute


def test_progress_counts_tiles_and_estimate_is_seconds(tmp_path):
    pictures = _pictures(tmp_path / "in", [(40, 24), (24, 40)])
    calls = []
    with Pipeline(out=tmp_path / "o", device="cpu") as p:
        seconds = p.estimate_upscale(pictures, upscaler=FAST, tile=16, overlap=8)
        result = p.upscale(pictures, upscaler=FAST, tile=16, overlap=8, on_progress=lambda d, t: calls.append((d, t)))
        engine = next(iter(p.session._upscalers.values()))
        expected = engine.windows(40, 24, 16, 8) + engine.windows(24, 40, 16, 8)
        assert result.computed == 2 and seconds > 0
        assert calls[-1] == (expected, expected) and expected == 2 + 2
        assert [d for d, _ in calls] == sorted(d for d, _ in calls)  # only forward
        calls.clear()
        again = p.upscale(pictures, upscaler=FAST, tile=16, overlap=8, on_progress=lambda d, t: calls.append((d, t)))
        assert again.computed == 0 and calls == []  # stored pictures have no tiles to count
        assert p.estimate_upscale(pictures, upscaler=FAST, tile=16, overlap=8) == 0


def test_ctrl_c_keeps_the_finished_pictures(tmp_path):
    pictures = _pictures(tmp_path / "in", [(32, 32), (32, 32), (32, 32)])
    per_picture = []

    def interrupt_in_the_second_picture(done, total):
        if not per_picture:
            per_picture.append(total // 3)
        if done > per_picture[0]:
            raise KeyboardInterrupt

    with Pipeline(out=tmp_path / "o", device="cpu") as p:
        with pytest.raises(KeyboardInterrupt):
            p.upscale(pictures, upscaler=FAST, tile=16, on_progress=interrupt_in_the_second_picture)
        done = sorted(path.name for path in (tmp_path / "o" / "upscaled").iterdir())
        assert done == ["p0-x4.png"]
        with Image.open(tmp_path / "o" / "upscaled" / "p0-x4.png") as image:
            assert image.size == (128, 128)
        again = p.upscale(pictures, upscaler=FAST, tile=16)
    assert (again.computed, again.stored) == (2, 1)


def test_ctrl_c_in_a_run_keeps_finished_pictures_in_run_json(tmp_path):
    out = tmp_path / "outputs"
    run_cli("explore", "a boat", "--model", "tiny-random", "--size", "64", "--seeds", "1,2", "--out", out)
    seen = []

    def interrupt_in_the_second_picture(done, total):
        seen.append(done)
        if done > total // 2:
            raise KeyboardInterrupt

    with Pipeline(out=out, device="cpu") as p:
        with pytest.raises(KeyboardInterrupt):
            p.upscale(seeds="1,2", upscaler=FAST, tile=32, on_progress=interrupt_in_the_second_picture)
    run_dir = (out / "latest").resolve()
    data = json.loads((run_dir / "run.json").read_text())
    recorded = [entry["path"] for entry in data["upscale"]["pictures"]]
    assert recorded == ["upscale/seed-1.png"] and (run_dir / "upscale" / "seed-1.png").is_file()
    assert not (run_dir / "upscale" / "seed-2.png").exists()


def test_tile_progress_follows_a_picture_with_more_windows_than_planned():
    calls = []
    progress = TileProgress(4, bar=False, on_progress=lambda d, t: calls.append((d, t)))
    progress.start_picture(4)
    progress.picture_callback(3, 8)  # a varying alpha channel: twice the windows
    progress.picture_callback(8, 8)
    progress.finish_picture()
    assert calls == [(3, 8), (8, 8)]


def test_the_probes_run_once_per_machine_and_a_real_upscale_corrects_the_estimate(tmp_path, monkeypatch):
    """The cost probes (64² and 128² windows) run in the first upscale only: the next process reads what
    they measured from the store; each real upscale then corrects the cost per pixel."""
    from pipeline.stages.upscale_time import COSTS_FILE

    shapes = _upscaled_shapes(monkeypatch)
    first, second = _pictures(tmp_path / "in", [(40, 24), (24, 40)])
    out = tmp_path / "o"

    def upscale(picture, **kwargs):  # a new Pipeline: a new process's upscaler, as the CLI's (which says how long)
        with Pipeline(out=out, device="cpu", progress=True) as p:
            return p.upscale([picture], upscaler=FAST, **kwargs)

    upscale(first)
    assert {(64, 64), (128, 128)} <= set(shapes)
    costs = json.loads((out / ".store" / COSTS_FILE).read_text())
    assert len(costs) == 1 and all(v >= 0 for v in next(iter(costs.values())))
    shapes.clear()
    upscale(second)
    assert (64, 64) not in shapes and (128, 128) not in shapes and shapes  # the picture only
    (out / ".store" / COSTS_FILE).write_text("{damaged")  # measured again, not a crash
    shapes.clear()
    upscale(first, scale=2)
    assert (128, 128) in shapes and len(json.loads((out / ".store" / COSTS_FILE).read_text())) == 1


def test_learning_from_a_real_upscale_makes_its_estimate_that_time(tmp_path):
    with Pipeline(out=tmp_path / "o", device="cpu") as p:
        p.estimate_upscale(_pictures(tmp_path / "in", [(40, 24)]), upscaler=FAST)
        engine = next(iter(p.session._upscalers.values()))
    engine.use_cost_model((0.01, 1e-6))  # as if the probes had run on an idle machine
    engine.learn([(200, 120)], None, None, 5.0)  # the real upscale took 5 s
    assert engine.estimate_seconds([(200, 120)]) == pytest.approx(5.0)
    assert engine.estimate_seconds([(400, 240)]) > 5.0
    engine.learn([(200, 120)], None, None, 0.0)  # nothing to learn from
    assert engine.estimate_seconds([(200, 120)]) == pytest.approx(5.0)


def test_a_dry_run_probes_briefly_forgets_its_probes_and_says_how_far_to_trust_it(tmp_path, monkeypatch):
    """--dry-run's probes are small (48² at most, a ninth of the real probes' pixels) and not remembered
    (the first real upscale measures properly); the sentence says how far the estimate can be trusted."""
    from pipeline.stages.upscale_time import COSTS_FILE

    shapes = _upscaled_shapes(monkeypatch)
    (picture,) = _pictures(tmp_path / "in", [(40, 24)])
    out = tmp_path / "o"
    proc = run_cli("upscale", picture, "--upscaler", FAST, "--out", out, "--dry-run")
    assert shapes and max(max(shape) for shape in shapes) <= 48, shapes
    assert "this would take about" in proc.stderr and "can be off by" in proc.stderr, proc.stderr
    assert not (out / ".store" / COSTS_FILE).exists()
    shapes.clear()
    run_cli("upscale", picture, "--upscaler", FAST, "--out", out)
    assert (128, 128) in shapes  # the real upscale's own probes
    assert (out / ".store" / COSTS_FILE).exists()
