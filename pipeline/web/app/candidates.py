"""The candidates grid and the explore event. Candidates stream in as they are stored: the grid's
value grows by the new items only, sent at most ``UPDATES_PER_SECOND`` times a second (Gradio sends
a generator's later values as diffs), so the browser's cost per candidate does not grow with the
run. The Explore button shows the run's progress; Stop ends it after the current picture. Looking
(click, Enter) and picking (the ✓ corner, Space, P) are the grid's own (grid.py, viewer.js)."""
from __future__ import annotations

import queue
import threading
import time

import gradio as gr

from . import grid, pictures
from .errors import as_page_error

_DONE = object()
UPDATES_PER_SECOND = 3
EXPLORE = "Explore"


def build_gallery(app, ui) -> None:
    ui.candidates = grid.build(app, "candidates", "explore", "Candidates", vary=bool(getattr(ui, "vary_from_grid", False)))


def explore_inputs(ui) -> list:
    """The form's inputs of the explore event (the form may name its own list ``ui.explore_inputs``)."""
    return getattr(ui, "explore_inputs", None) or [ui.prompt, ui.negative, ui.width, ui.height, ui.count, ui.seeds,
                                                   ui.steps, ui.guidance]


def wire(app, ui) -> None:
    def explore(prompt, negative, width, height, count, seeds, steps, guidance, request: gr.Request):
        """Render candidates of PROMPT; yields (grid, status, bar, run, result) as they are stored."""
        yield from _explore(app, request.session_hash if request else "api", prompt, negative, width,
                            height, count, seeds, steps, guidance)

    ui.explore_event = ui.explore_btn.click(
        explore, explore_inputs(ui), [ui.candidates, ui.status, ui.bar, ui.run, ui.explore_btn, ui.result],
        api_name="explore", concurrency_id="device", show_progress="hidden")
    # whatever happened (an error, a closed tab), the button is the Explore button again
    ui.explore_event.then(lambda: gr.update(value=EXPLORE, elem_classes=[]), None, ui.explore_btn,
                          api_visibility="private", queue=False, show_progress="hidden")

    def clear():  # a new run: nothing of the previous one stays on the page
        return grid.value(None, "refine"), None, grid.value(None, "upscale")

    ui.explore_btn.click(clear, None, [ui.refined, ui.compare, ui.upscaled], api_visibility="private", queue=False,
                         show_progress="hidden")

    def stop(request: gr.Request):
        return "stopping after the current picture…" if app.stop(request.session_hash) else gr.skip()

    ui.stop_btn.click(stop, None, ui.status, api_visibility="private", queue=False)


def busy(text: str):
    return gr.update(value=text, elem_classes=["busy"])


def _seeds_of(count, seeds_text):
    from ...jobs import parse_seeds

    if seeds_text and seeds_text.strip():
        return {"seeds": parse_seeds(seeds_text.strip())}
    from ...errors import UserError

    if count is None or int(count) < 1:
        raise UserError("give a count of at least 1, or seeds like 1,2,10-20")
    return {"count": int(count)}


