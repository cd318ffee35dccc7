"""LoRA files: where they are found, what they are called, and their identity. Imports no torch.

Names resolve in ``weights/loras/`` (under the weights folder, see ``models/upscaler_weights.py``), the
folders in ``$PIPELINE_LORAS`` (``os.pathsep``-separated) and, when ``--model`` is a ComfyUI install,
its ``models/loras/``. A job carries each LoRA's content digest (sha256 of the file) and weight,
never its name or path: renaming a file keeps the key, changing its content re-keys. Digests are
remembered by (path, size, mtime) in memory and in ``<folder>/.digests.json`` where it can be written.

Loading, checking and applying the weights is ``engines/lora_weights.py`` (torch).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
DIGEST_CACHE = ".digests.json"
_DIGESTS: dict[tuple, tuple[str, str]] = {}


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file found in one of the known folders."""

    name: str  # the file name without .safetensors
    path: Path
    folder: Path
    size: int

    def to_json(self) -> dict:
        return {"name": self.name, "path": str(self.path), "folder": str(self.folder), "size": self.size}


@dataclass(frozen=True)
class Lora:
    """A LoRA chosen for a picture: its name (for people), file, digest and weight."""

    name: str
    path: Path | None  # None: a recorded LoRA whose file was not found (see from_records)
    sha256: str
    weight: float
    a1111_hash: str = ""  # the 12 hex A1111 writes in ``Lora hashes`` (see ``digests``)

    def use(self):
        from ..core.jobs import LoraUse

        return LoraUse(sha256=self.sha256, weight=self.weight)

    def record(self) -> dict:
        """The picture's record (PNG JSON, run.json): name, digest, weight, and A1111's short hash."""
        return {"name": self.name, "sha256": self.sha256, "weight": self.weight, "a1111_hash": self.a1111_hash}


# ---------------------------------------------------------------- folders


def lora_folders(model: str | None = None) -> list[Path]:
    """Where LoRA names are looked up, in order (folders that do not exist are listed too)."""
    from .upscaler_weights import weights_dir

    folders = [weights_dir() / "loras"]
    for part in os.environ.get("PIPELINE_LORAS", "").split(os.pathsep):
        if part.strip():
            folders.append(Path(part.strip()).expanduser())
    comfy = comfy_loras(model)
    if comfy is not None:
        folders.append(comfy)
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def comfy_loras(model: str | None) -> Path | None:
    """A ComfyUI install's ``models/loras/`` when ``model`` points at one."""
    if not model or model == "tiny-random":
        return None
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    from .comfy import models_folder

    root = models_folder(path)
    return root / "loras" if root is not None else None


def list_loras(model: str | None = None) -> list[LoraFile]:
    """The ``.safetensors`` files in the known folders (subfolders too), first folder first, by name."""
    found: list[LoraFile] = []
    for folder in lora_folders(model):
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(f"*{SUFFIX}")):
            if path.is_file():
                found.append(LoraFile(_name(path, folder), path.resolve(), folder, path.stat().st_size))
    return found


def _name(path: Path, folder: Path) -> str:
    relative = path.relative_to(folder)
    return str(relative.with_suffix("")) if relative.parent != Path(".") else path.stem


# ---------------------------------------------------------------- the --lora argument


def parse_lora(text) -> tuple[str, float]:
    """``NAME_OR_FILE[:WEIGHT]`` (weight 1 by default), a ``(name, weight)`` pair, or ``{name, weight}``."""
    if isinstance(text, dict):
        if "name" not in text and "file" not in text:
            raise UserError(f"a LoRA entry needs a name: {text!r}")
        return _checked(str(text.get("name") or text.get("file")), text.get("weight", 1.0))
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise UserError(f"a LoRA is (name, weight), not {text!r}")
        return _checked(str(text[0]), text[1])
    text = str(text).strip()
    name, sep, tail = text.rpartition(":")
    if not sep or (len(name) == 1 and name.isalpha() and tail.startswith(("\\", "/"))):
        return _checked(text, 1.0)  # no weight (C:\\… is a Windows drive, not a weight)
    try:
        return _checked(name, float(tail))
    except ValueError:
        pass
    if Path(text).expanduser().is_file() or _looks_like_a_path(tail):
        return _checked(text, 1.0)  # a path holding a colon, without a weight
    if not name.strip():
        raise UserError(f"LoRA {text!r} has no name before the colon, e.g. style{text}")
    if not tail.strip():
        raise UserError(f"LoRA {text!r} has no weight after the colon: give one, e.g. {name}:0.8, "
                        f"or leave out the colon (weight 1)")
    raise UserError(f"LoRA weight {tail!r} for {name!r} is not a number, e.g. {name}:0.8")


