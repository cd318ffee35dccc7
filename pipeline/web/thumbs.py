"""256-px WebP thumbnails of a run's pictures in RUN/thumbs/, for the static gallery and the app's grids:
named after what they show (so a changed picture gets a new one), made only when missing, and pruned
when no picture uses them. Imports no torch."""
from __future__ import annotations

import hashlib
import io
import logging
import os
import warnings
from pathlib import Path

from ..core.store import atomic_write, write_error

log = logging.getLogger("pipeline")

THUMBS = "thumbs"
THUMB_SIZE = 256
THUMB_VERSION = 1


class Thumbs:
    """256-px WebP thumbnails in RUN/thumbs/, named after what they show, made only when missing."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / THUMBS
        self.used: set[str] = set()

    def get(self, source: Path, stage: str, seed: int | None, key) -> tuple[str | None, tuple[int, int] | None]:
        try:
            stat = source.stat()
        except OSError:
            return None, None
        ident = f"{THUMB_VERSION}|{THUMB_SIZE}|{source.name}|{key or ''}|{stat.st_size}|{stat.st_mtime_ns}"
        name = f"{stage}-{seed if seed is not None else 'x'}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}.webp"
        path = self.dir / name
        try:
            size, thumb = self._read(source, need_thumb=not path.is_file())
        except Exception as err:  # noqa: BLE001 - an unreadable picture gets a placeholder, not a crash
            log.warning("gallery: cannot read %s (%s); it is shown as missing", source, err.__class__.__name__)
            return None, None
        if thumb is not None:
            try:
                self.dir.mkdir(exist_ok=True)  # not the run's folder: one removed while it is listed stays removed
            except FileNotFoundError:
                return None, size
            try:
                atomic_write(path, thumb)
            except OSError as err:
                raise write_error(path, err) from err
        self.used.add(name)
        return f"{THUMBS}/{name}", size

    @staticmethod
    def _read(source: Path, need_thumb: bool) -> tuple[tuple[int, int], bytes | None]:
        """The picture's size, and its thumbnail as WebP bytes when ``need_thumb``."""
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own upscaled pictures are big
            with Image.open(source) as image:
                size = image.size
                if not need_thumb:
                    return size, None
                image.draft("RGB", (THUMB_SIZE, THUMB_SIZE))
                thumb = image.convert("RGB")
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS, reducing_gap=2.0)
        buffer = io.BytesIO()
        thumb.save(buffer, format="WEBP", quality=82, method=4)
        return size, buffer.getvalue()

    def prune(self) -> None:
        """Remove thumbnails no picture uses any more (best effort)."""
        try:
            names = [entry.name for entry in os.scandir(self.dir)]
        except OSError:
            return
        for name in names:
            if name.endswith(".webp") and not name.startswith(".") and name not in self.used:
                try:
                    (self.dir / name).unlink()
                except OSError:
                    pass
