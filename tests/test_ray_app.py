"""The app on a Ray pool of two workers (`pipeline ui --ray`): explores from two tabs run at the same time
(their pictures arrive interleaved), and Stop on one tab leaves the other running to its end. Through the
app's own explore job (explore_job.events over AppState and flow), without a browser."""
from __future__ import annotations

import os
import threading

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

from pipeline.api import Pipeline  # noqa: E402
from pipeline.scale import ray_pool  # noqa: E402

PROMPTS = {"tab-a": "a red fox in snow", "tab-b": "a lighthouse at dusk"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from pipeline.web.app.state import AppState

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
             namespace="pipeline-app-tests")
    os.environ[ray_pool.WORKERS_ENV] = "2"
    out = tmp_path_factory.mktemp("out")
    try:
        with Pipeline(model="tiny-random", out=out, ray="local") as p:
            yield AppState(p, out, slots=len(ray_pool.pool_for("local").workers()))
    finally:
        os.environ.pop(ray_pool.WORKERS_ENV, None)
        ray_pool.forget_pools()
        ray.shutdown()


def request(tab: str, seeds) -> dict:
    return {"prompt": PROMPTS[tab], "negative": "", "size": [64, 64], "seeds": list(seeds), "steps": 2,
            "guidance": 0.0, "batch": "auto", "variance": 0.0}


def explore_in_tabs(app, requests: dict, on_update=None) -> tuple[list, dict]:
    """Both tabs' explores at once; (the order their pictures arrived in, each tab's last update)."""
    from pipeline.web.app import explore_job

    arrived, last, lock = [], {}, threading.Lock()

    def drain(tab):
        for update in explore_job.events(app, tab, requests[tab]):
            with lock:
                arrived.extend(tab for _ in update.items or ())
            last[tab] = update
            if on_update:
                on_update(tab, update)

    threads = [threading.Thread(target=drain, args=(tab,)) for tab in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return arrived, last


def test_two_tabs_explore_at_the_same_time(app):
    assert app.slots == 2
    arrived, last = explore_in_tabs(app, {"tab-a": request("tab-a", range(1, 7)), "tab-b": request("tab-b", range(1, 7))})
    assert sorted(arrived) == ["tab-a"] * 6 + ["tab-b"] * 6
    first_b, last_a = arrived.index("tab-b"), len(arrived) - 1 - arrived[::-1].index("tab-a")
    first_a, last_b = arrived.index("tab-a"), len(arrived) - 1 - arrived[::-1].index("tab-b")
    assert first_b < last_a and first_a < last_b  # interleaved, not one explore after the other
    assert last["tab-a"].result.computed == last["tab-b"].result.computed == 6


def test_stop_on_one_tab_leaves_the_other_running(app):
    def stop_a_at_its_first_picture(tab, update):
        if tab == "tab-a" and update.items:
            app.stop("tab-a")

    arrived, last = explore_in_tabs(app, {"tab-a": request("tab-a", range(100, 130)),
                                          "tab-b": request("tab-b", range(100, 106))}, stop_a_at_its_first_picture)
    assert last["tab-b"].result is not None and len(last["tab-b"].result.items) == 6
    assert 1 <= arrived.count("tab-a") < 30 and "(stopped)" in last["tab-a"].text
    assert not app.busy("tab-a") and not app.busy("tab-b")
