"""The browser app in a real browser: Debian's Chromium driven by Playwright, against `pipeline ui`.

Type a (hostile) prompt, explore 4, see them arrive, pick 2 by click, refine, upscale with the
smallest model, check the files, then `pipeline refine` from the CLI computes nothing. No request
leaves the machine. Screenshots of each step go to test-artifacts/ui-*.png.
Skips (with the reason) where Chromium, Playwright or Gradio is missing.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from browser_wait import wait_until
from conftest import ROOT, run_cli
from ui_server import Server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

CHROMIUM = os.environ.get("PIPELINE_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
PROMPT = 'a fox <img src=x onerror="window.__pwned=1"> </script><script>window.__pwned=2</script> & snow'
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
WAIT = 300_000  # ms: two loaded CPU cores


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """One server and one browser for the module (each test gets a fresh context, see ``page``)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    server = Server(tmp_path_factory.mktemp("ui-browser") / "outputs")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield server, browser
            browser.close()
    finally:
        server.kill()


@pytest.fixture
def page(app):
    """A tab in a fresh browser context: no storage or form state left by another test."""
    server, browser = app
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    tab = context.new_page()
    tab.server = server
    tab.elsewhere = []  # every request that is not to the app itself
    tab.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:"))
           else tab.elsewhere.append(r.url))
    tab.goto(server.url, wait_until="load")
    yield tab
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=True)


def status(page) -> str:
    return page.locator("#status textarea, #status input").first.input_value()


def wait_status(page, pattern: str) -> str:
    wait_until(page, """(pattern) => {
        const el = document.querySelector('#status textarea, #status input');
        return el && new RegExp(pattern).test(el.value);
    }""", arg=pattern, timeout=WAIT)
    return status(page)


def thumbs(page, gallery: str):
    return page.locator(f"#{gallery} .thumbnail-item")


def test_explore_pick_refine_upscale_in_the_browser(page):
    out = page.server.out
    shot(page, "1-start")
    page.locator("#prompt textarea").fill(PROMPT)
    page.locator("#width input").fill("64")
    page.locator("#height input").fill("64")
    page.locator("#count input").fill("4")
    page.locator("#steps input[type=number]").fill("4")
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#explore").click()

    # the first candidate is on the page before the run ends
    page.wait_for_selector("#candidates .thumbnail-item img", timeout=WAIT)
    first = status(page)
    shot(page, "2-first-candidate")
    final = wait_status(page, r"^4 of 4 candidates · 4 computed")
    assert re.match(r"^[1-4] of 4 candidates", first), first
    assert thumbs(page, "candidates").count() == 4
    shot(page, "3-explored")
    run_dir = out / page.locator("#run textarea, #run input").first.input_value()
    assert (run_dir / "run.json").is_file(), final

    # pick the 1st and the 3rd by click: saved with the run, shown on the page
    seeds = [int(p["seed"]) for p in json.loads((run_dir / "run.json").read_text())["explore"]["pictures"]]
    for index in (0, 2):
        thumbs(page, "candidates").nth(index).click()
        wait_until(page, "(n) => document.querySelectorAll('#candidates .caption-label')"
                               ".length === 4 && [...document.querySelectorAll('#candidates .caption-label')]"
                               ".filter(e => e.textContent.startsWith('✓')).length === n", arg=index // 2 + 1,
                               timeout=WAIT)
    picks = [seeds[0], seeds[2]]
    assert json.loads((run_dir / "picks.json").read_text()) == {"seeds": picks}
    assert re.search(rf'"picks":\s*\["{picks[0]}",\s*"{picks[1]}"\]', (run_dir / "index.html").read_text())
    assert page.locator("#picks textarea, #picks input").first.input_value() == f"{picks[0]}, {picks[1]}"
    # the picture panel shows the prompt as text, and the command that makes it again
    assert PROMPT.replace("\\", "") in page.locator("#params").inner_text().replace("\\", "")
    assert f"--seeds {seeds[2]}" in page.locator("#command").inner_text()
    shot(page, "4-picked")

    page.locator("#refine").click()
    wait_status(page, r"^refined 2 of 2 · 2 computed")
    assert thumbs(page, "refined").count() == 2
    page.wait_for_selector("#compare img", timeout=WAIT)
    shot(page, "5-refined")

    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    page.locator("#upscale").click()
    wait_status(page, r"^upscaled 2 of 2 · 2 computed")
    assert thumbs(page, "upscaled").count() == 2
    thumbs(page, "upscaled").nth(0).click()  # its parameters and the command that makes it again
    wait_until(page, "() => document.querySelector('#command').innerText.includes('pipeline upscale')",
               timeout=WAIT)
    shot(page, "6-upscaled")
    page.keyboard.press("Escape")

    # the files, where the CLI and the static gallery find them
    from PIL import Image

    assert sorted(p.name for p in (run_dir / "explore").glob("seed-*.png")) == sorted(f"seed-{s}.png" for s in seeds)
    for seed in picks:
        with Image.open(run_dir / "refine" / f"seed-{seed}.png") as image:
            assert image.size == (128, 128)
        with Image.open(run_dir / "upscale" / f"seed-{seed}.png") as image:
            assert image.size == (512, 512)

    # the CLI afterwards: the picks are the app's, and nothing is computed again
    for args in (["--seeds", f"{picks[0]},{picks[1]}"], []):
        done = json.loads(run_cli("refine", "--run", run_dir, "--out", out, "--json", *args).stdout)
        assert (done["computed"], done["stored"]) == (0, 2)
        assert sorted(item["seed"] for item in done["items"]) == sorted(picks)

    # the hostile prompt stayed text; nothing was fetched from anywhere else
    assert page.locator("#prompt textarea").input_value() == PROMPT
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert page.elsewhere == []


