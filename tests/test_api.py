"""The Python API: typed results, the model loaded once per Pipeline, close() and the context manager."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from pipeline import Pipeline, UserError
from pipeline.stages.common import Item, StageResult

PROMPT = "a red fox in snow"


@pytest.fixture
def engine_loads(monkeypatch):
    """Counts ZImageEngine constructions (model loads)."""
    from pipeline.engines.zimage import ZImageEngine

    loads = []
    original = ZImageEngine.__init__

    def counting(self, *args, **kwargs):
        loads.append(args[0] if args else kwargs.get("model"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(ZImageEngine, "__init__", counting)
    return loads


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """The issue's example, small: explore → refine(run, seeds=…) → upscale(picks)."""
    out = tmp_path_factory.mktemp("api") / "outputs"
    with Pipeline(model="tiny-random", out=out) as p:
        run = p.explore(PROMPT, seeds=range(3), size=64)
        picks = p.refine(run, seeds=[0, 2], size=128)
        big = p.upscale(picks, upscaler="realesr-animevideov3")
        loaded = p.session.engine_loaded
    return out, run, picks, big, loaded, p


def test_results_are_typed(workflow):
    out, run, picks, big, _, _ = workflow
    for result, stage, seeds in ((run, "explore", [0, 1, 2]), (picks, "refine", [0, 2]), (big, "upscale", [0, 2])):
        assert isinstance(result, StageResult)
        assert result.stage == stage
        assert result.seeds == seeds
        assert (result.planned, result.stored, result.computed) == (len(seeds), 0, len(seeds))
        assert all(isinstance(item, Item) and item.path.is_file() and len(item.key) == 64 and not item.cached
                   and item.seconds > 0 for item in result.items)
        assert result.run_dir == run.run_dir
        assert result.paths == [item.path for item in result.items]
    assert run.run_dir.parent == out
    with Image.open(big.paths[0]) as image:
        assert image.size == (512, 512)
    assert picks.paths == [run.run_dir / "refine" / "seed-0.png", run.run_dir / "refine" / "seed-2.png"]


def test_close_releases_the_model(workflow):
    *_, loaded_inside, p = workflow
    assert loaded_inside
    assert not p.session.engine_loaded  # the with block closed it


def test_model_loads_once_across_explore_and_refine(tmp_path, engine_loads):
    with Pipeline(model="tiny-random", out=tmp_path) as p:
        run = p.explore(PROMPT, seeds=[5, 6], size=64)
        p.refine(run, seeds=[5], size=128)
        p.explore("a blue bird", seeds=[1], size=64)
        p.refine(seeds=[1], size=128, mode="rerender")
    assert engine_loads == ["tiny-random"]
    # everything stored: a new Pipeline reuses the pictures and loads nothing
    with Pipeline(model="tiny-random", out=tmp_path) as p:
        again = p.refine(p.explore(PROMPT, seeds=[5, 6], size=64), seeds=[5], size=128)
    assert again.computed == 0 and again.items[0].cached
    assert engine_loads == ["tiny-random"]
    # close() lets a Pipeline load again when it has work
    p = Pipeline(model="tiny-random", out=tmp_path)
    p.explore(PROMPT, seeds=[7], size=64)
    p.close()
    p.explore(PROMPT, seeds=[8], size=64)
    p.close()
    assert len(engine_loads) == 3


def test_a_config_with_several_prompts_loads_the_model_once(tmp_path, engine_loads):
    from pipeline.config.loader import RunConfig
    from pipeline.runner import run_config

    config = RunConfig.model_validate({
        "model": "tiny-random", "out": str(tmp_path),
        "prompts": [{"text": PROMPT, "name": "fox"}, {"text": "a blue bird", "name": "bird"}],
        "explore": {"seeds": "1-2", "size": 64}, "refine": {"picks": ["fox:1", "bird:2"], "size": 128},
    })
    result = run_config(config)
    assert engine_loads == ["tiny-random"]
    assert [r.name for r in result.runs] == ["fox", "bird"]
    assert [r.stages["refine"].seeds for r in result.runs] == [[1], [2]]
    assert result.totals()["explore"] == {"planned": 4, "stored": 0, "computed": 4}
    assert all((tmp_path / name / "refine" / f"seed-{seed}.png").is_file() for name, seed in (("fox", 1),
                                                                                                 ("bird", 2)))


def test_refine_argument_errors(tmp_path):
    with Pipeline(model="tiny-random", out=tmp_path) as p:
        dry = p.explore(PROMPT, seeds=[1], size=64, dry_run=True)
        assert dry.dry_run and dry.run_dir is None and not p.session.engine_loaded
        with pytest.raises(UserError, match="dry run"):
            p.refine(dry, seeds=[1])
        with pytest.raises(UserError, match="give the seeds once"):
            p.refine([1], seeds=[1])
        with pytest.raises(UserError, match="give the run once"):
            p.refine(StageResult("explore", Path(tmp_path)), run="x", seeds=[1])
