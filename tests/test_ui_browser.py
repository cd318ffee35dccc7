"""The browser app in a real browser: Debian's Chromium driven by Playwright, against `pipeline ui`.

Type a (hostile) prompt, explore, see candidates arrive, look at one in the large view, pick with
the corner control and the keyboard, refine, upscale with the smallest model, download full-size
PNGs, then `pipeline refine` from the CLI computes nothing. No request leaves the machine.
Each test has its own browser context and its own run. Waits are Playwright's locator
assertions (they work under a Content Security Policy); no timing asserts. Screenshots of each
step go to test-artifacts/ui-*.png (1400×900). Skips (with the reason) where Chromium,
Playwright or Gradio is missing.
"""
from __future__ import annotations

import json
import re
import time
import zipfile
from pathlib import Path

import pytest

from browsers import launched, require
from conftest import ROOT, run_cli
from ui_server import AppServer

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

ARTIFACTS = ROOT / "test-artifacts"
PROMPT = 'a fox <img src=x onerror="window.__pwned=1"> </script><script>window.__pwned=2</script> & snow'
WAIT = 300_000  # ms: two loaded CPU cores
VIEWPORT = {"width": 1400, "height": 900}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require()
    server = AppServer(tmp_path_factory.mktemp("ui-browser") / "outputs")
    try:
        with launched() as chromium:
            chromium.server = server
            yield chromium
    finally:
        server.kill()


@pytest.fixture
def page(browser, tmp_path):
    """A fresh browser context (no storage, no cache) on the app."""
    server = browser.server
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(WAIT)
    tab.server = server
    tab.downloads = tmp_path / "downloads"
    tab.elsewhere = []  # every request that is not to the app itself
    tab.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:"))
           else tab.elsewhere.append(r.url))
    tab.goto(server.url, wait_until="load")
    yield tab
    context.close()


def expect(locator):
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=WAIT)
    return _expect(locator)


