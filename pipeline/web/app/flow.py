"""The flow of a job on the page: wait for its turn in the line (saying its place), run the work in
a worker thread while the request's thread reports its progress (at most a few updates a second),
Stop between pictures (upscale: between tiles), and the running button's own text.

    for event in flow.run(app, tab, "refine", work):   # work(ticket, report) -> result
        event.kind: "waiting" (event.ahead), "progress" (event.reports: what report() was given since),
                    "stopping" (Stop was pressed while it runs), "done" (event.result),
                    "failed" (event.result: the sentence; the job ended with an error)

Every status line of a job comes from its own events, in order: the Stop button's handler writes no
status, so a late answer to it cannot overwrite "stopped while waiting" or "(stopped)" (it did, on a
busy machine).
"""
from __future__ import annotations

import queue
import statistics
import threading
import time
from dataclasses import dataclass, field

import gradio as gr

from .errors import message

UPDATE_EVERY = 0.3  # s: the most updates a second a job sends to its tab (the last report wins)
_DONE = object()
_STOPPING = object()


class Stopped(KeyboardInterrupt):
    """Raised from a progress callback when Stop was pressed: the stages treat it as Ctrl-C (they keep
    and record the pictures finished before it)."""


@dataclass
class Event:
    kind: str
    ahead: int = 0
    reports: list = field(default_factory=list)
    result: object = None
    ticket: object = None

    @property
    def stopping(self) -> bool:
        """Stop was pressed: an update keeps the Stop button off."""
        return self.ticket is not None and self.ticket.stop.is_set()


def run(app, tab: str, what: str, work, *, on_start=None):
    """Events of one job (see the module's doc). An error raised by ``work`` ends it with ``failed``
    and its sentence; a Stop while waiting ends it with ``done`` and ``result`` None."""
    ticket = app.join(tab, what)
    worker = None
    try:
        while not app.wait_turn(ticket, timeout=0.5):
            if ticket.stop.is_set():
                yield Event("done", ticket=ticket)
                return
            yield Event("waiting", ahead=app.ahead(ticket), ticket=ticket)
        if on_start is not None:
            on_start(ticket)
        reports: queue.Queue = queue.Queue()
        outcome: dict = {}
        ticket.wake = lambda: reports.put(_STOPPING)  # AppState.stop: say "stopping" now, not after the picture
        if ticket.stop.is_set():
            ticket.wake()

        def target():
            try:
                outcome["result"] = work(ticket, reports.put)
            except Stopped:
                outcome["result"] = None
            except BaseException as err:  # noqa: BLE001 - shown on the page by the request's thread
                outcome["error"] = err
            finally:
                reports.put(_DONE)

        worker = threading.Thread(target=target, name=f"pipeline-{what}", daemon=True)
        worker.start()
        yield Event("progress", ticket=ticket)  # the button turns busy at once
        finished, last, said_stopping = False, 0.0, False
        while not finished:
            batch = [reports.get()]
            deadline = time.monotonic() + max(0.0, UPDATE_EVERY - (time.monotonic() - last))
            while batch[-1] is not _DONE:  # gather what arrives until the next update is due
                try:
                    batch.append(reports.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            finished = batch[-1] is _DONE
            if any(item is _STOPPING for item in batch) and not finished and not said_stopping:
                said_stopping = True
                yield Event("stopping", ticket=ticket)
            got = [item for item in batch if item is not _DONE and item is not _STOPPING]
            if got:
                last = time.monotonic()
                yield Event("progress", reports=got, ticket=ticket)
        worker.join()
        if "error" in outcome:  # the job ends here: its button's label back, Stop off, the sentence once
            yield Event("failed", result=failure_text(outcome["error"]), ticket=ticket)
            return
        yield Event("done", result=outcome.get("result"), ticket=ticket)
    finally:
        ticket.stop.set()  # a closed tab (GeneratorExit) ends the job after the current picture
        if worker is not None:
            worker.join()
        app.leave(ticket)


def failure_text(err: BaseException) -> str:
    """The one sentence a failed job leaves in the status line (a bug's traceback goes to the log)."""
    text = message(err)
    if text is None:
        import sys
        import traceback

        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
        text = f"something went wrong ({err.__class__.__name__}): the server's log has the details"
    return text


def failed(label: str, text: str) -> tuple:
    """(status line, running button, Stop) of a failed job: the button's ``label`` back, Stop off."""
    return f"failed: {text}", button(label, busy=False), stop_button(False)


def check_stop(ticket) -> None:
    """Between pictures (or tiles): raise Stopped once Stop was pressed."""
    if ticket.stop.is_set():
        raise Stopped


class Clock:
    """Seconds per unit of work so far, and what is left, in words."""

    def __init__(self):
        self.started = time.monotonic()
        self.spans: list[float] = []

    def add(self, seconds: float) -> None:
        self.spans.append(seconds)

    def left(self, units: int) -> str:
        if units <= 0 or not self.spans:
            return ""
        return f" · about {duration(statistics.median(self.spans) * units)} left"

    def elapsed(self) -> float:
        return time.monotonic() - self.started


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def stopping_text(unit: str = "picture") -> str:
    return f"stopping after the current {unit}…"


def waiting_text(ahead: int) -> str:
    return "waiting: " + ("1 job is ahead" if ahead == 1 else f"{ahead} jobs are ahead") + \
        " (in this or another tab) · Stop cancels"


def button(text: str | None = None, *, busy: bool):
    """The running button: its own progress while busy; its label back when done."""
    update = {"interactive": not busy, "elem_classes": ["busy"] if busy else []}
    return gr.update(**update, **({"value": text} if text else {}))


def stop_button(active: bool):
    return gr.update(interactive=active)


def tab_of(request) -> str:
    """The browser tab a request comes from (its Stop and place in line); "api" for a client without one."""
    return request.session_hash if request is not None and getattr(request, "session_hash", None) else "api"


def idle(app, what: str):
    """An event handler for after a job: its button back to its label; Stop stays on while this tab
    has another job."""
    from .form import LABELS

    def handler(request: gr.Request):
        return button(LABELS[what], busy=False), stop_button(app.busy(tab_of(request)))

    return handler
