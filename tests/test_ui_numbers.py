"""Issue 29's leftovers. Over HTTP (gradio_client): every number field out of its range is one sentence naming
the field and its range (never Gradio's "Value 60 is greater than maximum value 50."). In Chromium at
1400×900 (Playwright): such a refusal is in the status line (no toast, no red "Error" pill); a refused Delete
in Runs likewise; the first Explore after start says the model is loading; a 256-candidate grid scrolls
inside itself; "Refine it" is not under Upscale. Waits poll from Python (browser_wait); no timing asserts.
Screenshots: test-artifacts/numbers-*.png.
"""
from __future__ import annotations

import re
import threading

import pytest
from conftest import ROOT
from test_ui_flow_browser import WAIT, api_run, browser, open_from_runs, open_tab, wait_status  # noqa: F401
from ui_server import module_server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")
ARTIFACTS = ROOT / "test-artifacts"
EXPLORE = ("a cat", "", 64, 64, 1, "", 2, 0)  # prompt, negative, width, height, count, seeds, steps, guidance


server = module_server("ui-numbers")


def explore_args(**changed):
    names = ["prompt", "negative", "width", "height", "count", "seeds", "steps", "guidance", "seed", "batch",
             "variance"]
    values = dict(zip(names, [*EXPLORE, -1, "auto", 0]))
    values.update(changed)
    return [values[name] for name in names]


REFUSED = [  # (endpoint, arguments, the sentence)
    ("/explore", explore_args(width=16), r"^Width 16 is out of range: give 64 to 4096 pixels, a multiple of 16$"),
    ("/explore", explore_args(height=5000), r"^Height 5000 is out of range: give 64 to 4096 pixels"),
    ("/explore", explore_args(count=0), r"^Count 0 is out of range: give 1 to 10000"),
    ("/explore", explore_args(count=2.5), r"^Count takes a whole number, not 2\.5$"),
    ("/explore", explore_args(seed=-5), r"^Base seed -5 is out of range: give -1 \(random\) or 0 to 9007199254740991$"),
    ("/explore", explore_args(steps=60), r"^Steps 60 is out of range: give 1 to 50$"),
    ("/explore", explore_args(steps=2.5), r"^Steps takes a whole number, not 2\.5$"),
    ("/explore", explore_args(guidance=16), r"^Guidance 16 is out of range: give 0 to 10$"),
    ("/explore", explore_args(variance=9), r"^Seed variance 9 is out of range: give 0 to 2$"),
    ("/refine", ["x", "1", "hires", 3, 2, ""], r"^Strength 3 is out of range: give 0\.05 to 1$"),
    ("/refine", ["x", "1", "hires", 0.5, 0.1, ""], r"^Scale 0\.1 is out of range: give 0\.25 or more$"),
    ("/upscale", ["x", "1", "realesr-animevideov3", 5], r"^Detail 5 is out of range: give 0 to 1$"),
    ("/vary_subtle", ["x", "1", 99], r"^Variations 99 is out of range: give 1 to 16$"),
]


@pytest.mark.parametrize("endpoint, args, said", REFUSED, ids=[f"{e}-{s[1:12]}" for e, _, s in REFUSED])
def test_a_number_out_of_range_is_refused_by_its_field_and_range(server, endpoint, args, said):
    client = server.client()
    with pytest.raises(Exception) as refused:
        client.predict(*args, api_name=endpoint)
    text = str(refused.value).strip()
    assert re.search(said, text), text
    assert "Value " not in text and "maximum value" not in text, text


def test_a_lora_strength_out_of_range_is_named(server):
    from pipeline.web.app.form import loras_of

    class App:  # the server's pipeline with one LoRA file
        class pipeline:
            @staticmethod
            def loras():
                return [{"name": "style"}]

    from pipeline.core.errors import UserError

    with pytest.raises(UserError, match=r"^LoRA 1 strength 5 is out of range: give -2 to 2$"):
        loras_of(App, [["style", 5]])


def visible_error_pills(page) -> list[str]:
    """Gradio's red "Error" badges over outputs of a failed event, where they show."""
    return page.evaluate("""() => [...document.querySelectorAll('.error, .toast-body')]
        .filter(el => el.checkVisibility({opacityProperty: true, visibilityProperty: true})
                      && /Error/.test(el.innerText)).map(el => el.innerText)""")


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"numbers-{name}.png"))


