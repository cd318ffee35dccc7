"""Gradio's file cache, bounded: a private folder per server (GRADIO_TEMP_DIR), swept every minute.

Gradio copies every picture it shows, and every upload, into its cache and (by default) keeps them
forever in /tmp/gradio. Here the cache is a fresh folder of its own (mode 0700, inside
$GRADIO_TEMP_DIR when that is set), removed when the server stops; uploads are deleted
``upload_age`` seconds after they arrive (the page's handlers delete them sooner, once used), other
files ``max_age`` seconds after they were written, and the oldest go first past ``max_bytes``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

log = logging.getLogger("pipeline")

MAX_BYTES = 2**30  # 1 GiB: ~50,000 of the page's thumbnails, or 34 full uploads
MAX_AGE = 6 * 3600  # a picture shown this morning still opens this afternoon
UPLOAD_AGE = 30 * 60  # a dropped image waits this long for its Refine/Upscale click
EVERY = 60
PREFIX = "pipeline-ui-"
OWNER = "owner.pid"  # the server's process id: a folder whose process is gone is removed by the next server


def remove_abandoned(parent: Path) -> None:
    """The cache folders of servers that were killed (kill -9, a power cut) and never cleaned up."""
    for folder in parent.glob(PREFIX + "*"):
        try:
            pid = int((folder / OWNER).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


class Cache:
    def __init__(self, root: Path | None = None, *, max_bytes: int = MAX_BYTES, max_age: float = MAX_AGE,
                 upload_age: float = UPLOAD_AGE, clock=time.time):
        parent = os.environ.get("GRADIO_TEMP_DIR") if root is None else None
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        if root is None:
            remove_abandoned(Path(parent or tempfile.gettempdir()))
            root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
            (root / OWNER).write_text(str(os.getpid()))
        self.root = Path(root)
        self.max_bytes, self.max_age, self.upload_age, self.clock = max_bytes, max_age, upload_age, clock
        self.uploads: dict[str, float] = {}  # path -> when it arrived
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def use(self) -> None:
        """Point Gradio at this folder (before gradio builds a page: Blocks read it on creation)."""
        os.environ["GRADIO_TEMP_DIR"] = str(self.root)

    def uploaded(self, paths: list[str]) -> None:
        now = self.clock()
        with self._lock:
            self.uploads.update({str(Path(p).resolve()): now for p in paths if self._inside(p)})

    def _inside(self, path) -> bool:
        try:
            Path(path).resolve().relative_to(self.root.resolve())
            return True
        except ValueError:
            return False

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        for folder, _, names in os.walk(self.root):
            for name in names:
                path = Path(folder) / name
                if name == OWNER and Path(folder) == self.root:
                    continue
                try:
                    st = path.lstat()
                except OSError:
                    continue
                found.append((max(st.st_mtime, st.st_ctime), st.st_size, path))
        return found

    def sweep(self, need: int = 0) -> int:
        """Delete expired uploads and files, then the oldest until ``need`` more bytes fit under
        ``max_bytes``; return the bytes in use."""
        now = self.clock()
        with self._lock:
            expired = {p for p, t in self.uploads.items() if now - t > self.upload_age}
            for p in expired:
                self.uploads.pop(p, None)
        kept, used = [], 0
        for when, size, path in sorted(self._files()):
            if str(path.resolve()) in expired or now - when > self.max_age:
                _remove(path)
            else:
                kept.append((when, size, path))
                used += size
        for when, size, path in kept:  # oldest first
            if used + need <= self.max_bytes:
                break
            _remove(path)
            used -= size
        for folder, dirs, names in os.walk(self.root, topdown=False):  # Gradio's per-file folders
            if not dirs and not names and Path(folder) != self.root:
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
        return used

    def make_room(self, need: int) -> bool:
        """Whether ``need`` more bytes fit (after a sweep)."""
        return need <= self.max_bytes and self.sweep(need) + need <= self.max_bytes

    def start(self, every: float = EVERY) -> None:
        def loop():
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - the sweeper must outlive an odd file
                    log.warning("cleaning the page's cache %s failed", self.root, exc_info=True)

        self._thread = threading.Thread(target=loop, name="pipeline-ui-cache", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        shutil.rmtree(self.root, ignore_errors=True)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
