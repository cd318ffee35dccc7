"""The candidates grid. Candidates stream in as they are stored (the explore job, explore_job.py,
feeds a ``Stream``): the grid's value grows by the new items only, sent at most
``UPDATES_PER_SECOND`` times a second (Gradio sends a generator's later values as diffs), so the
browser's cost per candidate does not grow with the run. Looking
(click, Enter) and picking (the ✓ corner, Space, P) are the grid's own (grid.py, viewer.js)."""
from __future__ import annotations

import time

from . import grid, pictures

UPDATES_PER_SECOND = 3


def build_gallery(app, ui) -> None:
    vary = bool(getattr(ui, "vary_from_grid", False))  # the large view's Vary buttons (vary_panel wires them)
    ui.candidates = grid.build(app, "candidates", "explore", "Candidates", vary=vary)


def wire(app, ui) -> None:
    def clear():  # a new run: nothing of the previous one stays on the page
        return grid.value(None, "refine"), None, grid.value(None, "upscale")

    ui.explore_btn.click(clear, None, [ui.refined, ui.compare, ui.upscaled], api_visibility="private", queue=False,
                         show_progress="hidden")


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
