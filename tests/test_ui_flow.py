"""The line of jobs and Stop (flow.run over AppState) without a browser: a Stop while a job runs
is said by the job's own events, in order, before its end; a Stop while waiting ends the job at once.
Threads hand over with events, never with sleeps."""
from __future__ import annotations

import threading

import pytest

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")


@pytest.fixture
def app(tmp_path):
    from pipeline.web.app.state import AppState

    return AppState(None, tmp_path)


def test_stop_while_running_is_said_before_the_end_and_before_the_next_picture(app):
    from pipeline.web.app import flow

    release = threading.Event()

    def work(ticket, report):
        report("picture 1")
        ticket.stop.wait()
        release.wait()  # the job is still busy with its current picture when Stop is pressed
        return "1 picture"

    events = flow.run(app, "tab-a", "explore", work)
    assert next(events).kind == "progress"  # the button turns busy
    first = next(events)
    assert (first.kind, first.reports, first.stopping) == ("progress", ["picture 1"], False)
    assert app.stop("tab-a")
    stopping = next(events)  # at once: the worker has not finished its picture
    assert stopping.kind == "stopping" and stopping.stopping and not release.is_set()
    release.set()
    done = next(events)
    assert (done.kind, done.result) == ("done", "1 picture")
    assert list(events) == [] and not app.busy("tab-a")


def test_stop_while_waiting_ends_that_job_and_leaves_the_running_one(app):
    from pipeline.web.app import flow

    running, release = threading.Event(), threading.Event()

    def long_job(ticket, report):
        running.set()
        release.wait()
        return "long"

    first = flow.run(app, "tab-a", "explore", long_job)
    assert next(first).kind == "progress"
    running.wait()
    second = flow.run(app, "tab-b", "explore", lambda ticket, report: pytest.fail("a cancelled job ran"))
    waiting = next(second)
    assert (waiting.kind, waiting.ahead) == ("waiting", 1)
    assert app.stop("tab-b")
    ended = next(second)
    assert (ended.kind, ended.result) == ("done", None) and list(second) == []
    assert app.busy("tab-a") and not app.busy("tab-b")
    release.set()
    assert [e.kind for e in first] == ["done"]
    assert not app.busy("tab-a")
