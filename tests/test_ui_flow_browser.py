"""The app's flow of jobs in a real browser (Debian's Chromium, Playwright) against `pipeline ui`:
Stop during an upscale, a second tab's place in line, a restart that keeps the form and offers to
continue, a picture dropped from disk and refined, a Runs row click, Vary from the page, a LoRA picked, Ctrl+Enter.

Each test opens a fresh browser context (no localStorage from another test). Waits poll from
Python (browser_wait.wait_until) or use locators: no eval inside the page, so a CSP does not stop
them; no timing asserts. Screenshots at 1400×900 go to test-artifacts/flow-*.png.
"""
from __future__ import annotations

import json
import re
import signal
import uuid
from pathlib import Path

import pytest

from browser_wait import wait_until
from browsers import launched
from conftest import ROOT, run_cli
from ui_server import AppServer, Server, module_server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

ARTIFACTS = ROOT / "test-artifacts"
WAIT = 300_000  # ms: two loaded CPU cores
SIZE = 64


@pytest.fixture(scope="module")
def browser():
    with launched() as chromium:
        yield chromium


server = module_server("ui-flow")


def open_tab(browser, url: str):
    """A tab in a fresh browser context, at 1400×900."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.goto(url, wait_until="load")
    tab.locator("#prompt textarea").wait_for(timeout=WAIT)
    tab.locator("#inpaint-panel").wait_for(state="attached", timeout=WAIT)  # the Explore tab's last panel: built
    return tab


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"flow-{name}.png"))


def status(page) -> str:
    return page.locator("#status textarea, #status input").first.input_value()


def wait_status(page, pattern: str) -> str:
    """Until the status line matches ``pattern``; returns it. If it never does, the error says what it says instead
    and test-artifacts/flow-status-never-matched.png shows the page."""
    try:
        wait_until(page, """(pattern) => {
            const el = document.querySelector('#status textarea, #status input');
            return el && new RegExp(pattern).test(el.value);
        }""", arg=pattern, timeout=WAIT)
    except AssertionError:
        shot(page, "status-never-matched")
        raise AssertionError(f"the status line never matched {pattern!r}: it says {status(page)!r}") from None
    return status(page)


def button_text(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id}").inner_text().strip()


def fill_form(page, prompt: str, seeds: str, steps: int = 2) -> None:
    page.locator("#prompt textarea").fill(prompt)
    page.locator("#width input").fill(str(SIZE))
    page.locator("#height input").fill(str(SIZE))
    page.locator("#seeds textarea, #seeds input").first.fill(seeds)
    page.locator("#steps input[type=number]").fill(str(steps))
    page.locator("#steps input[type=number]").press("Enter")


def api_run(server, prompt: str, seeds: str, refine: str | None = None, size: str = "", steps: int = 2) -> Path:
    """A run made through the app's API (quicker than clicking): explore, and refine SEEDS to SIZE."""
    client = server.client()
    result = client.predict(prompt, "", SIZE, SIZE, 1, seeds, steps, 0, api_name="/explore")[-1]
    run_dir = Path(result["run_dir"])
    if refine:
        client.predict(run_dir.name, refine, "hires", 0.5, 2, size, api_name="/refine")
    return run_dir


def open_from_runs(page, name: str) -> None:
    """The Runs tab, then a click on the run's row."""
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    row = page.locator("#runs-table [role=gridcell]").filter(has_text=name).first  # the table's visible rows
    row.wait_for(timeout=WAIT)
    row.click()
    wait_status(page, rf"^opened {name}:")


def vary_strong(page, run: str, seeds: str, count: int) -> None:
    """Open RUN from Runs, and Vary strong SEEDS, COUNT variations each."""
    open_from_runs(page, run)
    page.locator("#refine-seeds textarea, #refine-seeds input").first.fill(seeds)
    page.locator("#vary-count input").fill(str(count))
    page.locator("#vary-count input").press("Enter")
    page.locator("#vary-strong").click()


