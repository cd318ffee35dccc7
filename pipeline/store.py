"""Content-addressed artifact store.

Each artifact is a file ``objects/ab/<key><suffix>`` plus its record ``objects/ab/<key>.json``.
The record holds the file's sha256, so truncated, zeroed or swapped files are detected.
Writes are atomic (temp file, fsync, rename) and the record is written last: an artifact
without a record does not exist. Imports no torch.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .jobs import digest_bytes

log = logging.getLogger("pipeline")

STALE_LOCK_SECONDS = 6 * 3600
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass
class Artifact:
    key: str
    path: Path
    record: dict


def file_digest(path: Path) -> str:
    return digest_bytes(Path(path).read_bytes())


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_error(path: Path, err: OSError) -> UserError:
    """Turn an OS write error into one clear sentence."""
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
    }.get(err.errno, err.strerror or str(err))
    return UserError(f"cannot write {path}: {reason}")


class Store:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a store key: {key!r}")
        return self.root / "objects" / key[:2]

    def record_path(self, key: str) -> Path:
        return self._dir(key) / f"{key}.json"

    def has(self, key: str) -> bool:
        """Cheap check: the record exists (the content is verified by ``get``)."""
        return self.record_path(key).is_file()

    def get(self, key: str) -> Artifact | None:
        """The artifact for ``key``, or None when missing or damaged (damage is reported)."""
        record_path = self.record_path(key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            path = self._dir(key) / f"{key}{record['suffix']}"
            data = path.read_bytes()
        except FileNotFoundError:
            if record_path.exists():
                log.warning("stored artifact %s is missing its file; it will be recomputed", key[:12])
                self.discard(key)
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("stored record %s is unreadable (%s); it will be recomputed", record_path, err)
            self.discard(key)
            return None
        if digest_bytes(data) != record.get("digest"):
            log.warning("stored file %s is damaged (digest mismatch); it will be recomputed", path)
            self.discard(key)
            return None
        return Artifact(key, path, record)

    def put(self, key: str, data: bytes, record: dict, suffix: str = ".png") -> Artifact:
        directory = self._dir(key)
        path = directory / f"{key}{suffix}"
        record = dict(record, key=key, suffix=suffix, digest=digest_bytes(data), bytes=len(data))
        try:
            atomic_write(path, data)
            atomic_write(self.record_path(key), json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))
        except OSError as err:
            raise write_error(directory, err) from err
        return Artifact(key, path, record)

    def discard(self, key: str) -> None:
        directory = self._dir(key)
        for path in directory.glob(f"{key}*") if directory.is_dir() else ():
            try:
                path.unlink()
            except OSError:
                pass

    def keys(self):
        objects = self.root / "objects"
        if objects.is_dir():
            for path in objects.glob("*/*.json"):
                yield path.stem

    @contextmanager
    def lock(self, key: str):
        """Hold an exclusive lock on ``key`` across processes (blocks, polling).

        A lock left by a process that died (same host, pid gone) or older than
        STALE_LOCK_SECONDS is taken over.
        """
        path = self._dir(key) / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "w") as handle:
                    handle.write(me)
                break
            except FileExistsError:
                if _lock_is_stale(path):
                    try:
                        path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                time.sleep(0.05)
        try:
            yield
        finally:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


    @contextmanager
    def lock_all(self, keys):
        """Hold the locks of several keys, taken in sorted order (so two holders cannot deadlock)."""
        with ExitStack() as stack:
            for key in sorted(set(keys)):
                stack.enter_context(self.lock(key))
            yield


def _lock_is_stale(path: Path) -> bool:
    try:
        owner = path.read_text()
        age = time.time() - path.stat().st_mtime
    except (FileNotFoundError, OSError):
        return False
    if age > STALE_LOCK_SECONDS or (not owner and age > 5):
        return True
    host, _, pid = owner.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def default_store(out: Path) -> Store:
    env = os.environ.get("PIPELINE_STORE")
    return Store(Path(env) if env else Path(out) / ".store")