def _explore(app, tab, prompt, negative, width, height, count, seeds, steps, guidance):
    if negative and not guidance:
        gr.Warning("the negative prompt has no effect with guidance 0 (Turbo's default); "
                   "set guidance above 0 to use it")
    try:
        which = _seeds_of(count, seeds)
        size = (int(width or 0), int(height or 0))
    except Exception as err:  # noqa: BLE001
        as_page_error(err)
    stop = app.new_stop(tab)
    arrived: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            with app.device() as pipeline:
                outcome["result"] = pipeline.explore(prompt, negative=negative or "", size=size, steps=int(steps),
                                                     guidance=float(guidance or 0), on_picture=arrived.put,
                                                     stop=stop, **which)
        except BaseException as err:  # noqa: BLE001 - shown on the page below
            outcome["error"] = err
        finally:
            arrived.put(_DONE)

    worker = threading.Thread(target=work, name="pipeline-explore", daemon=True)
    started = time.monotonic()
    worker.start()
    total = len(which["seeds"]) if "seeds" in which else which["count"]
    stream = Stream(size)
    computed_seconds: list[float] = []
    gap = 1 / UPDATES_PER_SECOND
    yield (grid.value(None, "explore"), f"exploring {total}: starting…", bar(0, total), gr.skip(),
           busy(f"Exploring 0 of {total}…"), gr.skip())
    try:
        finished, pending = False, False
        while not finished:
            wait = None if not pending else max(0.0, gap - (time.monotonic() - stream.sent))
            try:
                item = arrived.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _DONE:
                finished = True
            elif item is not None:
                stream.add([item])
                if not item.cached:
                    computed_seconds.append(item.seconds)
                pending = True
            if finished or not pending or not stream.due():
                continue
            pending = False
            shown, left = len(stream.shown), total - len(stream.shown)
            eta = f" · about {_eta(computed_seconds, left)} left" if left and computed_seconds else ""
            status = f"{shown} of {total} candidates{eta} · {time.monotonic() - started:.0f} s"
            label = f"Exploring {shown} of {total}" + (f" · {_eta(computed_seconds, left)}" if eta else "")
            yield stream.value(), status, bar(shown, total), stream.run_dir.name, busy(label + "…"), gr.skip()
    finally:
        stop.set()  # a closed tab (GeneratorExit) ends the run after the current picture
        worker.join()
    if "error" in outcome:
        as_page_error(outcome["error"])
    result = outcome["result"]
    stopped = " (stopped)" if len(result.items) < total else ""
    status = (f"{len(result.items)} of {total} candidates{stopped} · {result.computed} computed, "
              f"{result.stored} from the store · {time.monotonic() - started:.1f} s")
    yield (stream.final(result), status, bar(len(result.items), total), result.run_dir.name,
           gr.update(value=EXPLORE, elem_classes=[]), pictures.result_json(result))


class Stream:
    """The candidates grid while explore streams (also for other explore loops, e.g. a job queue's).

        stream = Stream(size)
        stream.add(items)          # the Items just stored (thumbnails made here)
        if stream.due():           # at most UPDATES_PER_SECOND a second; the last one always goes
            yield stream.value()   # only the new items travel: Gradio diffs a generator's values
        yield stream.final(result)

    The grid's order is the order they arrived in; ``final`` keeps it and adds the run's picks."""

    def __init__(self, size=None, per_second: float = UPDATES_PER_SECOND):
        self.size = tuple(size) if size else None
        self.shown: list[pictures.Shown] = []
        self.run_dir = None
        self.sent = 0.0
        self.gap = 1 / per_second

    def add(self, items) -> None:
        for item in items or ():
            self.run_dir = item.path.parent.parent
            self.shown.append(pictures.Shown("explore", item.seed, item.path,
                                             pictures.thumb_of(self.run_dir, "explore", item), self.size))

    def due(self) -> bool:
        """Whether to send now (and note that it is sent)."""
        now = time.monotonic()
        if self.run_dir is None or now - self.sent < self.gap:
            return False
        self.sent = now
        return True

    def value(self) -> dict:
        return grid.value(self.run_dir, "explore", self.shown)

    def final(self, result) -> dict:
        """The whole run's grid once it is done (picks included), in the order shown."""
        view = pictures.view(result.run_dir)
        paths = [s.path for s in self.shown]
        known = set(paths)
        paths += [i.path for i in result.items if i.path not in known]
        return grid.view_value(view, "explore", paths)


def bar(done: int, total: int) -> str:
    """The progress bar under the status line (built from two numbers only: no user text)."""
    done, total = int(done), max(int(total), 1)
    return f'<progress max="{total}" value="{done}" style="width:100%"></progress>'


def _eta(seconds: list[float], left: int) -> str:
    import statistics

    total = statistics.median(seconds) * left
    return f"{total:.0f} s" if total < 120 else f"{total / 60:.0f} min"
