"""How long an upscale takes, said before it starts, and a progress bar over tiles while it runs.

The estimate comes from this machine: the loaded model runs small probes (64² and 128², after a
warm-up) and the seconds are a cost per window plus a cost per input pixel the model will compute
(tiles and their overlaps).  It is printed when an upscale will take longer than
``PIPELINE_UPSCALE_WARN_SECONDS`` (default 60), with the faster options.

The probes run once per machine, upscaler and precision: what they measured is remembered in the
store (``upscale-costs.json``), and each real upscale corrects the cost per pixel from its own time.
On a 2-core Xeon the probes cost 1.2 s, half of a 256² x4plus upscale.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("pipeline")

WARN_SECONDS = 60.0
OnProgress = Callable[[int, int], None]


def warn_threshold() -> float:
    """Seconds above which an upscale says beforehand how long it will take."""
    value = os.environ.get("PIPELINE_UPSCALE_WARN_SECONDS", "")
    try:
        return float(value) if value.strip() else WARN_SECONDS
    except ValueError:
        return WARN_SECONDS


COSTS_FILE = "upscale-costs.json"  # in the store's folder: {machine and upscaler: [s per window, s per pixel]}


def _cost_key(engine) -> str:
    """This machine (host, CPU, cores, torch) and this upscaler (weights, device, precision)."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    ident = [platform.node(), cpu, os.cpu_count(), torch.__version__, str(engine.device), engine.precision,
             engine.digest, engine.batch]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:24]


def _read_costs(store_root: Path) -> dict:
    try:
        data = json.loads((Path(store_root) / COSTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: the probes measure again
    return data if isinstance(data, dict) else {}


def recall_cost(store_root: Path, engine) -> bool:
    """Give ``engine`` the cost model remembered for this machine and upscaler; False when there is none."""
    cost = _read_costs(store_root).get(_cost_key(engine))
    if not (isinstance(cost, list) and len(cost) == 2 and all(isinstance(v, (int, float)) for v in cost)):
        return False
    engine.use_cost_model(cost)
    return True


def remember_cost(store_root: Path, engine) -> None:
    """Keep ``engine``'s cost model for the next process (best effort: a read-only store just forgets)."""
    from ..core.store import atomic_write

    if engine.known_cost is None:
        return
    costs = _read_costs(store_root)
    costs[_cost_key(engine)] = list(engine.known_cost)
    try:
        atomic_write(Path(store_root) / COSTS_FILE, json.dumps(costs, indent=1).encode())
    except OSError as err:
        log.debug("cannot remember the upscale cost in %s: %s", store_root, err)


def image_size(path) -> tuple[int, int]:
    """Width and height from the file's header (no decoding), after EXIF rotation."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001 - a broken EXIF block is read as no rotation
            orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def faster_options(engine) -> list[str]:
    """What would be faster than ``engine`` here, in the CLI's words."""
    options = []
    if engine.name != "realesr-animevideov3":
        options.append("--upscaler realesr-animevideov3 (the compact model: ~1/30 of the arithmetic; "
                       "made for illustrations, softer on photographs)")
    if engine.device.type == "cpu":
        options.append("a CUDA GPU (--device cuda), tens of times faster")
    return options


def busy_note() -> str | None:
    """A sentence when the machine is busy (1-minute load above its cores): the estimate may be short."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return None
    cores = os.cpu_count() or 1
    if load <= cores:
        return None
    return (f"the machine is busy (load {load:.1f} on {cores} core{'s' if cores != 1 else ''}), "
            "so it may take longer")


def describe_estimate(seconds: float, count: int, engine, *, will: bool = True) -> str:
    pictures = f"{count} picture{'s' if count != 1 else ''}"
    verb = "this will take" if will else "this would take"
    text = (f"upscale: {verb} about {format_duration(seconds)} for {pictures} "
            f"({engine.name}, {engine.precision} on {engine.device.type}, measured on this machine)")
    busy = busy_note()
    return f"{text}; {busy}" if busy else text


def warn_if_long(seconds: float, count: int, engine) -> None:
    if seconds <= warn_threshold():
        return
    lines = [describe_estimate(seconds, count, engine)]
    options = faster_options(engine)
    if options:
        lines.append("  faster: " + "\n          ".join(options))
    log.warning("\n".join(lines))


class TileProgress:
    """Counts the tiles of every picture in one upscale: a tqdm bar with an ETA (when ``bar``)
    and the caller's ``on_progress(done_tiles, total_tiles)``."""

    counts_itself = True  # the executor does not count its pictures: it counts tiles

    def __init__(self, total: int, *, bar: bool, on_progress: OnProgress | None = None):
        self.total = total
        self.done = 0
        self.on_progress = on_progress
        self.bar = None
        if bar and total > 0:
            from .common import progress_bar

            self.bar = progress_bar(total, True, "upscale", unit="tile")  # one line when not on a terminal
        self._base = 0  # tiles of the pictures already finished
        self._planned = 0  # tiles planned for the picture under way

    def start_picture(self, planned: int) -> None:
        self._base = self.done
        self._planned = planned

    def picture_callback(self, done: int, total: int) -> None:
        """The engine's ``progress(done, total)`` for the picture under way."""
        if total != self._planned:  # e.g. a varying alpha channel doubles the windows
            self._set_total(self.total + total - self._planned)
            self._planned = total
        self._advance(self._base + done)

    def finish_picture(self) -> None:
        self._advance(self._base + self._planned)

    def _set_total(self, total: int) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def _advance(self, done: int) -> None:
        if done <= self.done:
            return
        if self.bar is not None:
            self.bar.update(done - self.done)
        self.done = done
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
