"""The Hugging Face cache as ``hf download`` leaves it: a repo id (``org/name`` or ``org/name@revision``)
resolved once to its local snapshot folder, from which every component is then loaded.

Layout (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)::

    models--org--name/blobs/<sha256>            the files' contents
    models--org--name/refs/main                 the commit ``main`` points at
    models--org--name/snapshots/<commit>/...    relative symlinks into blobs/

Resolving reads files only (no huggingface_hub import), so a fingerprint costs nothing on a cache hit;
downloading a missing snapshot (when not offline) is ``huggingface_hub.snapshot_download``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

DEFAULT_REPO = "Tongyi-MAI/Z-Image-Turbo"  # Z-Image-Turbo: the model a user gets when none is named

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Snapshot:
    repo: str
    revision: str  # what the user asked for: "main", a branch, a tag or a commit
    commit: str
    folder: Path


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def split_revision(model: str) -> tuple[str, str]:
    """``org/name@rev`` → (``org/name``, ``rev``); no ``@`` → ``main``."""
    repo, _, revision = model.partition("@")
    return repo, revision or "main"


def repo_folder(repo: str) -> Path:
    return hub_cache_dir() / f"models--{repo.replace('/', '--')}"


def find_snapshot(model: str) -> Snapshot | None:
    """The cached snapshot of ``model`` (``repo`` or ``repo@revision``), or None when it is not cached."""
    repo, revision = split_revision(model)
    folder = repo_folder(repo)
    commit = revision if _COMMIT.match(revision) else None
    if commit is None:
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snapshot = folder / "snapshots" / commit
    if not commit or not snapshot.is_dir():
        return None
    return Snapshot(repo, revision, commit, snapshot)


def fingerprint(model: str) -> str:
    """``hub:org/name@<commit>`` when cached, else ``hub:org/name@<revision>`` (re-keyed once downloaded)."""
    repo, revision = split_revision(model)
    snapshot = find_snapshot(model)
    return f"hub:{repo}@{snapshot.commit if snapshot else revision}"


def not_cached_error(model: str, why: str = "", *, config: bool = False) -> UserError:
    """One sentence for a model that is not cached and cannot be downloaded (offline, or no network:
    ``why``), with the ways on: download it elsewhere, a local folder, or the weightless tiny model
    (said as a config says it with ``config``; else as both the command line and a config say it)."""
    repo, revision = split_revision(model)
    which = f" at revision {revision}" if revision != "main" else ""
    if config:
        ways = ("or set model: to a local diffusers folder; to try the workflow without weights, "
                "--set model=tiny-random")
    else:
        ways = ("or pass --model /path/to/a/local/diffusers/folder; to try the workflow without weights, "
                "use --model tiny-random (with a config: --set model=tiny-random)")
    return UserError(
        f"model {repo}{which} is not in the local Hugging Face cache ({hub_cache_dir()}) and cannot be downloaded "
        f"here{f' ({why})' if why else ''}: download it on a connected machine (`hf download {repo}"
        f"{' --revision ' + revision if revision != 'main' else ''}`) and point HF_HOME at that cache, {ways}"
    )


def _no_network(err: BaseException) -> str | None:
    """``err``'s cause when it is that the Hub cannot be reached (no network, DNS, refused), else None."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name = err.__class__.__name__
        if isinstance(err, LocalEntryNotFoundError) or name in ("ConnectError", "ConnectTimeout", "ConnectionError",
                                                                 "NameResolutionError", "MaxRetryError",
                                                                 "OfflineModeIsEnabled"):
            return "the Hugging Face Hub cannot be reached: no network"
        if isinstance(err, OSError) and err.errno in (-2, -3, -5, 101, 110, 111, 113):  # DNS, unreachable, refused
            return "the Hugging Face Hub cannot be reached: no network"
        err = err.__cause__ or err.__context__
    return None


def resolve(model: str, *, offline: bool) -> Snapshot:
    """The complete local snapshot of ``model``, downloading it first when allowed; else one sentence."""
    snapshot = find_snapshot(model)
    if snapshot is None:
        if offline:
            raise not_cached_error(model)
        snapshot = _download(model)
    check_snapshot(snapshot)
    return snapshot


def _download(model: str) -> Snapshot:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, revision = split_revision(model)
    try:
        from huggingface_hub import HfApi


        HfApi().model_info(repo, revision=revision)  # one request: no network fails here, before "downloading"
        logging.getLogger("pipeline.status").info(download_message(model))
        snapshot_download(repo, revision=revision, cache_dir=hub_cache_dir())
    except Exception as err:  # noqa: BLE001 - httpx/requests errors too: one sentence either way
        if isinstance(err, KeyboardInterrupt):
            raise
        why = _no_network(err)
        if why:
            raise not_cached_error(model, why) from None
        if not isinstance(err, (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError)):
            raise
        first = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise UserError(f"cannot download model {model}: {first}") from None
    snapshot = find_snapshot(model)
    if snapshot is None:
        raise not_cached_error(model)
    return snapshot


def check_snapshot(snapshot: Snapshot) -> None:
    """Raise one sentence when the snapshot is broken or half-downloaded (missing shard, dangling symlink)."""
    where = f"the cached snapshot {snapshot.commit[:12]} of {snapshot.repo} ({snapshot.folder})"
    problem = _first_problem(snapshot.folder)
    if problem is None:
        return
    partial = sorted(p.name for p in (snapshot.folder.parents[1] / "blobs").glob("*.incomplete"))
    cause = f"; blobs/{partial[0]} shows an interrupted download" if partial else ""
    raise UserError(f"{where} is incomplete: {problem}{cause}; run `hf download {snapshot.repo}` again to complete it")


def _first_problem(folder: Path) -> str | None:
    index = folder / "model_index.json"
    if not index.is_file():
        return "model_index.json is missing" if not index.is_symlink() else "model_index.json points at a missing blob"
    try:
        components = json.loads(index.read_text())
    except (OSError, ValueError):
        return "model_index.json is not valid JSON"
    for name, spec in sorted(components.items()):
        if name.startswith("_") or not isinstance(spec, list) or None in spec:
            continue
        sub = folder / name
        if not sub.is_dir():
            return f"the {name}/ folder is missing"
        for path in sorted(sub.rglob("*")):
            if path.is_symlink() and not path.exists():
                return f"{path.relative_to(folder)} points at a missing blob"
        for shard_index in sorted(sub.glob("*.index.json")):
            try:
                weight_map = json.loads(shard_index.read_text()).get("weight_map", {})
            except (OSError, ValueError, AttributeError):
                return f"{shard_index.relative_to(folder)} is not valid JSON"
            for shard in sorted(set(weight_map.values())):
                if not (sub / shard).is_file():
                    return f"{name}/{shard} is missing (named by {shard_index.name})"
    return None


def download_message(model: str) -> str:
    """Said when a download really starts (the Hub answered), never before an offline error."""
    repo = split_revision(model)[0]
    size = ("; the first download of Z-Image-Turbo is about 33 GB (see the README's 'The real model')"
            if repo == DEFAULT_REPO else "")
    return f"downloading {model} from Hugging Face into {repo_folder(repo)}{size}"