def test_stop_during_upscale_keeps_files_and_run_json_in_agreement(browser, server):
    run_dir = api_run(server, "stop the upscale", "1,2", refine="1,2", size="384x384")
    page = open_tab(browser, server.url)
    assert page.locator("#stop").is_disabled()  # nothing runs
    open_from_runs(page, run_dir.name)
    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    # progress moves inside the first (whole-picture) tile: Stop is honoured between model calls, so this test
    # waits for a block of the model, never for a whole tile (117 s at load 4-7 before); the upscale waits after
    # that block until Stop is pressed, so no model is too quick for the click (it was x4plus, for its slowness)
    with server.held():
        page.locator("#upscale").click()
        wait_status(page, r"^upscaling: tile 1 of \d+ · [1-9]\d*%")
        assert button_text(page, "upscale").startswith("Upscaling 1 of 2"), button_text(page, "upscale")
        assert page.locator("#upscale").is_disabled() and page.locator("#stop").is_enabled()
        shot(page, "1-upscaling")
        page.locator("#stop").click()
    final = wait_status(page, r"^upscaled 0 of 2 \(stopped\)")  # inside the first picture's only tile
    wait_until(page, "() => document.querySelector('#upscale').innerText.trim() === 'Upscale refined'",
               timeout=WAIT)
    assert page.locator("#stop").is_disabled()
    shot(page, "2-upscale-stopped")
    data = json.loads((run_dir / "run.json").read_text())
    recorded = sorted(p["path"] for p in data.get("upscale", {}).get("pictures", []))
    on_disk = sorted(f"upscale/{p.name}" for p in (run_dir / "upscale").glob("seed-*.png")) \
        if (run_dir / "upscale").is_dir() else []
    assert recorded == on_disk and len(on_disk) == int(final.split()[1]) < 2, (final, recorded, on_disk)


def test_a_second_tab_sees_its_place_in_line_and_can_cancel(browser, server):
    first, second = open_tab(browser, server.url), open_tab(browser, server.url)
    fill_form(first, "the long one", "200-207")
    with server.held():  # the first job waits after its first picture until the block ends
        first.locator("#explore").click()
        wait_status(first, r"^[1-9] of 8 candidates")
        fill_form(second, "the waiting one", "300-301")
        second.locator("#explore").click()
        waiting = wait_status(second, r"^waiting: 1 job is ahead")
        assert button_text(second, "explore") == "Waiting · 1 ahead" and second.locator("#stop").is_enabled()
        shot(second, "3-second-tab-waiting")
        second.locator("#stop").click()  # a waiting job is cancelled at once
        wait_status(second, r"^stopped while waiting: nothing was explored")
        first.locator("#stop").click()
    final = wait_status(first, r"candidates \(stopped\)")
    assert re.match(r"^[1-7] of 8 candidates \(stopped\)", final), final
    assert not list(server.out.glob("*the-waiting-one*")), waiting


def test_ctrl_enter_in_the_prompt_explores(browser, server):
    page = open_tab(browser, server.url)
    wait_until(page, "() => window.__pipelineKeys === true", timeout=WAIT)  # the page's keys are on (a load event)
    # the emoji seed buttons have names a person (hover) and a screen reader can read
    assert page.get_by_role("button", name="Random base seed (-1): a new one for each explore").is_visible()
    assert page.get_by_role("button", name="Reuse the base seed of this tab's last random explore").is_visible()
    fill_form(page, "keyboard only", "500-501")
    page.locator("#prompt textarea").press("Control+Enter")
    done = wait_status(page, r"^2 of 2 candidates")
    assert page.locator("#prompt textarea").input_value() == "keyboard only", "Ctrl+Enter also typed a new line"
    assert sorted(p.name for p in server.out.glob("*keyboard-only/explore/seed-*.png")) == \
        ["seed-500.png", "seed-501.png"], done