def test_the_first_explore_says_the_model_is_loading(browser, server, monkeypatch):  # noqa: F811
    """The app is served from this process (AppServer), so the test holds the model's building until the page has
    said it is loading: the tiny model builds in a tenth of a second, the real one in a minute, and what the page
    says while it builds must not depend on which is quicker than the page."""
    session = server.pipeline.session
    assert not session.engine_loaded  # the first explore in this module's server
    said, build = threading.Event(), session.engine

    def engine():
        said.wait(WAIT / 1000)  # released below, as soon as the page says it
        return build()

    monkeypatch.setattr(session, "engine", engine)
    page = open_tab(browser, server.url)
    page.locator("#prompt textarea").fill("a first cat")
    for field, value in (("width", "64"), ("height", "64"), ("count", "2")):
        page.locator(f"#{field} input").fill(value)
    try:
        page.locator("#explore").click()
        text = wait_status(page, r"^0 of 2 candidates")  # held: nothing is computed until it is said
        assert re.match(r"^0 of 2 candidates · the model is loading \(the first explore after start\)", text), text
        shot(page, "first-explore")
    finally:
        said.set()
    wait_status(page, r"^2 of 2 candidates · 2 computed")
    assert session.engine_loaded


def test_a_number_out_of_range_on_the_page_is_said_in_the_status_line(browser, server):  # noqa: F811
    page = open_tab(browser, server.url)
    page.locator("#prompt textarea").fill("a cat")
    page.locator("#width input").fill("16")
    page.locator("#explore").click()
    wait_status(page, r"^Width 16 is out of range: give 64 to 4096 pixels, a multiple of 16$")
    assert visible_error_pills(page) == []
    shot(page, "width-16")
    page.locator("#width input").fill("64")
    page.locator("#count input").fill("2.5")
    page.locator("#explore").click()
    wait_status(page, r"^Count takes a whole number, not 2\.5$")
    assert visible_error_pills(page) == []


def test_a_refused_delete_is_one_sentence_in_the_status_line(browser, server, tmp_path):  # noqa: F811
    run_dir = api_run(server, "deleted twice", "5")
    page = open_tab(browser, server.url)
    open_from_runs(page, run_dir.name)  # opened: Delete acts on it (the newest run's opening on load is a race)
    page.get_by_role("tab", name="Runs").click()  # back to Delete, on the Runs tab
    page.locator("#runs-table [role=gridcell]").filter(has_text=run_dir.name).first.wait_for(timeout=WAIT)
    # every run of the page is gone (moved away in a shell, or by another tab's Delete) while the page still lists
    # them: whichever run Delete holds (a listing still in flight when they go picks the newest one left, or none),
    # it is refused. Moved at once, not removed file by file, which a listing making a thumbnail then would undo.
    gone = [run for run in server.out.iterdir() if (run / "run.json").is_file()]
    assert run_dir in gone
    for run in gone:
        run.rename(tmp_path / run.name)
    page.locator("#delete-run").click()
    text = wait_status(page, r"^not deleted: ")
    assert "\n" not in text and (any(run.name in text for run in gone) or "no run is open" in text), text
    assert visible_error_pills(page) == []
    shot(page, "refused-delete")


def test_256_candidates_scroll_inside_the_grid(browser, server):  # noqa: F811
    api_run(server, "many cats", "1-256", steps=1)  # what is tested is the page, not the pictures
    page = open_tab(browser, server.url)
    empty = page.evaluate("document.documentElement.scrollHeight")  # the page with no candidates
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-refresh").click()
    row = page.locator("#runs-table [role=gridcell]").filter(has_text="many-cats").first
    row.wait_for(timeout=WAIT)
    row.click()
    wait_status(page, r"^opened .*many-cats.*: 256 candidates")
    page.locator("#candidates .pcard").nth(255).wait_for(state="attached", timeout=WAIT)
    height = page.evaluate("document.documentElement.scrollHeight")
    shot(page, "256")
    # the grid grows the page by less than one window (it scrolls inside itself), not 9 000 px of cards; the
    # page's panels below it (refine, upscale, a picture from disk, inpaint) make it ~1 600 px with no candidates
    assert height < empty + 900 and height < 2.6 * 900, (empty, height)
    scrolls = page.evaluate("""() => { const el = document.querySelector('#candidates .pgrid-cards');
        return el.scrollHeight > el.clientHeight + 100 && getComputedStyle(el).overflowY; }""")
    assert scrolls in ("auto", "scroll"), scrolls


def test_refine_it_is_in_its_own_panel_not_under_upscale(browser, server):  # noqa: F811
    page = open_tab(browser, server.url)
    assert page.locator("#upscale-panel #disk-refine").count() == 0
    assert page.locator("#disk-panel #disk-refine").count() == 1
    assert page.locator("#disk-panel #disk-upscale").count() == 1
    page.locator("#disk-panel").scroll_into_view_if_needed()
    shot(page, "disk-panel")
