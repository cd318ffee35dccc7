"""Inpaint in a real browser (Debian's Chromium, Playwright, `pipeline ui` on the tiny model): explore one
candidate, load it into the Inpaint panel, paint its top right corner with the brush, Inpaint; the fix
(SEEDi1) shows beside its parent and is then refined from the Refine panel like any picture. Waits are
locator assertions; a screenshot of the painted picture goes to test-artifacts/ui-inpaint-*.png."""
from __future__ import annotations

import json
import re

import numpy as np
from PIL import Image

from test_ui_browser import ARTIFACTS, browser, cards, expect, explore, page, status  # noqa: F401 (fixtures)


def test_brush_inpaint_then_refine_the_fix(page):  # noqa: F811 (the fixture)
    explore(page, "a red fox in snow", 1)
    expect(status(page)).to_have_value(re.compile(r"^1 of 1 candidates · 1 computed"))
    run_dir = page.server.out / page.locator("#run textarea, #run input").first.input_value()
    seed = json.loads((run_dir / "run.json").read_text())["explore"]["pictures"][0]["seed"]

    page.locator("#inpaint-panel").get_by_text("Inpaint", exact=True).first.click()
    page.locator("#inpaint-pick textarea, #inpaint-pick input").first.fill(str(seed))
    page.locator("#inpaint-load").click()
    canvas = page.locator("#inpaint-editor canvas").first
    canvas.scroll_into_view_if_needed()
    expect(page.locator("#inpaint-editor button[aria-label='Brush']")).to_be_visible()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    side = min(box["width"], box["height"]) / 4  # well inside the picture's top right quarter
    page.mouse.move(cx + side * 0.4, cy - side * 0.8)
    page.mouse.down()
    page.mouse.move(cx + side * 0.9, cy - side * 0.8, steps=8)
    page.mouse.move(cx + side * 0.9, cy - side * 0.4, steps=8)
    page.mouse.up()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#inpaint-editor").screenshot(path=str(ARTIFACTS / "ui-inpaint-painted.png"))
    page.locator("#inpaint-work input").fill("128")
    page.locator("#inpaint").click()
    fix = f"{seed}i1"
    expect(page.locator("#inpaint-id textarea, #inpaint-id input").first).to_have_value(fix)
    expect(status(page)).to_have_value(re.compile(rf"^{fix}: {seed} re-drawn \(computed"))
    expect(page.locator("#inpaint-result img").first).to_be_visible()
    page.locator("#inpaint-panel").screenshot(path=str(ARTIFACTS / "ui-inpaint-result.png"))
    with Image.open(run_dir / "inpaint" / f"seed-{fix}.png") as image:
        after = np.asarray(image.convert("RGB"))
    with Image.open(run_dir / "explore" / f"seed-{seed}.png") as image:
        before = np.asarray(image.convert("RGB"))
    changed = (after != before).any(axis=2)
    assert changed[:32, 32:].any() and not changed[40:, :24].any()  # the painted corner, not the opposite one

    page.locator("#refine-seeds textarea, #refine-seeds input").first.fill(fix)
    page.locator("#refine").click()
    expect(status(page)).to_have_value(re.compile(r"^refined 1 of 1 · 1 computed"))
    assert (run_dir / "refine" / f"seed-{fix}.png").is_file()
    expect(cards(page, "refined")).to_have_count(1)
