"""Several processes (GPUs or machines) sharing one stage, with Hugging Face Accelerate.

Under ``accelerate launch`` or ``torchrun`` (which set WORLD_SIZE, RANK and LOCAL_RANK)
every process plans the same jobs. Then:

    agree(value)          the main process's value on every process (the run folder's
                          timestamped name, a random base seed)
    share_of(misses, key) the main process decides which jobs miss the store; each process
                          gets its share of those misses (sorted keys, round robin), so
                          stored jobs are never re-split and no job is computed twice
    computed_elsewhere()  after every share is done (a collective, so also a barrier): what
                          the other processes computed, for the main process to record
    is_main_process()     only the main process writes run.json, the contact sheet and the
                          gallery

Each process writes its pictures to the shared store (atomic writes, per-key locks), so a
process that dies leaves its jobs unfinished, never half-written, and rerunning completes them.

Single-process runs pay nothing: every helper first looks at the environment and imports
neither torch nor accelerate unless WORLD_SIZE > 1.
"""
from __future__ import annotations

import functools
import logging
import os
import socket
import sys

log = logging.getLogger("pipeline")

_TRUE = ("1", "true", "yes")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> bool:
    """True when this process is one of several started by accelerate launch / torchrun."""
    return _env_int("WORLD_SIZE", 1) > 1


def rank() -> int:
    return _env_int("RANK", 0) if launched() else 0


def world_size() -> int:
    return _env_int("WORLD_SIZE", 1) if launched() else 1


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0) if launched() else 0


def is_main_process() -> bool:
    return rank() == 0


@functools.lru_cache(maxsize=None)
def state():
    """Accelerate's ``PartialState`` (initialises the process group: NCCL on GPUs, gloo on CPUs);
    None in a single process."""
    if not launched():
        return None
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in _TRUE or not torch.cuda.is_available()
    shared = PartialState(cpu=cpu)
    log.info("process %d of %d on %s (%s backend)", shared.process_index, shared.num_processes, shared.device,
             shared.backend)
    return shared


def default_device() -> str | None:
    """The device of this process: ``cuda:<local rank>`` with GPUs, else ``cpu``; None in a single
    process (the engine then picks the best device)."""
    shared = state()
    if shared is None:
        return None
    device = shared.device
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else local_rank()}"
    return device.type  # accelerate says cpu:0 for every CPU process


def agree(value):
    """The main process's ``value``, on every process (every process must call this)."""
    if state() is None:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def share_of(misses: list, key) -> list:
    """This process's share of the jobs that miss the store, in their original order.

    The main process's list of misses is the one split (a job another process already found
    stored is simply not computed twice); keys are sorted and dealt round robin, so the split is
    the same on every process and no two processes compute one job.
    """
    if state() is None:
        return list(misses)
    mine, _ = _deal([key(item) for item in misses])
    return [item for item in misses if key(item) in mine]


def others_share(miss_keys) -> set:
    """The keys, of the main process's misses, that the other processes compute (empty in a single
    process); every process must call this."""
    if state() is None:
        return set()
    return _deal(miss_keys)[1]


def _deal(miss_keys) -> tuple[set, set]:
    """(mine, the others') of the main process's misses: sorted keys dealt round robin."""
    keys = agree(sorted(set(miss_keys)))
    mine = set(keys[rank()::world_size()])
    log.info("process %d of %d: %d of %d jobs to compute", rank(), world_size(), len(mine), len(keys))
    return mine, set(keys) - mine


def computed_elsewhere(computed: list) -> list:
    """Exchange what each process computed; returns the other processes' entries (every process
    must call this; it returns once every share is done, so it is also the barrier before the
    main process records the run)."""
    if state() is None:
        return []
    from accelerate.utils import gather_object

    log.info("process %d of %d computed %d: %s", rank(), world_size(), len(computed),
             " ".join(str(entry[-1]) for entry in computed) or "-")
    everything = gather_object([(rank(), list(computed))])
    return [entry for who, entries in everything for entry in entries if who != rank()]


def wait_for_everyone() -> None:
    shared = state()
    if shared is not None:
        shared.wait_for_everyone()


def record_fields() -> dict:
    """Provenance for a store record: which process computed it (empty in a single process)."""
    if not launched():
        return {}
    return {"process": {"rank": rank(), "world_size": world_size(), "host": socket.gethostname(),
                        "pid": os.getpid()}}


def quiet_other_processes() -> None:
    """Only the main process prints results; the others keep stderr for errors and warnings."""
    if launched() and not is_main_process():
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        logging.getLogger("pipeline.status").setLevel(logging.WARNING)  # one "loading …" line, the main one's
