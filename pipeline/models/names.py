"""Which model a user means, and its fingerprint for store keys. Imports no torch.

A model is a Hugging Face repo id (default ``Tongyi-MAI/Z-Image-Turbo``, optionally ``@revision``)
resolved in the local Hugging Face cache (``models/hub.py``), a local diffusers folder, a ComfyUI
install or its ``models/`` folder (``models/comfy.py``), or ``tiny-random`` (the offline test model
built in code).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..core.errors import UserError
from .hub import DEFAULT_REPO, download_message  # noqa: F401  (the model a user gets by default)

TINY = "tiny-random"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(@[\w.-]{1,100})?$")


def default_model() -> str:
    """The model used when none is given: ``PIPELINE_MODEL``, else Z-Image-Turbo."""
    return os.environ.get("PIPELINE_MODEL") or DEFAULT_REPO


def check_model(model: str) -> str:
    """Validate a model reference; return it normalised (local folders made absolute)."""
    if model == TINY:
        return model
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return str(path.resolve())
        from . import comfy

        if comfy.models_folder(path) is not None:
            comfy.find(path)  # every piece present, or one sentence naming the missing one
            return str(path.resolve())
        raise UserError(f"{model} is a folder but neither a diffusers model (it has no model_index.json) "
                        f"nor a ComfyUI install or models folder (it has no diffusion_models/ or unet/ folder)")
    if path.exists():
        raise UserError(f"{model} is a file; --model takes a Hugging Face repo id or a diffusers folder "
                        "(use --transformer for a single-file checkpoint)")
    if model.startswith((".", "~", "/", os.sep)) or (len(path.parts) > 1 and Path(path.parts[0]).is_dir()):
        raise UserError(f"no such folder: {model} (--model takes a local diffusers folder, a ComfyUI install, "
                        f"a Hugging Face repo id like {DEFAULT_REPO}, or {TINY})")
    if not _REPO_ID.match(model) or ".." in model:
        import difflib

        close = difflib.get_close_matches(model.lower(), [TINY, DEFAULT_REPO.lower()], n=1, cutoff=0.75)
        hint = f" (did you mean {TINY if close[0] == TINY else DEFAULT_REPO}?)" if close else ""
        raise UserError(f"model {model!r} is neither a local folder nor a Hugging Face repo id like "
                        f"{DEFAULT_REPO}{hint}")
    return model


def display_name(model: str) -> str:
    return Path(model).name if "/" in model or os.sep in model else model


def is_hub_id(model: str) -> bool:
    return model != TINY and not Path(model).is_absolute() and bool(_REPO_ID.match(model))


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "PIPELINE_OFFLINE"))


def loading_message(model: str) -> str | None:
    """What loading ``model`` is about to do, said while the user waits (None: an error follows at once)."""
    if model == TINY:
        return "building the tiny-random test model in code (no download)"
    path = Path(model)
    if path.is_dir():
        kind = "folder" if (path / "model_index.json").is_file() else "ComfyUI folder"
        return f"loading {display_name(model)} from the {kind} {model}"
    from . import hub

    snapshot = hub.find_snapshot(model)
    if snapshot is not None:
        return (f"loading {model} from the Hugging Face cache {snapshot.folder} "
                "(the real model takes a minute or more)")
    return None  # not cached: the download says so once the Hub answered (download_message), else the error


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def model_fingerprint(model: str) -> str:
    """Identity of the weights, cheap to compute: changes when the weights change."""
    if model == TINY:
        from .tiny import tiny_fingerprint

        return tiny_fingerprint()
    path = Path(model)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            from . import comfy

            return comfy.fingerprint(comfy.find(path))
        return f"local:{path.name}:{_folder_fingerprint(path)}"
    from . import hub

    return hub.fingerprint(model)