def shot(page, name: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-{name}.png"), full_page=full_page)


def status(page):
    return page.locator("#status textarea, #status input").first


def cards(page, grid: str = "candidates"):
    return page.locator(f"#{grid} .pcard")


def run_dir_of(page) -> Path:
    return page.server.out / page.locator("#run textarea, #run input").first.input_value()


def explore(page, prompt: str, count: int, steps: int = 2):
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#width input").fill("64")
    page.locator("#height input").fill("64")
    page.locator("#count input").fill(str(count))
    page.locator("#steps input[type=number]").fill(str(steps))
    page.locator("#steps input[type=number]").press("Enter")
    page.locator("#explore").click()


def explored(page, count: int) -> tuple[Path, list[int]]:
    expect(status(page)).to_have_value(re.compile(rf"^{count} of {count} candidates · {count} computed"))
    expect(cards(page)).to_have_count(count)
    run_dir = run_dir_of(page)
    seeds = [int(p["seed"]) for p in json.loads((run_dir / "run.json").read_text())["explore"]["pictures"]]
    return run_dir, seeds


def picks_become(run_dir: Path, expected: list[int]) -> None:
    """Wait until RUN/picks.json holds ``expected`` and the static gallery shows them (the page saves
    picks through the server)."""
    seeds = ",\\s*".join(f'"{s}"' for s in expected)
    deadline = time.monotonic() + WAIT / 1000
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = json.loads((run_dir / "picks.json").read_text())["seeds"]
            page = (run_dir / "index.html").read_text()
        except (OSError, ValueError, KeyError):
            seen = page = None
        if seen == expected and re.search(rf'"picks":\s*\[{seeds}\]', page):
            return
        time.sleep(0.2)
    raise AssertionError(f"picks.json holds {seen}, not {expected}")


def download(page, click) -> Path:
    with page.expect_download() as info:
        click()
    saved = page.downloads / info.value.suggested_filename
    info.value.save_as(saved)
    return saved


def test_explore_pick_refine_upscale_in_the_browser(page):
    out = page.server.out
    shot(page, "1-start")
    explore(page, PROMPT, 4)

    # the first candidate is on the page before the run ends; the Explore button shows the progress
    expect(cards(page).first).to_be_visible()
    first = status(page).input_value()
    shot(page, "2-first-candidate")
    run_dir, seeds = explored(page, 4)
    assert re.match(r"^([0-4] of 4 candidates|exploring 4)", first), first
    expect(page.locator("#explore")).to_have_text("Explore")
    shot(page, "3-explored")

    # pick the 1st and the 3rd with the corner control: saved with the run, shown on the page
    for index in (0, 2):
        cards(page).nth(index).locator(".ppick").click()
    picks = [seeds[0], seeds[2]]
    picks_become(run_dir, picks)
    expect(page.locator("#candidates .pcard.picked")).to_have_count(2)
    expect(page.locator("#candidates .pgrid-count")).to_have_text("2 of 4 picked")
    assert re.search(rf'"picks":\s*\["{picks[0]}",\s*"{picks[1]}"\]', (run_dir / "index.html").read_text())
    # the large view shows the prompt as text, and the command that makes it again
    cards(page).nth(2).locator(".pthumb").click()
    expect(page.locator("#viewer-command")).to_contain_text(f"--seeds {seeds[2]}")
    assert PROMPT in page.locator("#viewer-params").inner_text()
    shot(page, "4-large-view")
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).to_be_hidden()

    page.locator("#refine").click()
    expect(status(page)).to_have_value(re.compile(r"^refined 2 of 2 · 2 computed"))
    expect(cards(page, "refined")).to_have_count(2)
    page.locator("#compare img").first.wait_for()
    shot(page, "5-refined", full_page=True)

    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    page.locator("#upscale").click()
    expect(status(page)).to_have_value(re.compile(r"^upscaled 2 of 2 · 2 computed"))
    expect(cards(page, "upscaled")).to_have_count(2)

    # an upscaled picture in the large view: its command names the upscaler; Download is the real PNG
    cards(page, "upscaled").first.click()
    expect(page.locator("#viewer-command")).to_contain_text("pipeline upscale")
    shot(page, "6-upscaled-large-view")
    from PIL import Image

    saved = download(page, lambda: page.locator("#viewer-download").click())
    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (512, 512)  # not the 256-px thumbnail
        assert "parameters" in image.text and "pipeline" in image.text  # A1111's and ours
    assert saved.read_bytes() in {(run_dir / "upscale" / f"seed-{s}.png").read_bytes() for s in picks}
    page.keyboard.press("Escape")

    # "all upscaled" and "picked" as zips of the PNGs
    archive = download(page, lambda: page.locator("#upscaled .pgrid-zip").click())
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"upscale/seed-{s}.png" for s in picks)
        assert all(z.read(f"upscale/seed-{s}.png") == (run_dir / "upscale" / f"seed-{s}.png").read_bytes()
                   for s in picks)
    archive = download(page, lambda: page.locator("#candidates .pgrid-zip").click())
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"explore/seed-{s}.png" for s in picks)

    # the files, where the CLI and the static gallery find them
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


def test_large_view_downloads_the_full_picture(page):
    explore(page, "a lighthouse at dusk", 3)
    run_dir, seeds = explored(page, 3)
    cards(page).nth(1).click()
    viewer = page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(page.locator("#viewer-img")).to_have_attribute("src", re.compile(rf"explore/seed-{seeds[1]}\.png(\?v=\w+)?$"))
    shot(page, "7-large-view")
    saved = download(page, lambda: page.locator("#viewer-download").click())
    assert saved.read_bytes() == (run_dir / "explore" / f"seed-{seeds[1]}.png").read_bytes()
    from PIL import Image

    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (64, 64) and "parameters" in image.text

    # → walks the run, Esc closes and gives the focus back to the card
    page.keyboard.press("ArrowRight")
    expect(page.locator("#viewer-img")).to_have_attribute("src", re.compile(rf"explore/seed-{seeds[2]}\.png(\?v=\w+)?$"))
    expect(page.locator("#viewer-command")).to_contain_text(f"--seeds {seeds[2]}")
    page.keyboard.press("ArrowRight")  # wraps round
    expect(page.locator("#viewer-img")).to_have_attribute("src", re.compile(rf"explore/seed-{seeds[0]}\.png(\?v=\w+)?$"))
    page.keyboard.press("z")
    expect(viewer).to_have_class(re.compile(r"\bzoomed\b"))
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()
    expect(cards(page).nth(0)).to_be_focused()
    # Enter on a focused card opens it again
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-img")).to_have_attribute("src", re.compile(rf"explore/seed-{seeds[1]}\.png(\?v=\w+)?$"))
    page.keyboard.press("Escape")
    assert page.elsewhere == []


