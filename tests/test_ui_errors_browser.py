"""A job that fails while it runs ends its busy state, in Chromium: the button's label comes back,
Stop turns off and the sentence is said once (no reload needed). One failing job per stage:
explore (a LoRA for another model), refine, vary and upscale (a folder where the picture goes).
Waits poll from Python (browser_wait); no timing asserts. Screenshots: test-artifacts/errors-*.png.
"""
from __future__ import annotations

import re

import pytest
from browser_wait import wait_until
from conftest import ROOT
from test_ui_flow_browser import (  # noqa: F401
    WAIT,
    api_run,
    browser,
    fill_form,
    open_from_runs,
    open_tab,
    vary_strong,
)
from ui_server import AppServer

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")
ARTIFACTS = ROOT / "test-artifacts"
LABELS = {"explore": "Explore", "refine": "Refine picked", "upscale": "Upscale refined", "vary-strong": "Vary strong"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from lora_files import lora_tensors, write_lora

    folder = tmp_path_factory.mktemp("loras")
    tensors = {"down_blocks." + name: pair for name, pair in lora_tensors(rank=4).items()}
    write_lora(folder / "foreign.safetensors", "diffusers", tensors, alpha=4.0)  # another model's layers
    srv = AppServer(tmp_path_factory.mktemp("ui-errors") / "outputs", env={"PIPELINE_LORAS": str(folder)})
    yield srv
    srv.kill()


def ended_with_one_sentence(page, button: str, sentence: str) -> None:
    """The job ended: its button's label back, Stop off, the sentence in the status line and no other
    copy of it on the page (a toast once at most)."""
    wait_until(page, """([id, label, sentence]) => document.querySelector('#' + id).innerText.trim() === label
                        && document.querySelector('#stop').disabled
                        && new RegExp(sentence).test(document.querySelector('#status textarea, #status input').value)""",
               arg=[button, LABELS[button], sentence], timeout=90_000)  # no model runs long here
    text = page.locator("#status textarea, #status input").first.input_value()
    assert re.search(sentence, text), text
    toasts = page.locator(".toast-body").all_inner_texts()
    assert sum(bool(re.search(sentence, t)) for t in toasts) <= 1, toasts
    assert page.locator(f"#{button}").is_enabled()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"errors-{button}.png"))


def test_a_failing_explore_ends_the_busy_state(browser, server):  # noqa: F811
    page = open_tab(browser, server.url)
    fill_form(page, "a foreign lora", "5")
    page.locator("#lora").get_by_text("LoRA").first.click()
    choice = page.locator("#lora-0 input")
    choice.wait_for(state="visible", timeout=WAIT)
    choice.click()
    page.get_by_role("option", name="foreign").first.click()
    page.locator("#lora-1 input").wait_for(state="visible", timeout=WAIT)
    page.locator("#explore").click()
    ended_with_one_sentence(page, "explore", r"foreign")


def test_a_failing_refine_ends_the_busy_state(browser, server):  # noqa: F811
    run_dir = api_run(server, "refine fails", "21")
    (run_dir / "refine" / "seed-21.png").mkdir(parents=True)  # where the refined picture goes
    page = open_tab(browser, server.url)
    open_from_runs(page, run_dir.name)
    page.locator("#refine-seeds textarea, #refine-seeds input").first.fill("21")
    page.locator("#refine").click()
    ended_with_one_sentence(page, "refine", r"seed-21\.png")


def test_a_failing_vary_ends_the_busy_state(browser, server):  # noqa: F811
    run_dir = api_run(server, "vary fails", "31")
    (run_dir / "explore" / "seed-31v1.png").mkdir(parents=True)
    page = open_tab(browser, server.url)
    vary_strong(page, run_dir.name, "31", 1)
    ended_with_one_sentence(page, "vary-strong", r"seed-31v1\.png")


def test_a_failing_upscale_ends_the_busy_state(browser, server):  # noqa: F811
    run_dir = api_run(server, "upscale fails", "41", refine="41")
    (run_dir / "upscale" / "seed-41.png").mkdir(parents=True)
    page = open_tab(browser, server.url)
    open_from_runs(page, run_dir.name)
    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    page.locator("#upscale").click()
    ended_with_one_sentence(page, "upscale", r"seed-41\.png")
