"""Waits for browser tests that work under a page's Content-Security-Policy.

Playwright's ``page.wait_for_function`` polls inside the page by evaluating its predicate from a
string, which a CSP without ``'unsafe-eval'`` refuses (``EvalError``) — the gallery's does, and so
may the app's. The first check goes through the DevTools protocol and passes, so the refusal shows
only when the condition is not already true, i.e. on a busy machine. ``wait_until`` polls from
Python with ``page.evaluate`` (DevTools protocol evaluation, which a CSP does not restrict).
Prefer locator waits (``locator.wait_for``, ``expect``) where a selector can say it.
"""
from __future__ import annotations

import time


def wait_until(page, expression: str, arg=None, timeout: float = 300_000, every: float = 100):
    """Until the JavaScript ``expression`` (or function of ``arg``) is truthy; returns its value.
    ``timeout`` and ``every`` in ms, as Playwright's."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(expression, arg)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout / 1000:.0f} s: {expression}")
        page.wait_for_timeout(every)
