"""The gallery in a real browser: Debian's Chromium driven by Playwright, headless, from file://.

Pick two candidates by click and one by keyboard, run the command the page shows, check refine
made exactly those seeds; a hostile prompt runs nothing. Screenshots go to test-artifacts/.
Skips (with the reason) where Chromium or Playwright is missing; .ci/run installs both.
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest

from browser_wait import wait_until
from browsers import launched, require
from conftest import ROOT, run_cli

ARTIFACTS = ROOT / "test-artifacts"
PROMPT = 'a fox <img src=x onerror=alert(1)> </script><script>alert("script")</script> & snow'
SEEDS = [5, 6, 7, 8]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real tiny-model explore with a hostile prompt."""
    require()  # before the explore
    out = tmp_path_factory.mktemp("browser") / "outputs"
    run_cli("explore", PROMPT, "--model", "tiny-random", "--size", "64", "--seeds", ",".join(map(str, SEEDS)),
            "--out", out, "--run", "fox")
    return out / "fox"


@pytest.fixture(scope="module")
def chromium():
    with launched() as browser:
        yield browser


@pytest.fixture
def browser(chromium):
    """A fresh browser context for each test: no picks (localStorage) or cache left by another test."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, offline=True)
    yield context
    context.close()


class Page:
    """A gallery page with everything that could signal a script running: dialogs, errors, console."""

    def __init__(self, context, url: str):
        self.dialogs, self.errors, self.console = [], [], []
        self.page = context.new_page()
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        self.page.on("pageerror", lambda err: self.errors.append(str(err)))
        self.page.on("console", lambda msg: self.console.append(msg.text))
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def card(self, seed: int):
        return self.page.locator(f'.card[data-seed="{seed}"]')

    def picked(self) -> list[int]:
        return [int(s) for s in self.page.eval_on_selector_all(".card.picked", "cards => cards.map(c => c.dataset.seed)")]

    def close(self):
        self.page.close()


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=False)
    return path


def test_pick_by_click_and_keyboard_then_run_the_command(browser, run_dir, tmp_path):
    view = Page(browser, (run_dir / "index.html").as_uri())
    page = view.page
    assert page.inner_text("#count") == "Nothing picked yet"
    view.card(SEEDS[0]).click()
    view.card(SEEDS[0]).click()  # a second click un-picks
    assert view.picked() == []
    view.card(SEEDS[0]).click()
    view.card(SEEDS[2]).click()
    page.keyboard.press("ArrowRight")  # focus moves from the last clicked card (seed 7) to seed 8
    page.keyboard.press("Space")
    picks = [SEEDS[0], SEEDS[2], SEEDS[3]]
    assert view.picked() == picks
    assert page.inner_text("#count") == f"3 of {len(SEEDS)} picked"

    command = page.eval_on_selector("#cmd", "el => el.dataset.command")
    assert " ".join(page.inner_text("#cmd").split()) == command  # what is shown is what is copied
    assert command == (f"pipeline refine --run {shlex.quote(str(run_dir.resolve()))} "
                       f"--seeds {','.join(map(str, picks))} --out {shlex.quote(str(run_dir.resolve().parent))}")
    assert page.inner_text("#cfg") == f"refine:\n  picks: [{', '.join(map(str, picks))}]"
    page.click("#copy-cmd")
    page.wait_for_selector("#toast.show")
    assert "copied" in page.inner_text("#toast").lower() or "ctrl+c" in page.inner_text("#toast").lower()
    shot(page, "gallery-picked.png")

    argv = shlex.split(command)
    assert argv[0] == "pipeline"
    elsewhere = tmp_path / "elsewhere"  # the command works from any directory
    elsewhere.mkdir()
    run_cli(*argv[1:], cwd=elsewhere)  # as typed in a shell there (exit status 0, or the test fails with stderr)
    data = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    refined = sorted(p["seed"] for p in data["refine"]["pictures"])
    assert refined == picks
    assert sorted(p.name for p in (run_dir / "refine").glob("*.png")) == sorted(f"seed-{s}.png" for s in picks)
    assert not (elsewhere / "outputs").exists()

    # refine rewrote the page: each refined picture sits next to its candidate
    page.reload()
    page.wait_for_load_state("load")
    for seed in SEEDS:
        results = view.card(seed).locator(".result")
        assert results.count() == (1 if seed in picks else 0)
    assert view.picked() == picks  # picks survive a reload
    view.card(SEEDS[2]).locator(".result").click()
    wait_until(page, "document.getElementById('lb-img').naturalWidth > 0")
    assert page.eval_on_selector("#lb-img", "img => img.getAttribute('src')") == f"refine/seed-{SEEDS[2]}.png"
    shot(page, "gallery-refined-lightbox.png")
    page.keyboard.press("Escape")
    page.click("#clear")
    assert view.picked() == [] and page.inner_text("#count") == "Nothing picked yet"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "gallery.png")
    assert not view.errors and not view.dialogs
    view.close()


def test_keyboard_enlarges_and_escape_closes(browser, run_dir):
    view = Page(browser, (run_dir / "index.html").as_uri())
    page = view.page
    page.keyboard.press("ArrowRight")  # from the page, arrows first focus the grid
    assert page.evaluate("document.activeElement.dataset.seed") == str(SEEDS[0])
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    assert page.is_visible("#lightbox")
    wait_until(page, "document.getElementById('lb-img').naturalWidth > 0")  # the full picture loads now
    assert page.eval_on_selector("#lb-img", "img => img.getAttribute('src')") == f"explore/seed-{SEEDS[1]}.png"
    rows = dict(page.eval_on_selector_all("#lb-params tr", "rows => rows.map(r => [r.cells[0].textContent, "
                                                                  "r.cells[1].textContent])"))
    assert rows["seed"] == str(SEEDS[1]) and rows["prompt"] == PROMPT and rows["steps"] == "8"
    page.keyboard.press("ArrowRight")
    assert page.eval_on_selector("#lb-img", "img => img.getAttribute('src')") == f"explore/seed-{SEEDS[2]}.png"
    page.keyboard.press("Space")
    assert view.picked() == [SEEDS[2]]
    page.keyboard.press("Escape")
    assert not page.is_visible("#lightbox")
    assert page.evaluate("document.activeElement.dataset.seed") == str(SEEDS[2])
    page.keyboard.press("Space")
    assert view.picked() == []
    assert not view.errors and not view.dialogs
    view.close()


def test_hostile_prompt_runs_no_script(browser, run_dir):
    view = Page(browser, (run_dir / "index.html").as_uri())
    page = view.page
    page.wait_for_timeout(300)  # give an injected onerror handler time to fire
    assert view.dialogs == []
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("script").count() == 2  # the data block and the page's own script
    assert page.inner_text("h1.prompt") == PROMPT
    assert page.title().startswith(PROMPT[:80])
    assert page.inner_text("#count") == "Nothing picked yet"  # the page's own script ran and set up the bar
    blocked = [m for m in view.console if "Content Security Policy" in m]
    assert blocked == [] and view.errors == []  # nothing tried to run, nothing of ours was refused
    view.close()


def test_page_works_when_moved(browser, run_dir, tmp_path):
    """The command follows the folder: a moved run shows its new place."""
    moved = tmp_path / "moved out" / "fox"
    shutil.copytree(run_dir, moved)
    view = Page(browser, (moved / "index.html").as_uri())
    view.card(SEEDS[1]).click()
    command = view.page.eval_on_selector("#cmd", "el => el.dataset.command")
    assert command == (f"pipeline refine --run {shlex.quote(str(moved))} --seeds {SEEDS[1]} "
                       f"--out {shlex.quote(str(moved.parent))}")
    view.close()
