"""How a stage's misses are shared between workers: strategies of the executor (``stages/executor.py``).

A share answers five questions for the executor, and the executor is the only caller:

    main             does this process record the run (run.json, views)?
    agree(value)     the main process's value everywhere (a run folder's name, a random base seed)
    split(keys)      of the misses (store keys), the ones this process computes
    gather(computed) after this process's share, the (id, key) pairs the others computed (a barrier)
    wait()           until every process is here
    record_fields()  provenance for a store record (which process computed it)

``Alone`` is one process. ``Torchrun`` is several processes started by torchrun / accelerate launch, each
computing its share of the main process's misses (sorted keys dealt round robin: ``distributed``). A Ray pool is
not a share: with ``--ray`` the driver is ``Alone`` (it computes every miss) and the executor sends them to the
session's pool (``stages.ray_render.PoolRender``), which renders batches on its GPU actors.
"""
from __future__ import annotations

from . import distributed


class Alone:
    """One process: computes every miss, records the run."""

    main = True

    def agree(self, value):
        return value

    def split(self, keys) -> set:
        return set(keys)

    def gather(self, computed: list) -> list:
        return []

    def wait(self) -> None:
        pass

    def record_fields(self) -> dict:
        return {}


class Torchrun:
    """One of several processes under torchrun / accelerate launch (WORLD_SIZE > 1)."""

    @property
    def main(self) -> bool:
        return distributed.is_main_process()

    def agree(self, value):
        return distributed.agree(value)

    def split(self, keys) -> set:
        return set(distributed.share_of(list(keys), key=lambda key: key))  # a collective: every process calls it

    def gather(self, computed: list) -> list:
        return distributed.computed_elsewhere(computed)

    def wait(self) -> None:
        distributed.wait_for_everyone()

    def record_fields(self) -> dict:
        return distributed.record_fields()


def default_share():
    """The share this process was started for: ``Torchrun`` when launched as one of several, else ``Alone``."""
    return Torchrun() if distributed.launched() else Alone()