def test_pick_with_the_control_and_the_keyboard(page):
    explore(page, "three pears", 4)
    run_dir, seeds = explored(page, 4)
    unpicked_border = cards(page).nth(3).evaluate("e => getComputedStyle(e).borderColor")

    cards(page).nth(0).locator(".ppick").click()  # the corner control
    picks_become(run_dir, [seeds[0]])
    cards(page).nth(1).focus()
    page.keyboard.press("Space")  # Space on a focused card
    picks_become(run_dir, [seeds[0], seeds[1]])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")  # the large view of the 3rd: P picks it, Space un-picks it
    expect(page.locator("#viewer")).to_be_visible()
    page.keyboard.press("p")
    picks_become(run_dir, [seeds[0], seeds[1], seeds[2]])
    expect(page.locator("#viewer-pick")).to_have_attribute("aria-pressed", "true")
    shot(page, "8-picked-in-large-view")
    page.keyboard.press("Space")
    picks_become(run_dir, [seeds[0], seeds[1]])
    expect(page.locator("#viewer-pick")).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("Escape")

    # un-pick the first with its control: no picked style is left on it
    cards(page).nth(0).locator(".ppick").click()
    picks_become(run_dir, [seeds[1]])
    page.mouse.move(5, 5)  # not hovering the card
    for index in (0, 2):
        card = cards(page).nth(index)
        expect(card).not_to_have_class(re.compile(r"\bpicked\b"))
        expect(card.locator(".ppick")).to_have_attribute("aria-pressed", "false")
        card.evaluate("e => e.blur()")
        expect(card).to_have_css("border-color", unpicked_border)  # like a card never picked
        expect(card).to_have_css("box-shadow", "none")
    expect(cards(page).nth(1)).to_have_class(re.compile(r"\bpicked\b"))
    expect(page.locator("#candidates .pgrid-count")).to_have_text("1 of 4 picked")
    shot(page, "9-unpicked")

    # a reload shows the picks saved with the run
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    page.locator("#runs-table [role=gridcell]").filter(has_text=run_dir.name).first.click()  # a row click opens
    expect(status(page)).to_have_value(re.compile(rf"^opened {run_dir.name}: 4 candidates, 1 picked"))
    expect(page.locator("#candidates .pcard.picked")).to_have_count(1)


def test_runs_lists_and_reopens_a_cli_run(page):
    out = page.server.out
    run_cli("explore", "made by the CLI", "--model", "tiny-random", "--size", "64", "--steps", "2", "--seeds", "7,8",
            "--out", out, "--run", "from-cli")
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    expect(page.locator("#runs-table")).to_contain_text("from-cli")
    shot(page, "10-runs")
    page.locator("#run-choice input").fill("from-cli")
    page.locator("#run-choice input").press("Enter")
    page.locator("#open-run").click()
    expect(status(page)).to_have_value(re.compile(r"^opened from-cli: 2 candidates"))
    expect(cards(page)).to_have_count(2)
    assert page.locator("#prompt textarea").input_value() == "made by the CLI"
    shot(page, "11-reopened")


def test_stop_keeps_the_finished_pictures(page):
    out = page.server.out
    page.locator("#prompt textarea").fill("stop me")
    page.locator("#seeds textarea, #seeds input").first.fill("100-107")
    with page.server.held():  # the explore waits after its first picture until the block ends: Stop comes mid-run
        page.locator("#explore").click()
        expect(status(page)).to_have_value(re.compile(r"^[1-9] of 8 candidates"))
        expect(page.locator("#explore")).to_have_text(re.compile(r"Exploring \d+ of 8"))
        shot(page, "12-exploring")
        page.locator("#stop").click()
    expect(status(page)).to_have_value(re.compile(r"candidates \(stopped\)"))
    final = status(page).input_value()
    kept = int(final.split(" of ")[0])
    run_dir = out / page.locator("#run textarea, #run input").first.input_value()
    stored = sorted(p.name for p in (run_dir / "explore").glob("seed-*.png"))
    assert 1 <= kept < 8 and len(stored) == kept
    assert len(json.loads((run_dir / "run.json").read_text())["explore"]["pictures"]) == kept
    expect(cards(page)).to_have_count(kept)
    expect(page.locator("#explore")).to_have_text("Explore")
