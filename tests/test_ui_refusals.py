"""Refusals over HTTP (no page involved): one sentence naming the field, and a toast's text is text."""
from __future__ import annotations

import pytest
from ui_server import module_server

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")


server = module_server("ui-refusals")


def test_a_fractional_count_is_refused_by_name(server):
    client = server.client()
    with pytest.raises(Exception, match=r"Count takes a whole number, not 2\.5"):
        client.predict("a cat", "", 64, 64, 2.5, "", 2, 0, api_name="/explore")


def test_markup_in_a_refusal_is_sent_as_text(server):
    client = server.client()
    with pytest.raises(Exception) as refused:
        client.predict('<img src=x onerror=alert(1)><b>bold</b>', "1", "realesr-animevideov3", api_name="/upscale")
    text = str(refused.value)
    assert "&lt;img src=x" in text and "<img" not in text and "<b>" not in text, text
