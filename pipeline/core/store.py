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
import re
import secrets
import socket
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .jobs import digest_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: O_EXCL lock files with stale-lock detection
    fcntl = None

log = logging.getLogger("pipeline")

STALE_LOCK_SECONDS = 6 * 3600
FOREIGN_TEMP_SECONDS = 24 * 3600  # a temp file of another host's writer is abandoned after this long
_HOST = digest_bytes(socket.gethostname().encode("utf-8"))[:8]
_TEMP = re.compile(r"^\..+\.~([0-9a-f]{8})-(\d+)-[^.]*\.tmp$")
_SWEPT: set[str] = set()


@dataclass
class Artifact:
    key: str
    path: Path
    record: dict


def file_digest(path: Path) -> str:
    return digest_bytes(Path(path).read_bytes())


def temp_prefix(path: Path) -> str:
    """Name prefix of ``path``'s temp files: ``.<name>.~<host>-<pid>-``, so a sweep knows whose they are."""
    return f".{Path(path).name}.~{_HOST}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def sweep_temp(directory: Path) -> None:
    """Remove the temp files that writers killed mid-write (kill -9, power loss) left in ``directory``.

    A temp file is removed when its writer (pid, on this host) is gone, or when it belongs to another
    host and is older than FOREIGN_TEMP_SECONDS. Runs once per directory per process: cheap.
    """
    directory = str(directory)
    if directory in _SWEPT:
        return
    _SWEPT.add(directory)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match:
            continue
        host, pid = match.group(1), int(match.group(2))
        try:
            if host == _HOST:
                abandoned = pid != os.getpid() and not _pid_alive(pid)
            else:
                abandoned = time.time() - entry.stat(follow_symlinks=False).st_mtime > FOREIGN_TEMP_SECONDS
            if abandoned:
                os.unlink(entry.path)
                log.info("removed %s, left by a writer that stopped mid-write", entry.path)
        except OSError:
            pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temp(path.parent)
    fd, tmp = _create_temp(path)
    try:
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


def _create_temp(path: Path) -> tuple[int, str]:
    """A new temp file beside ``path`` with the usual permissions (0666 less the process's umask, applied by
    the kernel: unlike mkstemp's 0600, and without reading the umask, which only changing it can do)."""
    while True:
        tmp = str(path.parent / f"{temp_prefix(path)}{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue


def check_writable(folder: Path) -> None:
    """Fail now, in one sentence, when ``folder`` cannot be written (a read-only disk, no permission),
    rather than after a model has loaded; leaves nothing behind but the folder itself."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise write_error(folder, err) from err


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
        """The artifact for ``key``, or None when missing or damaged (damage is reported, then forgotten)."""
        problem = None
        for attempt in range(2):  # a second look: a concurrent writer or discard may have been mid-way
            found = self._read(key)
            if not isinstance(found, str):
                return found
            problem = found
            if attempt == 0:
                time.sleep(0.02)
        log.warning("%s; it will be recomputed", problem)
        self.discard(key)
        return None

    def _read(self, key: str) -> Artifact | str | None:
        """The verified artifact, None when there is no record, or what is wrong with it."""
        record_path = self.record_path(key)
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            return f"stored record {record_path} is unreadable ({err.__class__.__name__})"
        try:
            path = self._dir(key) / f"{key}{record['suffix']}"
            data = path.read_bytes()
        except FileNotFoundError:
            return f"stored artifact {key[:12]} is missing its file"
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"stored record {record_path} is unreadable ({err.__class__.__name__})"
        if not isinstance(record, dict) or digest_bytes(data) != record.get("digest"):
            return f"stored file {path} is damaged (digest mismatch)"
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
        """Forget ``key``: its record first (an artifact without a record does not exist), then its file.

        Never its ``.lock``: the caller may hold it, and removing a held lock file lets a second process in.
        """
        directory = self._dir(key)
        paths = [p for p in directory.glob(f"{key}.*") if p.suffix != ".lock"] if directory.is_dir() else []
        for path in sorted(paths, key=lambda p: p.suffix != ".json"):
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
        """Hold an exclusive lock on ``key`` across processes (blocks until it is free).

        The lock is a ``flock`` on ``objects/ab/<key>.lock``: the kernel releases it when its holder
        dies, even by kill -9, so a crash never leaves a lock behind. The holder removes the file when
        done; a waiter that locked the removed file notices (another inode) and locks the new one.
        Without ``fcntl`` (not POSIX), an O_EXCL lock file is used, taken over when stale.
        """
        path = self._dir(key) / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            with _exclusive_file_lock(path):
                yield
            return
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
            except BaseException:
                os.close(fd)
                raise
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the previous holder removed the file we waited on: lock the new one
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}".encode())  # who holds it, for people
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    @contextmanager
    def lock_all(self, keys):
        """Hold the locks of several keys, taken in sorted order (so two holders cannot deadlock)."""
        with ExitStack() as stack:
            for key in sorted(set(keys)):
                stack.enter_context(self.lock(key))
            yield


@contextmanager
def _exclusive_file_lock(path: Path):  # pragma: no cover - used where fcntl is missing
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            break
        except FileExistsError:
            if _lock_is_stale(path):
                path.unlink(missing_ok=True)
                continue
            time.sleep(0.05)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


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
