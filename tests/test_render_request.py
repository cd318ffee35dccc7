"""The engine's one door: ``engine.render(request, task)`` with tasks in a registry (tiny model, CPU)."""
from __future__ import annotations

import numpy as np
import pytest

PROMPT = "a red fox in snow"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from pipeline.session import Session

    session = Session(out=tmp_path_factory.mktemp("engine"), model="tiny-random", dtype="fp32")
    return session.engine()


def request(seed=1, **parts):
    from pipeline.engines.request import Picture, RenderRequest

    return RenderRequest((Picture(PROMPT, "", seed),), width=64, height=64, steps=2, guidance=0.0, **parts)


def test_a_request_renders_by_seed_and_img2img_starts_from_its_init_image(engine):
    first, again = engine.render(request(1))[0], engine.render(request(1), "txt2img")[0]
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(engine.render(request(2))[0]))
    redrawn = engine.render(request(2, init_images=(first,), strength=0.5), "img2img")[0]
    assert redrawn.size == (64, 64)
    assert engine.pipeline_for("img2img") is engine.pipeline_for("img2img")  # built once
    assert engine.pipeline_for("img2img").transformer is engine.pipe.transformer  # from the loaded components


def test_a_new_task_plugs_in_by_registering_and_reads_only_its_request(engine):
    from pipeline.engines import tasks

    seen = []

    def call_args(req):
        seen.append(req.control)
        return {}

    tasks.register(tasks.Task("test-control", build=lambda pipe: pipe, call_args=call_args, needs=("control",),
                              base=True))
    try:
        with pytest.raises(ValueError, match="needs control"):
            engine.render(request(1), "test-control")
        engine.render(request(1, control="edges"), "test-control")
        assert seen == ["edges"]
        with pytest.raises(ValueError, match="no render task 'inpaint-nope'"):
            engine.render(request(1), "inpaint-nope")
    finally:
        tasks._TASKS.pop("test-control", None)
    assert not hasattr(engine.pipe, "tile_noise") and not hasattr(engine, "_detail_pipe")
