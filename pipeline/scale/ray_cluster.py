"""Joining Ray: which address ``--ray`` / $PIPELINE_RAY asks for, connecting once, what the cluster has."""
from __future__ import annotations

import os

from ..core.errors import UserError

ENV = "PIPELINE_RAY"
WORKERS_ENV = "PIPELINE_RAY_WORKERS"
LOCAL = "local"  # --ray without an address: start a Ray on this machine


def requested(option: str | None) -> str | None:
    """The Ray address asked for: ``--ray [ADDRESS]`` (``local`` when given bare), else $PIPELINE_RAY
    (``1``/``local``: a local Ray; ``auto`` or an address: join a cluster), else None (no Ray)."""
    value = option if option is not None else os.environ.get(ENV, "").strip() or None
    if value is None or value.lower() in ("0", "no", "off", "false"):
        return None
    return LOCAL if value.lower() in ("1", "yes", "on", "true", LOCAL, "") else value


def connect(address: str) -> None:
    """Join the Ray at ``address`` (``auto``: the one ``ray start`` runs here) or start a local one."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray on this machine and every worker machine: pip install 'pipeline[ray]'") \
            from None
    if ray.is_initialized():
        return
    if address == "auto":
        address = _started_here()
    try:
        ray.init(address=None if address == LOCAL else address, include_dashboard=False, configure_logging=False,
                 log_to_driver=False, namespace="pipeline")
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = "a local Ray" if address == LOCAL else f"the Ray cluster at {address!r}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot reach {where} ({first}); start one with `ray start --head` or leave out --ray") \
            from None


def _started_here() -> str:
    """``auto``: $RAY_ADDRESS, else the cluster `ray start` runs on this machine (the address it wrote down).
    Not Ray's own ``auto``, which also joins any Ray process it finds, such as another program's private one."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return os.environ["RAY_ADDRESS"].strip()
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:  # another Ray: its own "auto"
        return "auto"
    found = find_bootstrap_address(None)
    if not found:
        raise UserError("cannot reach the Ray cluster at 'auto' (no Ray was started with `ray start` on this machine); "
                        "start one with `ray start --head` or leave out --ray")
    return found


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))
