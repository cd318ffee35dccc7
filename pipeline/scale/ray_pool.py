"""A pool of render workers on Ray: one actor per GPU (or a few CPU workers), shared by every caller.

The driver (the CLI process or the app) plans the jobs, skips what its store has and hands the misses
to ``Pool.submit`` as small shards. Workers pull shards as they become idle (a fast GPU does more, a
slow one less), render them with the engine they loaded once, and send back each picture's PNG bytes
and record through Ray's object store; the driver stores and records each result as it returns, so the
store, the run folder and run.json keep one writer and workers need no shared disk.

    pool = pool_for(address)                       # joins (or starts) Ray once per process
    for result in pool.submit(jobs, engine=recipe, render=render, shard_size=4, stop=stop):
        store.put(result.job.key, result.png, result.record)

``engine`` is a picklable callable that builds the engine on the worker (its ``key`` names the settings:
a worker loads an engine once per key); ``render(engine, jobs, batch)`` returns ``(png, record)`` per
job. Both come from the stages layer: this module imports nothing of ours above ``core``, and Ray only
when the pool is asked for (``--ray`` / ``PIPELINE_RAY``).

Faults: a worker that dies (kill -9, its node lost) has its shard re-queued, preferably to another
worker; a worker whose engine does not load (a node without the weights) says so in one sentence naming
the node and is left out for those settings while the others go on; a shard that runs out of memory is
retried by the same worker with half the batch, down to 1, and says so.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from ..core.errors import UserError
from .ray_cluster import LOCAL, WORKERS_ENV, cluster_gpus, connect, requested  # noqa: F401 - the pool's API
from .ray_submission import Result, Shard, Submission  # noqa: F401 - Result: what a submission yields
from .ray_worker import Worker, sentence as _sentence

log = logging.getLogger("pipeline")

MAX_ATTEMPTS = 3  # a shard whose worker died this often is given up (something kills every worker it meets)
RESTARTS = 2  # Ray restarts a dead worker (a new process, the engine loaded again) this often
PROBE_EVERY = 0.2  # seconds between looks at the workers while none has answered
START_TIMEOUT = 600  # seconds the workers may take to be placed (a busy cluster) and to start


# ---------------------------------------------------------------- the driver

@dataclass
class _Slot:
    """One worker actor as the driver sees it."""

    actor: object
    index: int
    where: dict = field(default_factory=dict)
    refused: set = field(default_factory=set)  # engine keys this worker cannot load
    deaths: int = 0
    busy: bool = False  # rendering a shard, or being restarted by Ray (then probed until it answers)
    dead: bool = False  # Ray gave up restarting it
    probe_at: float | None = None  # when to ask a restarting worker again whether it is back
    loaded: object = None  # the engine key of the model it holds (or is loading)


class Pool:
    """Worker actors and one dispatcher thread that hands shards of every submission to idle workers,
    taking turns between submissions (two explores from two tabs both progress)."""

    def __init__(self, address: str, workers: int | None = None):
        connect(address)
        self.address = address
        self.gpus = cluster_gpus()
        self.size = workers or int(os.environ.get(WORKERS_ENV, 0) or 0) or max(1, self.gpus)
        self.slots: list[_Slot] = []
        self.submissions: list[Submission] = []
        self.inflight: dict = {}  # ObjectRef -> (slot, shard)
        self.lock = threading.RLock()  # tests hold it to queue two submissions at once
        self.wake = threading.Event()
        self.listeners: list = []  # callables (event, info): "handed" (slot.where, jobs), tests and the app
        self.thread: threading.Thread | None = None

    # ---------------------------------------------------------------- workers

    def _start_workers(self) -> None:
        import ray

        if self.slots:
            return
        from ray.exceptions import GetTimeoutError

        cpus = int(ray.cluster_resources().get("CPU", 1))
        if self.gpus:
            self.size = min(self.size, self.gpus)  # more would wait for a GPU for ever
            options = {"num_gpus": 1, "num_cpus": 1}
            threads = None
        else:  # CPU-only Ray: declare each worker with its share of the CPUs
            self.size = min(self.size, max(1, cpus))
            options = {"num_cpus": max(1, cpus // self.size)}
            threads = options["num_cpus"]
        actor = ray.remote(Worker).options(max_restarts=RESTARTS, max_task_retries=0, max_concurrency=2, **options)
        self.slots = [_Slot(actor.remote(threads), index) for index in range(self.size)]
        try:
            places = ray.get([slot.actor.where.remote() for slot in self.slots], timeout=START_TIMEOUT)
        except GetTimeoutError:
            self.slots = []
            raise UserError(f"Ray did not start {self.size} workers within {START_TIMEOUT} s (each needs "
                            f"{'a GPU' if self.gpus else f'{threads} CPUs'} free); set PIPELINE_RAY_WORKERS lower") \
                from None
        for slot, where in zip(self.slots, places):
            slot.where = where
        log.info("ray: %d workers: %s", len(self.slots), ", ".join(describe(s.where) for s in self.slots))

    def workers(self) -> list[dict]:
        """Where each worker runs (host, node, pid, GPUs) and whether it is rendering now."""
        with self.lock:
            self._start_workers()
            return [{**slot.where, "busy": slot.busy} for slot in self.slots]

    def counts(self) -> list[int]:
        """Jobs each live worker has rendered (a restarted worker starts again at 0; one Ray is still
        restarting is waited for)."""
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError

        counts = []
        for slot in self.slots:
            deadline = time.monotonic() + 120
            while True:
                try:
                    counts.append(ray.get(slot.actor.count.remote()))
                    break
                except ActorDiedError:
                    break
                except ActorUnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(PROBE_EVERY)
        return counts

    # ---------------------------------------------------------------- submissions

    def submit(self, jobs: list, *, engine, render, batch="auto", shard_size: int = 1, stop=None) -> Submission:
        """Hand ``jobs`` out in shards of ``shard_size``; returns the Submission to iterate over."""
        shards = [jobs[start:start + shard_size] for start in range(0, len(jobs), max(1, shard_size))]
        submission = Submission(self, engine.key, engine, render, batch, shards, stop)
        with self.lock:
            self._start_workers()
            if submission.done:
                submission.events.put(("end", None))
                return submission
            self.submissions.append(submission)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._dispatch, name="ray-pool", daemon=True)
                self.thread.start()
        self.wake.set()
        return submission

    def _cancel(self, submission: Submission) -> None:
        with self.lock:
            submission.cancelled = True
            submission.pending.clear()
            self._finish_if_done(submission)

    def _finish_if_done(self, submission: Submission) -> None:
        if submission.done and submission in self.submissions:
            self.submissions.remove(submission)
            submission.events.put(("end", None))

    # ---------------------------------------------------------------- the dispatcher thread

    def _dispatch(self) -> None:
        try:
            self._dispatch_loop()
        except Exception as err:  # noqa: BLE001 - never leave a caller waiting for results that will not come
            log.exception("the Ray pool's dispatcher failed")
            with self.lock:
                for submission in list(self.submissions):
                    self._fail(submission, f"the Ray pool failed ({_sentence(err)}); nothing finished is lost: run "
                                           "the same command again")
                    submission.running = 0
                    self._finish_if_done(submission)
                self.inflight.clear()
                for slot in self.slots:
                    slot.busy = False
                self.thread = None

    def _dispatch_loop(self) -> None:
        import ray

        while True:
            with self.lock:
                for submission in list(self.submissions):
                    if submission.stop is not None and submission.stop.is_set() and not submission.cancelled:
                        submission.cancelled = True
                        submission.pending.clear()
                        self._finish_if_done(submission)
                self._probe_restarted()
                self._hand_out()
                refs = list(self.inflight)
                if not refs and not self.submissions:
                    self.thread = None
                    return
            if not refs:
                self.wake.wait(PROBE_EVERY)
                self.wake.clear()
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=PROBE_EVERY)
            for ref in ready:
                self._returned(ref)

    def _hand_out(self) -> None:
        """Give each idle worker the next shard, taking turns between submissions: the submission served
        last goes to the back of the line. A worker takes work for the model it holds first (an explore and
        an upscale at once: each worker keeps its model rather than swapping it for every shard)."""
        for slot in self.slots:
            if slot.busy or slot.dead:
                continue
            line = sorted(self.submissions, key=lambda s: s.key != slot.loaded)  # stable: the turns stay
            for submission in line:
                shard = self._next_shard(submission, slot) if not submission.cancelled else None
                if shard is not None:
                    self._send(slot, shard)
                    self.submissions.remove(submission)
                    self.submissions.append(submission)
                    break

    def _next_shard(self, submission: Submission, slot: _Slot):
        if not submission.pending or submission.key in slot.refused:
            return None
        for shard in submission.pending:  # a shard a worker died on waits for another worker, while one lives
            others = [s for s in self.slots if s.index not in shard.tried and not s.dead and
                      submission.key not in s.refused]
            if slot.index not in shard.tried or not others:
                submission.pending.remove(shard)
                return shard
        return None

    def _send(self, slot: _Slot, shard: Shard) -> None:
        submission = shard.submission
        ref = slot.actor.run.remote(submission.key, submission.factory, submission.render, shard.jobs,
                                    submission.batch)
        slot.busy, slot.loaded = True, submission.key
        submission.running += 1
        self.inflight[ref] = (slot, shard)
        for listener in self.listeners:
            listener("handed", {"worker": dict(slot.where), "jobs": list(shard.jobs)})

    def _probe_restarted(self) -> None:
        """Ask each worker Ray is restarting whether it is back (calls to it fail until then)."""
        now = time.monotonic()
        for slot in self.slots:
            if slot.probe_at is not None and slot.probe_at <= now and not slot.dead:
                slot.probe_at = None
                self.inflight[slot.actor.where.remote()] = (slot, None)

    def _returned(self, ref) -> None:
        import ray
        from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

        try:
            answer, died = ray.get(ref), None
        except (RayActorError, ray.exceptions.ObjectLostError) as err:
            answer, died = None, err
        except RayTaskError as err:  # not the render (the worker catches its errors): e.g. a value it cannot unpickle
            answer, died = {"where": {}, "error": _sentence(err)}, None
        with self.lock:
            slot, shard = self.inflight.pop(ref)
            slot.loaded = None if died is not None else slot.loaded  # a restarted worker holds no model
            if isinstance(died, ActorDiedError):
                slot.dead = True  # Ray will not restart it again
            if shard is None:  # the answer to a probe: back, or still restarting
                if died is None:
                    slot.where, slot.busy = answer, False
                elif not slot.dead:
                    slot.probe_at = time.monotonic() + PROBE_EVERY
                return
            submission = shard.submission
            submission.running -= 1
            if died is not None:
                slot.probe_at = time.monotonic() + PROBE_EVERY  # busy until the restarted worker answers
                self._died(slot, shard, died)
                self._finish_if_done(submission)
                return
            slot.busy = False
            slot.where = answer.get("where") or slot.where  # a restarted worker is a new process
            if "load_error" in answer:
                self._refused(slot, shard, answer["load_error"])
            else:
                for note in answer.get("notes", ()):
                    submission.events.put(("note", note))
                if "error" in answer:
                    submission.failed = answer["error"]
                    submission.pending.clear()
                    submission.events.put(("error", answer["error"]))
                else:
                    for job, (png, record) in zip(shard.jobs, answer["results"]):
                        submission.events.put(("result", Result(job, png, record)))
            self._finish_if_done(submission)

    def _died(self, slot: _Slot, shard: Shard, err) -> None:
        submission = shard.submission
        slot.deaths += 1
        shard.tried.add(slot.index)
        submission.events.put(("note", f"worker on {describe(slot.where)} died ({type(err).__name__}); its "
                                       f"{len(shard.jobs)} jobs go to another worker"))
        if len(shard.tried) >= MAX_ATTEMPTS:
            self._fail(submission, f"{len(shard.jobs)} jobs were lost with {len(shard.tried)} workers in turn; "
                                   "nothing finished is lost: run the same command again")
        elif not submission.cancelled and submission.failed is None:
            submission.pending.appendleft(shard)
        self._check_workers_left(submission)

    def _refused(self, slot: _Slot, shard: Shard, sentence: str) -> None:
        submission = shard.submission
        slot.refused.add(submission.key)
        submission.load_errors[slot.index] = sentence
        submission.events.put(("note", sentence + "; the other workers go on"))
        if not submission.cancelled and submission.failed is None:
            submission.pending.appendleft(shard)
        self._check_workers_left(submission)

    def _check_workers_left(self, submission: Submission) -> None:
        if submission.failed is None and all(submission.key in s.refused or s.dead for s in self.slots):
            reasons = "; ".join(dict.fromkeys(submission.load_errors.values())) or "every worker died"
            self._fail(submission, f"no Ray worker can render these pictures: {reasons}")

    def _fail(self, submission: Submission, sentence: str) -> None:
        submission.failed = sentence
        submission.pending.clear()
        submission.events.put(("error", sentence))

    def describe(self) -> str:
        """``2 workers: GPU 0 on host-a, GPU 1 on host-b`` (the app's status line)."""
        return f"{len(self.slots)} Ray workers: " + ", ".join(describe(s.where) for s in self.slots)


def describe(where: dict) -> str:
    gpus = where.get("gpus") or []
    what = f"GPU {','.join(gpus)}" if gpus else "CPU"
    return f"{what} on {where.get('host', '?')} (pid {where.get('pid', '?')})"


_pools: dict[str, Pool] = {}
_pools_lock = threading.Lock()


def pool_for(address: str) -> Pool:
    """This process's pool for ``address`` (one per process: the CLI's stages and the app's tabs share it)."""
    with _pools_lock:
        if address not in _pools:
            _pools[address] = Pool(address)
        return _pools[address]


def forget_pools() -> None:
    """Drop this process's pools (their actors end with the Ray connection); tests that restart Ray use it."""
    with _pools_lock:
        _pools.clear()
