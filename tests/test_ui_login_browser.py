"""LAN mode's login through the page, in Chromium: Gradio's login form posts multipart/form-data,
which the guard lets through on /login only (a small body of fields, no file).

A wrong password is said on the page and keeps the form; the right one opens the app. Waits are
Playwright's locator assertions; no timing asserts. Skips where Chromium or Playwright is missing.
"""
from __future__ import annotations

import re

import pytest
from browsers import launched, require
from conftest import ROOT
from ui_server import Server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

WAIT = 120_000  # ms: no model runs here, only pages on two loaded cores
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture
def login_page(tmp_path):
    require()
    users = tmp_path / "users.txt"
    users.write_text("alice:correct horse\n")
    server = Server(tmp_path / "outputs", "--auth-file", str(users))
    try:
        with launched() as chromium:
            context = chromium.new_context(viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(WAIT)
            page.server = server
            page.answers = []  # (status, url) of each POST /login
            page.on("response", lambda r: page.answers.append((r.status, r.url))
                    if r.request.method == "POST" and r.url.rstrip("/").endswith("/login") else None)
            page.goto(server.url, wait_until="load")
            yield page
            chromium.close()
    finally:
        server.kill()


def expect(locator):
    from playwright.sync_api import expect as _expect

    _expect.set_options(timeout=WAIT)
    return _expect(locator)


def log_in(page, user: str, password: str) -> None:
    page.get_by_label(re.compile("username", re.IGNORECASE)).fill(user)
    page.get_by_label(re.compile("password", re.IGNORECASE)).fill(password)
    page.get_by_role("button", name=re.compile("login", re.IGNORECASE)).click()


def test_a_person_logs_in_through_the_page(login_page):
    page = login_page
    expect(page.get_by_role("button", name=re.compile("login", re.IGNORECASE))).to_be_visible()
    expect(page.get_by_text(re.compile("user name and password"))).to_be_visible()  # what to give, said
    log_in(page, "alice", "wrong")
    expect(page.get_by_text(re.compile("incorrect credentials", re.IGNORECASE))).to_be_visible()
    assert [status for status, _ in page.answers] == [400]  # Gradio's answer, not the guard's 415
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-login-wrong.png"))

    log_in(page, "alice", "correct horse")
    expect(page.locator("#explore")).to_be_visible()  # the app itself
    assert [status for status, _ in page.answers] == [400, 200]
    page.screenshot(path=str(ARTIFACTS / "ui-login-in.png"))