def test_a_restart_keeps_the_form_and_offers_to_continue_the_run(browser, tmp_path):
    out = tmp_path / "outputs"
    srv = Server(out)
    page = open_tab(browser, srv.url)
    try:
        fill_form(page, "interrupted fox", "40-55", steps=8)  # 16: the kill lands mid-run on a fast machine too
        page.locator("#explore").click()
        wait_status(page, r"^([2-9]|1[0-5]) of 16 candidates")
        srv.kill(signal.SIGKILL)  # the server dies mid-run
    finally:
        srv.kill(signal.SIGKILL)
    kept = len(list(out.glob("*-interrupted-fox/explore/seed-*.png")))  # not through OUT/latest
    assert 2 <= kept < 16
    # the app started again on the same address (the page's storage belongs to it), here in the test process: what
    # is tested is what the killed process left (its journal, its pictures) and what the page kept
    srv = AppServer(out, port=srv.port)
    try:
        context = page.context
        page.close()  # the open page reloads itself when the server is back; the user opens it again instead
        page = context.new_page()
        page.goto(srv.url, wait_until="load")
        page.locator("#resume-continue").wait_for(state="visible", timeout=WAIT)
        assert page.locator("#prompt textarea").input_value() == "interrupted fox"  # the form, kept
        assert page.locator("#seeds textarea, #seeds input").first.input_value() == "40-55"
        text = page.locator("#resume-text").inner_text()
        run = next(out.glob("*interrupted-fox*")).name
        assert run in text and f"it holds {kept} of 16 pictures" in text, text
        shot(page, "4-restart-offers-continue")
        page.locator("#resume-continue").click()
        final = wait_status(page, r"^16 of 16 candidates · \d+ computed")
        assert f"{kept} from the store" in final, final
        assert page.locator("#run textarea, #run input").first.input_value() == run  # the same run, finished
        assert len(json.loads((out / run / "run.json").read_text())["explore"]["pictures"]) == 16
        shot(page, "5-continued")
    finally:
        srv.kill()


