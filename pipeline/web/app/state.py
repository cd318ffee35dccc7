"""What every browser tab shares: the one Pipeline (one model load per server), the lock that keeps
one job at a time on the device, and each tab's Stop flag. Imports no gradio and no torch."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

from ...errors import UserError


class AppState:
    def __init__(self, pipeline, out: Path):
        self.pipeline = pipeline
        self.out = Path(out)
        self._device = threading.Lock()  # one job on the GPU, whatever the queue lets through
        self._stops: dict[str, threading.Event] = {}
        self._stops_lock = threading.Lock()

    @contextmanager
    def device(self):
        with self._device:
            yield self.pipeline

    def new_stop(self, tab: str) -> threading.Event:
        """A fresh Stop flag for the run a tab is starting."""
        event = threading.Event()
        with self._stops_lock:
            self._stops[tab] = event
        return event

    def stop(self, tab: str) -> bool:
        with self._stops_lock:
            event = self._stops.get(tab)
        if event is None:
            return False
        event.set()
        return True

    def run_dir(self, run: str | None) -> Path:
        """A run of this server's output folder, by name; never a path outside it."""
        from ...runs import RUN_FILE, check_run_name

        if not run:
            raise UserError("no run is open: explore first, or open one under Runs")
        name = check_run_name(Path(str(run)).name if Path(str(run)).parent == self.out else str(run))
        path = self.out / name
        if not (path / RUN_FILE).is_file():
            raise UserError(f"there is no run {name!r} in {self.out}")
        return path