def test_runs_lists_and_reopens_a_cli_run(page):
    out = page.server.out
    run_cli("explore", "made by the CLI", "--model", "tiny-random", "--size", "64", "--steps", "2", "--seeds", "7,8",
            "--out", out, "--run", "from-cli")
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    wait_until(page, "() => document.querySelector('#runs-table') && "
                     "document.querySelector('#runs-table').innerText.includes('from-cli')", timeout=WAIT)
    shot(page, "7-runs")
    assert page.evaluate("window.__pwned") is None  # the hostile prompt of the first test is listed, as text
    page.locator("#run-choice input").fill("from-cli")
    page.locator("#run-choice input").press("Enter")
    page.locator("#open-run").click()
    wait_status(page, r"^opened from-cli: 2 candidates")
    assert thumbs(page, "candidates").count() == 2
    assert page.locator("#prompt textarea").input_value() == "made by the CLI"
    shot(page, "8-reopened")


def test_stop_keeps_the_finished_pictures(page):
    out = page.server.out
    page.locator("#prompt textarea").fill("stop me")
    page.locator("#width input").fill("64")  # a fresh tab: the form's defaults, not the first test's
    page.locator("#height input").fill("64")
    page.locator("#seeds textarea, #seeds input").first.fill("100-159")  # far more than finish before Stop
    page.locator("#steps input[type=number]").fill("30")
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#explore").click()
    wait_until(page, "() => /^[1-9]\\d* of 60 candidates/.test("
                           "document.querySelector('#status textarea, #status input').value)", timeout=WAIT)
    page.locator("#stop").click()
    final = wait_status(page, r"candidates \(stopped\)")
    shot(page, "9-stopped")
    kept = int(final.split(" of ")[0])
    run_dir = out / page.locator("#run textarea, #run input").first.input_value()
    stored = sorted(p.name for p in (run_dir / "explore").glob("seed-*.png"))
    assert 1 <= kept < 60 and len(stored) == kept
    assert len(json.loads((run_dir / "run.json").read_text())["explore"]["pictures"]) == kept