def _looks_like_a_path(tail: str) -> bool:
    """After the last colon: a path's rest (``dir:x/y.safetensors``), not a weight."""
    return "/" in tail or "\\" in tail or tail.lower().endswith((SUFFIX, *PICKLE_SUFFIXES))


def _checked(name: str, weight) -> tuple[str, float]:
    try:
        number = float(weight)
    except (TypeError, ValueError):
        raise UserError(f"LoRA weight {weight!r} for {name!r} is not a number, e.g. {name}:0.8") from None
    if number != number or abs(number) > 10:
        raise UserError(f"LoRA weight {weight!r} for {name!r} is out of range: use -10 to 10 (1 is full strength)")
    if not name.strip():
        raise UserError("a LoRA needs a file or a name, e.g. --lora style:0.8")
    return name.strip(), number


def find_lora(name: str, model: str | None = None) -> Path:
    """The file a ``--lora`` names: a path, or a name (with or without .safetensors) in the known folders."""
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UserError(f"{name} is a pickle ({suffix}), which can run code when loaded; only .safetensors "
                        f"LoRAs are loaded (convert it, or get the .safetensors release)")
    if path.is_file():
        check_file(path)
        return path.resolve()
    if suffix and suffix != SUFFIX:
        raise UserError(f"{name}: only .safetensors LoRA files are loaded")
    folders = lora_folders(model)
    stem = name[:-len(SUFFIX)] if name.lower().endswith(SUFFIX) else name
    for folder in folders:
        candidate = folder / f"{stem}{SUFFIX}"
        if candidate.is_file():
            return candidate.resolve()
    by_stem = [f.path for f in list_loras(model) if f.path.stem == Path(stem).name]
    if by_stem:
        return by_stem[0]
    looked = ", ".join(str(f) for f in folders)
    if _is_path(name):
        raise UserError(f"LoRA file {name} does not exist (a path is read from {Path.cwd()}; "
                        f"a name without a folder is looked up in {looked})")
    raise UserError(f"LoRA {name!r} not found: looked for {Path(stem).name}{SUFFIX} in {looked} "
                    f"(put it in one, set PIPELINE_LORAS to its folder, or give its path)")


def _is_path(name: str) -> bool:
    """A path rather than a name: absolute, from ~ or ., or a folder and a .safetensors file."""
    return (name.startswith(("/", "~", "./", "../", ".\\")) or Path(name).is_absolute()
            or (("/" in name or "\\" in name) and name.lower().endswith(SUFFIX)))


