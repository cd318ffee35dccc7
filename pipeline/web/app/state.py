"""What every browser tab shares: the one Pipeline (one model load per server), the line of jobs
waiting for the device (first come, first served; each job knows its place), each job's Stop flag,
and a journal of the explores under way (OUT/.ui-jobs/), so that a restarted server can say which
run stopped and continue it. Imports no gradio and no torch."""
from __future__ import annotations

import itertools
import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...core.errors import UserError

JOURNAL = ".ui-jobs"


@dataclass(eq=False)
class Ticket:
    """One job of one tab: its place in the line and its Stop flag."""
    number: int
    tab: str
    what: str  # "explore", "refine", … (for the line's wording)
    stop: threading.Event = field(default_factory=threading.Event)
    run: str | None = None  # the run it writes, once known (the Runs tab marks it)
    wake: object = None  # set by flow.run while the job runs: tells its tab "stopping" at once


class AppState:
    def __init__(self, pipeline, out: Path, slots: int = 1):
        """``slots``: jobs that run at once (1: one GPU here; with ``--ray``, one per worker of the pool)."""
        self.pipeline = pipeline
        self.out = Path(out)
        self.slots = max(1, int(slots))
        self._device = threading.BoundedSemaphore(self.slots)  # whatever the queue lets through
        self._line: list[Ticket] = []  # the running job first, then the waiting ones in order
        self._changed = threading.Condition()
        self._numbers = itertools.count(1)
        self.last_base_seed: dict[str, int] = {}  # per tab: the base seed of its last Count explore (♻️)

    def model_loaded(self) -> bool:
        """Whether the diffusion model is in memory (the first explore after start builds it first)."""
        session = getattr(self.pipeline, "session", None)
        loaded = getattr(session, "engine_loaded", None)
        return bool(loaded() if callable(loaded) else loaded) if loaded is not None else True

    @contextmanager
    def device(self):
        with self._device:
            yield self.pipeline

    # ------------------------------------------------------------ the line of jobs

    def join(self, tab: str, what: str) -> Ticket:
        """A new job at the end of the line."""
        with self._changed:
            ticket = Ticket(next(self._numbers), tab, what)
            self._line.append(ticket)
            self._changed.notify_all()
            return ticket

    def ahead(self, ticket: Ticket) -> int:
        """How many jobs wait before this one (0: its turn)."""
        with self._changed:
            return max(0, self._line.index(ticket) - self.slots + 1) if ticket in self._line else 0

    def wait_turn(self, ticket: Ticket, timeout: float) -> bool:
        """True once the ticket is among the first ``slots`` in line; False after ``timeout`` (to report the place)."""
        with self._changed:
            self._changed.wait_for(lambda: ticket in self._line[:self.slots] or ticket.stop.is_set(), timeout=timeout)
            return ticket in self._line[:self.slots] and not ticket.stop.is_set()

    def leave(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket in self._line:
                self._line.remove(ticket)
            self._changed.notify_all()

    def busy(self, tab: str) -> bool:
        with self._changed:
            return any(t.tab == tab for t in self._line)

    def running_runs(self) -> set[str]:
        """The runs a job of this server is writing now."""
        with self._changed:
            return {t.run for t in self._line[:self.slots] if t.run}

    def stop(self, tab: str) -> bool:
        """Stop every job of this tab: the running one after its current picture (or tile), the
        waiting ones at once."""
        with self._changed:
            tickets = [t for t in self._line if t.tab == tab]
            for ticket in tickets:
                ticket.stop.set()
                if ticket.wake is not None:
                    ticket.wake()
            self._changed.notify_all()
        return bool(tickets)

    # ------------------------------------------------------------ runs

    def run_dir(self, run: str | None) -> Path:
        """A run of this server's output folder, by name; never a path outside it."""
        from ...core.runs import RUN_FILE, check_run_name

        if not run:
            raise UserError("no run is open: explore first, or open one under Runs")
        name = check_run_name(Path(str(run)).name if Path(str(run)).parent == self.out else str(run))
        path = self.out / name
        if not (path / RUN_FILE).is_file():
            raise UserError(f"there is no run {name!r} in {self.out}")
        return path

    # ------------------------------------------------------------ the journal (restart recovery)

    def journal_start(self, ticket: Ticket, request: dict) -> None:
        """Note an explore under way (what it was asked: enough to ask it again)."""
        self._journal_write(ticket, {"pid": os.getpid(), "run": ticket.run, "request": request})

    def journal_run(self, ticket: Ticket, run: str) -> None:
        ticket.run = run
        path = self._journal_path(ticket)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        entry["run"] = run
        self._journal_write(ticket, entry)

    def journal_end(self, ticket: Ticket) -> None:
        try:
            self._journal_path(ticket).unlink()
        except OSError:
            pass

    def interrupted(self) -> list[dict]:
        """Explores of an earlier server that ended without finishing (killed, crashed): the run,
        the pictures it holds, the number asked for, and the request; newest first."""
        from ...core.runs import RUN_FILE

        found = []
        try:
            entries = sorted((self.out / JOURNAL).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return []
        for path in entries:
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if entry.get("pid") == os.getpid() or not isinstance(entry.get("request"), dict):
                continue  # this server's own job, under way
            run = entry.get("run")
            if not run or not (self.out / str(run) / RUN_FILE).is_file():
                self._forget(path)  # stopped before its first picture: nothing to continue
                continue
            seeds = entry["request"].get("seeds") or []
            asked = len(seeds)
            # the pictures in the run's folder (run.json records them in batches: it may lag behind)
            done = sum((self.out / str(run) / "explore" / f"seed-{seed}.png").is_file() for seed in seeds)
            if done >= asked:
                self._forget(path)
                continue
            found.append({"id": path.stem, "run": str(run), "done": done, "asked": asked,
                          "request": entry["request"]})
        return found

    def forget_interrupted(self, ident: str) -> None:
        if ident and ident.replace("-", "").isalnum():
            self._forget(self.out / JOURNAL / f"{ident}.json")

    def _forget(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    def _journal_path(self, ticket: Ticket) -> Path:
        return self.out / JOURNAL / f"{os.getpid()}-{ticket.number}.json"

    def _journal_write(self, ticket: Ticket, entry: dict) -> None:
        path = self._journal_path(ticket)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entry), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only output folder fails the explore itself, with its own sentence
