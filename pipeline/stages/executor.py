"""The one executor: every stage's jobs go through here.

A stage is its plan, its render call and its record; the executor owns the rest, once:

    for each work (a job and what the stage needs to make it):
        store hit  -> placed in the run folder (stage.place), recorded (stage.record, main process)
        miss       -> this process's share of the misses (``share.split``: torchrun deals them out,
                      one process keeps them all); the model loads only now (stage.load)
    the stage checks what it needs before the first picture (stage.prepare); a model whose identity
    became known on load re-keys the misses (stage.rekey)
    batches of equal ``job.batch_group()`` of at most ``stage.batch_size`` (one batch rule), each under
    the store locks of its keys: a key another process stored meanwhile is taken from the store; the rest
    are rendered (stage.render), stored (stage.store) and placed; progress, ``on_picture`` and Stop
    (``stop``, a threading.Event, checked between batches; a render call may also stop between its model
    calls and return fewer outputs: the unfinished pictures are not stored) after each batch
    the other processes' pictures (``share.gather``) placed and recorded by the main process

Contract of a stage (``StageWork`` below): ``place``, ``render`` and ``store`` are per picture or batch and
write only the store and the run folder; ``record`` merges into run.json by picture id (main process only,
the executor calls it); nothing here writes HTML or a contact sheet (the API refreshes a run's views).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.errors import UserError
from ..core.runs import place as place_file
from .common import Item, batches, progress_bar


@dataclass
class Work:
    """One picture to make: the run's name for it (a seed, ``42v3``, a file name), its job, the stage's part."""

    id: object
    job: object
    part: object = None


class StageWork:
    """What a stage gives the executor. Override ``render`` and ``store``; the rest have plain defaults."""

    name = "stage"
    unit = "img"

    def __init__(self, session):
        self.session = session

    def dest(self, work: Work):
        """Where the picture goes in the run folder (or beside the user's files)."""
        raise NotImplementedError

    def place(self, work: Work, artifact, cached: bool, seconds: float | None = None, put: bool = True) -> Item:
        dest = self.dest(work)
        if put:
            place_file(artifact.path, dest)
        seconds = artifact.record.get("seconds", 0.0) if seconds is None else round(seconds, 4)
        return Item(work.id, dest, artifact.key, cached, seconds, name=self.item_name(work))

    def item_name(self, work: Work) -> str:
        return ""

    def check(self, misses: list[Work]) -> None:
        """Before anything loads: what the misses need is here (a LoRA's file), else one sentence."""
        self.session.require_lora_files([work.job for work in misses])

    def load(self, misses: list[Work], progress):
        """The engine the misses render with (loaded now: the first miss)."""
        return self.session.engine()

    def prepare(self, engine, misses: list[Work]) -> None:
        """Checks before the first picture (a LoRA for another model, a missing file)."""
        if any(getattr(work.job, "loras", None) for work in misses):
            engine.check_loras([work.job for work in misses])

    def rekey(self, engine, misses: list[Work]) -> list[Work]:
        """The misses under the model's identity as known after loading (a hub model's revision)."""
        fingerprint = getattr(engine, "fingerprint", None)
        if fingerprint is None or getattr(misses[0].job, "model", fingerprint) == fingerprint:
            return misses
        import dataclasses

        return [Work(work.id, dataclasses.replace(work.job, model=fingerprint), work.part) for work in misses]

    def batch_size(self, engine, misses: list[Work]) -> int:
        return 1

    def progress(self, misses: list[Work], show: bool):
        """An object with ``update(n)`` and ``close()``, or None."""
        return progress_bar(len(misses), self.session.progress and show, self.name, self.unit)

    def render(self, engine, works: list[Work], progress) -> list:
        """One model call for a batch of compatible works; one output per work."""
        raise NotImplementedError

    def store(self, engine, work: Work, output, seconds: float, provenance: dict):
        """Put one output in the store; returns the Artifact."""
        raise NotImplementedError

    def record(self, done: list[tuple[Work, Item]]) -> None:
        """Merge these pictures into the run (main process only)."""

    def missing_elsewhere(self, work: Work) -> str:
        return f"{self.dest(work).name} was made by another process but is not in the store " \
               f"{self.session.store.root}; give every process the same shared store (PIPELINE_STORE)"


class Executor:
    """Runs a stage's works over the store with one share strategy (``scale.shares``)."""

    def __init__(self, session, share=None):
        if share is None:
            share = getattr(session, "share", None)
        if share is None:
            from ..scale.shares import default_share

            share = default_share()
        self.session, self.store, self.share = session, session.store, share
        self.pool = getattr(session, "pool", None)  # None: this process renders its misses; else a Ray pool does

    @property
    def main(self) -> bool:
        return self.share.main

    def dry_run(self, works: list[Work]) -> int:
        """How many of the works are stored."""
        return sum(self.store.has(work.job.key) for work in works)

    def run(self, stage: StageWork, works: list[Work], *, stop=None, on_picture=None) -> list[Item]:
        """The stage's pictures, in the works' order (fewer when stopped)."""
        items: dict = {}
        misses = []
        for work in works:
            artifact = self.store.get(work.job.key)
            if artifact is None:
                misses.append(work)
            else:
                items[work.id] = stage.place(work, artifact, cached=True, put=True)
        hits = [(work, items[work.id]) for work in works if work.id in items]
        if self.main:
            stage.record(hits)
        for _, item in hits if on_picture else ():
            on_picture(item)
        mine_keys = self.share.split([work.job.key for work in misses])  # every process calls it
        mine = [work for work in misses if work.job.key in mine_keys]
        stopped = self._compute(stage, mine, items, stop, on_picture) if mine else False
        if not stopped and not (stop is not None and stop.is_set()):
            self._collect(stage, works, items)
        self.share.wait()  # the others go on once run.json is complete
        return [items[work.id] for work in works if work.id in items]

    def _compute(self, stage: StageWork, mine: list[Work], items: dict, stop, on_picture) -> bool:
        if self.pool is not None:  # a pool renders them elsewhere (stages/ray_render.PoolRender)
            stopped = self.pool.compute(stage, mine, items, stop, on_picture)
            if stopped is not None:  # None: the pool leaves this stage to this process
                return stopped
        stage.check(mine)
        bar = stage.progress(mine, self.main)
        stopped = False
        try:
            engine = stage.load(mine, bar)
            stage.prepare(engine, mine)
            mine = stage.rekey(engine, mine)
            size = max(1, int(stage.batch_size(engine, mine)))
            for batch in batches(mine, size, group=lambda work: work.job.batch_group()):
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                self._batch(stage, engine, batch, items, bar)
                done = [work for work in batch if work.id in items]  # fewer when Stop came mid-call
                if self.main:
                    stage.record([(work, items[work.id]) for work in done])
                if bar is not None and not getattr(bar, "counts_itself", False):
                    bar.update(len(done))
                for work in done if on_picture else ():
                    on_picture(items[work.id])
        finally:
            if bar is not None:
                bar.close()
        return stopped

    def _batch(self, stage: StageWork, engine, batch: list[Work], items: dict, bar) -> None:
        with self.store.lock_all(work.job.key for work in batch):
            todo = []
            for work in batch:  # another process may have finished it meanwhile
                artifact = self.store.get(work.job.key)
                if artifact is not None:
                    items[work.id] = stage.place(work, artifact, cached=True)
                else:
                    todo.append(work)
            if not todo:
                return
            if hasattr(engine, "reset_peak_memory"):
                engine.reset_peak_memory()
            started = time.perf_counter()
            outputs = stage.render(engine, todo, bar)
            seconds = (time.perf_counter() - started) / len(todo)
            for work, output in zip(todo, outputs):
                artifact = stage.store(engine, work, output, seconds, self.share.record_fields())
                items[work.id] = stage.place(work, artifact, cached=False, seconds=seconds)

    def _collect(self, stage: StageWork, works: list[Work], items: dict) -> None:
        """Several processes: wait for the other shares; the main process places and records their pictures."""
        computed = [(work.id, items[work.id].key) for work in works if work.id in items and not items[work.id].cached]
        elsewhere = dict(self.share.gather(computed))
        collected = []
        for work in works:
            if work.id in items and work.id not in elsewhere:
                continue
            artifact = self.store.get(elsewhere.get(work.id, work.job.key))
            if artifact is None:
                raise UserError(stage.missing_elsewhere(work))
            items[work.id] = stage.place(work, artifact, cached=work.id not in elsewhere, put=self.main)
            collected.append((work, items[work.id]))
        if self.main and collected:
            stage.record(collected)