def check_file(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise UserError(f"{path} is a pickle ({suffix}), which can run code when loaded; only .safetensors "
                        f"LoRAs are loaded (convert it, or get the .safetensors release)")
    if suffix != SUFFIX:
        raise UserError(f"{path}: only .safetensors LoRA files are loaded")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or int.from_bytes(head, "little") > path.stat().st_size:
        raise UserError(f"{path} is not a .safetensors file (its header is damaged or it is another format)")


# ---------------------------------------------------------------- identity


def digests(path: str | Path) -> tuple[str, str]:
    """(sha256 of the file, A1111's LoRA hash): one read, remembered by (path, size, mtime).

    A1111's hash (``extensions-builtin/Lora/network.py``) is the ``sshs_model_hash`` in the file's
    metadata if any, else the "addnet" hash (``modules/hashes.py``): sha256 of the bytes after the
    safetensors header; its infotext shows the first 12 hex digits."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    cache_file = path.parent / DIGEST_CACHE
    cache = _read_cache(cache_file)
    entry = cache.get(path.name)
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns \
            and isinstance(entry.get("sha256"), str) and isinstance(entry.get("a1111"), str):
        _DIGESTS[key] = (entry["sha256"], entry["a1111"])
        return _DIGESTS[key]
    whole, payload = hashlib.sha256(), hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        header = f.read(size)
        whole.update(head + header)
        while block := f.read(1 << 20):
            whole.update(block)
            payload.update(block)
    a1111 = _metadata_hash(header) or payload.hexdigest()
    _DIGESTS[key] = (whole.hexdigest(), a1111[:12])
    cache[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _DIGESTS[key][0],
                        "a1111": _DIGESTS[key][1]}
    _write_cache(cache_file, cache)
    return _DIGESTS[key]


def _metadata_hash(header: bytes) -> str | None:
    try:
        value = json.loads(header).get("__metadata__", {}).get("sshs_model_hash")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None


def _read_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: dict) -> None:
    """Best effort: a read-only folder only costs a re-read next time."""
    from ..core.store import atomic_write

    try:
        atomic_write(path, json.dumps(cache, indent=1, sort_keys=True).encode())
    except OSError:
        pass


def resolve(specs, model: str | None = None) -> list[Lora]:
    """``--lora`` values (strings, pairs or dicts) as Loras with their digests; weight 0 drops a LoRA
    (it changes no pixel, so it stays out of the key); the same file twice is refused."""
    loras: list[Lora] = []
    for spec in specs or ():
        name, weight = parse_lora(spec)
        path = find_lora(name, model)
        if weight == 0:
            continue
        sha, a1111 = digests(path)
        if any(lora.sha256 == sha for lora in loras):
            raise UserError(f"LoRA {name!r} is given twice (same file content); give it once with the total weight")
        loras.append(Lora(name=path.stem, path=path, sha256=sha, weight=weight, a1111_hash=a1111))
    return loras


def find_by_digest(sha256: str, model: str | None = None, hint: str = "") -> Path | None:
    """The file in the known folders whose content has this sha256 (the name ``hint`` is tried first)."""
    files = list_loras(model)
    files.sort(key=lambda f: f.path.stem != hint)
    for file in files:
        if digests(file.path)[0] == sha256:
            return file.path
    return None


def from_records(records, model: str | None = None, known: dict | None = None) -> list[Lora]:
    """The LoRAs a picture was made with (its record's ``loras``), found again by digest: among ``known``
    (sha256 -> file, e.g. those this session used), else in the known folders. A file not found has
    ``path=None``: the key needs only the digest (a stored picture is found without the file); computing
    needs the file (``missing_message`` says so)."""
    loras = []
    for record in records or ():
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
            continue
        sha = record["sha256"]
        name = str(record.get("name") or sha[:12])
        path = (known or {}).get(sha)
        if path is None or not Path(path).is_file() or digests(path)[0] != sha:
            path = find_by_digest(sha, model, name)
        try:
            weight = float(record.get("weight", 1.0))
        except (TypeError, ValueError):
            weight = 1.0
        if path is None:
            loras.append(Lora(name=name, path=None, sha256=sha, weight=weight,
                              a1111_hash=str(record.get("a1111_hash") or "")))
            continue
        loras.append(Lora(name=path.stem, path=path, sha256=sha, weight=weight, a1111_hash=digests(path)[1]))
    return loras


def missing_message(lora: Lora, model: str | None, what: str) -> str:
    looked = ", ".join(str(f) for f in lora_folders(model))
    return (f"{what} was made with LoRA {lora.name!r} (sha256 {lora.sha256[:12]}…), which is not in {looked}; "
            f"put the file there, give it with --lora FILE:WEIGHT, or pass --no-lora")
