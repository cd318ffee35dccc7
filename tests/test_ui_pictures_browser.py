"""Every kind of picture the app makes, in Chromium: variations are picked like candidates (corner,
Space, P in the large view), each picture's "make it again from the CLI" runs as shown and computes
nothing (a candidate with a LoRA, a variation, a refined and an upscaled picture), and a card shows
the file as it is now (a second refine of a seed at another size). Waits poll from Python or use
locators; no timing asserts. Screenshots: test-artifacts/pictures-*.png (1400×900).
"""
from __future__ import annotations

import json
import re
import shlex

import pytest
from browser_wait import wait_until
from conftest import ROOT, cli_env, run_cli
from test_ui_flow_browser import WAIT, browser, open_from_runs, open_tab  # noqa: F401
from ui_server import AppServer

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    from lora_files import lora_tensors, write_lora

    folder = tmp_path_factory.mktemp("loras")
    write_lora(folder / "style.safetensors", "kohya", lora_tensors(rank=4, seed=7), alpha=4.0)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, loras):
    srv = AppServer(tmp_path_factory.mktemp("ui-pictures") / "outputs", env={"PIPELINE_LORAS": str(loras)})
    yield srv
    srv.kill()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"pictures-{name}.png"))


def card(page, caption: str, grid: str = "candidates"):
    return page.locator(f"#{grid} .pcard").filter(has=page.locator(".pcap", has_text=re.compile(rf"^✓? ?{caption}\b")))


def picks_of(run_dir) -> list:
    try:
        return json.loads((run_dir / "picks.json").read_text())["seeds"]
    except (OSError, ValueError, KeyError):
        return []


def wait_picks(page, run_dir, expected: list) -> None:
    for _ in range(int(WAIT / 200)):
        if picks_of(run_dir) == expected:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"picks.json holds {picks_of(run_dir)}, not {expected}")


def command_of(page, grid: str, caption: str) -> str:
    card(page, caption, grid).locator(".pthumb").click()
    command = page.locator("#viewer-command")
    wait_until(page, "() => document.querySelector('#viewer-command').innerText.startsWith('pipeline ')",
               timeout=WAIT)
    text = command.inner_text().strip()
    page.keyboard.press("Escape")
    return text


def runs_as_shown_and_computes_nothing(command: str, loras) -> None:
    args = shlex.split(command)
    assert args[0] == "pipeline"
    done = json.loads(run_cli(*args[1:], "--json", env=cli_env(PIPELINE_LORAS=str(loras))).stdout)
    assert done["computed"] == 0 and done["stored"] >= 1, (command, done)


def test_variations_are_picked_and_every_picture_is_made_again_from_the_cli(browser, server, loras):  # noqa: F811
    client = server.client()
    result = client.predict("a styled fox", "", 64, 64, 1, "11", 2, 0, -1, "auto", 0.0, [["style", 0.7]],
                            api_name="/explore")[-1]
    run_dir = server.out / json.loads(json.dumps(result))["run_dir"].split("/")[-1]
    client.predict(run_dir.name, "11", 2, api_name="/vary_strong")
    page = open_tab(browser, server.url)
    open_from_runs(page, run_dir.name)
    card(page, "11v2").wait_for(timeout=WAIT)

    # a variation is picked like a candidate: its corner, Space on it, P in its large view
    card(page, "11v1").locator(".ppick").click()
    wait_picks(page, run_dir, ["11v1"])
    card(page, "11v2").focus()
    page.keyboard.press("Space")
    wait_picks(page, run_dir, ["11v1", "11v2"])
    card(page, "11v1").locator(".ppick").click()
    wait_picks(page, run_dir, ["11v2"])
    card(page, "11").locator(".pthumb").click()
    page.keyboard.press("p")
    wait_picks(page, run_dir, ["11v2", 11])
    page.keyboard.press("Escape")
    expect_count = page.locator("#candidates .pcard.picked")
    wait_until(page, "() => document.querySelectorAll('#candidates .pcard.picked').length === 2", timeout=WAIT)
    assert expect_count.count() == 2
    shot(page, "1-variation-picked")

    # the picks (a variation among them) refine and upscale from the page
    page.locator("#refine").click()
    wait_until(page, "() => /^refined 2 of 2/.test(document.querySelector('#status textarea, #status input').value)",
               timeout=WAIT)
    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    page.locator("#upscale").click()
    wait_until(page, "() => /^upscaled 2 of 2/.test(document.querySelector('#status textarea, #status input').value)",
               timeout=WAIT)

    # "make it again from the CLI", for each kind of picture: runs as shown, computes nothing
    lora_candidate = command_of(page, "candidates", "11")
    assert "--lora style:0.7" in lora_candidate, lora_candidate
    variation = command_of(page, "candidates", "11v2")
    assert variation.startswith("pipeline vary ") and "--seeds 11 " in variation, variation
    commands = [lora_candidate, variation, command_of(page, "refined", "11v2"), command_of(page, "upscaled", "11v2")]
    for command in commands:
        runs_as_shown_and_computes_nothing(command, loras)
    # the run's LoRA is said in the grid's header, and kept in the pickers when the run is opened again
    assert "LoRA style 0.7" in page.locator("#candidates .pgrid-count").inner_text()
    fresh = open_tab(browser, server.url)
    open_from_runs(fresh, run_dir.name)
    fresh.locator("#lora").get_by_text("LoRA").first.click()  # the closed accordion
    fresh.locator("#lora-0 input").wait_for(state="visible", timeout=WAIT)
    wait_until(fresh, "() => document.querySelector('#lora-0 input').value === 'style'", timeout=WAIT)
    assert fresh.locator("#lora-weight-0 input[type=number]").input_value() == "0.7"
    # the LoRA is shown in the large view of its candidate
    card(page, "11").locator(".pthumb").click()
    wait_until(page, "() => /style 0\\.7/.test(document.querySelector('#viewer-params').innerText)", timeout=WAIT)
    page.keyboard.press("Escape")


def test_a_second_refine_of_a_seed_shows_its_new_size_on_the_card(browser, server):  # noqa: F811
    client = server.client()
    result = client.predict("twice refined", "", 64, 64, 1, "21", 2, 0, api_name="/explore")[-1]
    run_name = result["run_dir"].split("/")[-1]
    page = open_tab(browser, server.url)
    open_from_runs(page, run_name)
    page.locator("#refine-seeds textarea, #refine-seeds input").first.fill("21")
    page.locator("#refine-size input, #refine-size textarea").first.fill("96x96")
    page.locator("#refine").click()
    card(page, "21 · 96×96", "refined").wait_for(timeout=WAIT)
    first = card(page, "21", "refined").locator("img").get_attribute("src")
    page.locator("#refine-size input, #refine-size textarea").first.fill("128x128")
    page.locator("#refine").click()
    card(page, "21 · 128×128", "refined").wait_for(timeout=WAIT)  # the card says what the file is now
    assert page.locator("#refined .pcard").count() == 1
    assert card(page, "21", "refined").locator("img").get_attribute("src") != first  # and shows it
    shot(page, "2-second-refine")