def test_a_picture_dropped_from_disk_is_refined_upscaled_and_kept_while_shown(browser, server, tmp_path):
    from PIL import Image

    name = f"dropped-{uuid.uuid4().hex[:8]}"
    picture = tmp_path / f"{name}.png"
    Image.new("RGB", (SIZE, SIZE), (200, 90, 40)).save(picture)  # no generation parameters in it
    page = open_tab(browser, server.url)
    page.locator("#prompt textarea").fill("")
    page.locator("#from-disk input[type=file]").set_input_files(str(picture))
    page.locator("#from-disk img").first.wait_for(timeout=WAIT)
    shot(page, "6-dropped")
    page.locator("#disk-refine").click()  # refused: no prompt; doing what it says then works
    wait_status(page, r"^this picture carries no generation parameters: write its prompt")  # the status line
    page.locator("#prompt textarea").fill("an orange square")
    page.locator("#disk-refine").click()
    wait_status(page, r"^refined 1 of 1 · 1 computed")
    wait_until(page, "() => document.querySelector('#run textarea, #run input').value.startsWith('from-')",
               timeout=WAIT)
    run_dir = server.out / page.locator("#run textarea, #run input").first.input_value()
    refined = list((run_dir / "refine").glob("seed-*.png"))
    assert len(refined) == 1
    with Image.open(refined[0]) as image:
        assert image.size == (2 * SIZE, 2 * SIZE)
    assert json.loads((run_dir / "run.json").read_text())["prompt"] == "an orange square"
    assert page.locator("#from-disk img").count() >= 1  # still shown, so still there to upscale
    shot(page, "7-dropped-refined")

    model = page.locator("#upscale-model input")
    model.fill("realesr-animevideov3")
    model.press("Enter")
    page.locator("#disk-upscale").click()
    wait_status(page, r"^upscaled 1 of 1 · 1 computed")
    card = page.locator("#upscaled .pcard").filter(has_text=name)
    card.wait_for(timeout=WAIT)  # the result is on the page, in the Upscaled grid
    card.click()
    expect_src = page.locator("#viewer-download").get_attribute("href")
    assert "upscaled" in expect_src and name in expect_src, expect_src
    page.keyboard.press("Escape")
    shot(page, "7b-dropped-upscaled")
    kept = [p for folder in server.cache_folders() for p in folder.rglob(f"{name}*")]
    assert kept, "the upload was deleted while the page shows it"

    # another picture replaces it: the first upload is deleted
    other = tmp_path / f"other-{uuid.uuid4().hex[:8]}.png"
    Image.new("RGB", (SIZE, SIZE), (40, 90, 200)).save(other)
    page.locator("#from-disk input[type=file]").set_input_files(str(other))
    for _ in range(WAIT // 200):
        if not [p for folder in server.cache_folders() for p in folder.rglob(f"{name}*")]:
            break
        page.wait_for_timeout(200)
    left = [p for folder in server.cache_folders() for p in folder.rglob(f"{name}*")]
    assert left == [], left


def test_a_runs_row_click_opens_the_run_with_its_count_and_seeds(browser, server):
    run_cli("explore", "made by the CLI", "--model", "tiny-random", "--size", str(SIZE), "--steps", "2",
            "--seeds", "7,8", "--out", server.out, "--run", "row-click")
    page = open_tab(browser, server.url)
    open_from_runs(page, "row-click")
    assert page.locator("#prompt textarea").input_value() == "made by the CLI"
    assert page.locator("#count input").input_value() == "2"
    assert page.locator("#seeds textarea, #seeds input").first.input_value() == "7-8"
    assert page.locator("#candidates img").count() >= 2
    shot(page, "8-row-opened")


def test_vary_from_the_page(browser, server):
    run_dir = api_run(server, "vary me", "11,12")
    page = open_tab(browser, server.url)
    vary_strong(page, run_dir.name, "12", 2)
    final = wait_status(page, r"^\d+ of \d+ variations \(strong\).* · \d+ computed")
    assert final.startswith("2 of 2 variations (strong) · 2 computed"), final
    seeds = [p["seed"] for p in json.loads((run_dir / "run.json").read_text())["explore"]["pictures"]]
    assert seeds == [11, 12, "12v1", "12v2"], seeds
    assert all((run_dir / "explore" / f"seed-{s}.png").is_file() for s in ("12v1", "12v2"))
    assert page.locator("#candidates img").count() >= 4
    shot(page, "9-varied")


def test_a_lora_picked_on_the_page_is_recorded_with_its_strength(browser, tmp_path):
    from lora_files import lora_tensors, write_lora

    pytest.importorskip("pipeline.models.loras", reason="no LoRA support on this branch")
    folder = tmp_path / "loras"
    write_lora(folder / "style.safetensors", "kohya", lora_tensors(rank=4, seed=7), alpha=4.0)
    srv = AppServer(tmp_path / "outputs", env={"PIPELINE_LORAS": str(folder)})
    try:
        page = open_tab(browser, srv.url)
        fill_form(page, "a styled fox", "5")
        page.locator("#lora").get_by_text("LoRA").first.click()  # the closed accordion
        choice = page.locator("#lora-0 input")
        choice.wait_for(state="visible", timeout=WAIT)
        choice.click()  # the list opens: pick the file from it
        page.get_by_role("option", name="style").first.click()
        weight = page.locator("#lora-weight-0 input[type=number]")
        weight.fill("0.7")
        weight.press("Enter")
        # the picker shows a second row once the first has a file (the pick reached the server)
        page.locator("#lora-1 input").wait_for(state="visible", timeout=WAIT)
        assert choice.input_value() == "style"
        page.locator("#explore").click()
        wait_status(page, r"^1 of 1 candidates · 1 computed")
        shot(page, "10-lora")
        run_dir = srv.out / page.locator("#run textarea, #run input").first.input_value()
        loras = json.loads((run_dir / "run.json").read_text())["loras"]
        assert [(entry["name"], entry["weight"]) for entry in loras] == [("style", 0.7)], loras
    finally:
        srv.kill()
