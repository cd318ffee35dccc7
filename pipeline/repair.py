"""Repair a run folder: rebuild ``run.json`` from the store and the pictures in the folder.

The pictures under ``RUN/explore``, ``RUN/refine`` and ``RUN/upscale`` are hard links into
the store (or copies). Each one's sha256 names a store record, and the record holds the job
that made it (``record["job"]``): prompt, size, steps, seed, ... So the run's history can be
rebuilt even when ``run.json`` is lost or corrupt. A corrupt ``run.json`` is kept beside the
new one as ``run.json.corrupt-<time>``; nothing is deleted. Pictures whose digest matches no
store record are left in place and reported. Imports no torch.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .core import registry
from .core.errors import UserError
from .models.names import display_name
from .core.seeds import pick_order
from .core.runs import RUN_FILE, load_run, new_run_data, record_pictures, run_lock, save_run, stage_pictures
from .core.store import Store, default_store, file_digest

log = logging.getLogger("pipeline")

STAGES = registry.sections()
_SEED_NAME = re.compile(r"^seed-(\d+(?:v\d+)*)\.png$")  # a seed, or a variation id (42v3)


@dataclass
class RepairResult:
    run_dir: Path
    rebuilt: bool  # run.json was written anew
    reason: str  # why: "missing", "corrupt", "forced", or "" when run.json was sound
    kept_as: Path | None = None  # where the corrupt run.json was moved
    recorded: dict = field(default_factory=dict)  # stage -> number of pictures recorded
    unknown: list[Path] = field(default_factory=list)  # pictures no store record matches
    added: dict = field(default_factory=dict)  # run.json read fine: stage -> pictures added that it lacked

    def to_json(self) -> dict:
        return {"run_dir": str(self.run_dir), "rebuilt": self.rebuilt, "reason": self.reason,
                "kept_as": str(self.kept_as) if self.kept_as else None, "recorded": self.recorded,
                "unknown": [str(p) for p in self.unknown], "added": self.added}


def find_run_dir(out: Path, run: str | Path) -> Path:
    """RUN as a folder path, or a run name inside ``out``; it need not hold a readable run.json."""
    path = Path(run)
    if not path.is_dir() and (Path(out) / str(run)).is_dir():
        path = Path(out) / str(run)
    if not path.is_dir():
        raise UserError(f"run folder {run} does not exist (looked in . and {out}/)")
    if not any((path / stage).is_dir() for stage in STAGES) and not (path / RUN_FILE).exists():
        raise UserError(f"{path} is not a run folder (it has no {RUN_FILE} and no explore/refine/upscale folder)")
    return path


def repair(run_dir: Path, store: Store | None = None, *, force: bool = False) -> RepairResult:
    """Rebuild ``run_dir/run.json`` when it is missing or corrupt (or always, with ``force``)."""
    run_dir = Path(run_dir)
    store = store or default_store(run_dir.parent)
    path = run_dir / RUN_FILE
    reason = "forced" if force else ""
    if not path.exists():
        reason = "missing"
    else:
        try:
            load_run(run_dir)
        except UserError:
            reason = "corrupt"
    if not reason:
        added, unknown = _add_missing(run_dir, store)
        if any(added.values()):
            _write_gallery(run_dir, None)
        return RepairResult(run_dir, rebuilt=False, reason="", added=added, unknown=unknown)

    by_digest = _index_store(store)
    data: dict = new_run_data({"repaired": True})
    recorded, unknown = {}, []
    pictures = {stage: _pictures(run_dir, stage, by_digest, unknown) for stage in STAGES}
    _header(data, pictures)
    if pictures["explore"]:
        data["explore"] = {"pictures": [_candidate(run_dir, p, r) for p, r in pictures["explore"]]}
    if pictures["refine"]:
        parents = {c["key"]: c["path"] for c in stage_pictures(data, "explore")}
        data["refine"] = {"pictures": [_refined(run_dir, p, r, parents) for p, r in pictures["refine"]]}
    if pictures["upscale"]:
        data["upscale"] = {"pictures": [_upscaled(run_dir, p, r) for p, r in pictures["upscale"]]}
    for stage in STAGES:
        recorded[stage] = len(pictures[stage])

    kept_as = None
    with run_lock(run_dir):  # no stage records a picture between the move and the write
        if reason == "corrupt" or (force and path.exists()):
            kept_as = path.with_name(f"{RUN_FILE}.{'corrupt' if reason == 'corrupt' else 'old'}-"
                                     f"{time.strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, kept_as)
        save_run(run_dir, data)
    _write_gallery(run_dir, data)
    return RepairResult(run_dir, rebuilt=True, reason=reason, kept_as=kept_as, recorded=recorded, unknown=unknown)


def _write_gallery(run_dir: Path, data: dict | None) -> None:
    try:
        from .web.gallery import write_gallery

        write_gallery(run_dir, data)
    except UserError as err:  # the run.json is what matters; say why the page was not rewritten
        log.warning("run.json repaired, but the gallery was not: %s", err)


def _add_missing(run_dir: Path, store: Store) -> tuple[dict, list[Path]]:
    """A run.json that reads fine but lacks pictures that are in its stage folders (a writer
    killed between placing a picture and recording it, or an older version's lost update): add
    them, from their store record or else the record in the PNG itself, merged under the run's
    lock so nothing recorded is touched."""
    data = load_run(run_dir)
    missing = {}
    for stage in STAGES:
        known = {p.get("path") for p in stage_pictures(data, stage)}
        folder = run_dir / stage
        missing[stage] = [picture for picture in sorted(folder.glob("*.png")) if folder.is_dir()
                          and not picture.name.startswith(".") and picture.name != "contact.png"
                          and picture.is_file() and _rel(run_dir, picture) not in known] if folder.is_dir() else []
    added: dict = {stage: 0 for stage in STAGES}
    unknown: list[Path] = []
    if not any(missing.values()):
        return added, unknown
    by_digest = _index_store(store)
    for stage in STAGES:
        entries = []
        for picture in missing[stage]:
            record = _record_for(picture, stage, by_digest)
            if record is None:
                unknown.append(picture)
                log.warning("%s carries no record of ours and matches no %s picture in the store; not recorded",
                            picture, stage)
                continue
            if stage == "explore":
                entries.append(_candidate(run_dir, picture, record))
            elif stage == "refine":
                parents = {c.get("key"): c.get("path") for c in stage_pictures(data, "explore")}
                entries.append(_refined(run_dir, picture, record, parents))
            else:
                entries.append(_upscaled(run_dir, picture, record))
        if not entries:
            continue
        by_id = (lambda e: e.get("seed")) if stage == "explore" else (lambda e: e.get("path"))
        record_pictures(run_dir, stage, entries, id_of=by_id, order=lambda e: (pick_order(e.get("seed")),
                                                                              str(e.get("path", ""))))
        added[stage] = len(entries)
    return added, unknown


def _record_for(picture: Path, stage: str, by_digest: dict) -> dict | None:
    """A picture's store record (by its sha256), else one made from the record in its PNG."""
    kinds = (stage, "vary") if stage == "explore" else (stage,)
    try:
        record = by_digest.get(file_digest(picture))
    except OSError:
        return None
    if record is not None and record["job"].get("kind") in kinds:
        return record
    meta = _png_record(picture)
    if stage == "upscale":
        step = meta.get("upscale")
        if isinstance(step, dict) and isinstance(step.get("key"), str):
            return {"key": step["key"], "job": {"kind": "upscale"}, "source": str(step.get("input", ""))}
        return None
    if isinstance(meta.get("key"), str) and meta.get("kind") in kinds:
        return {"key": meta["key"], "job": meta}
    return None


def _index_store(store: Store) -> dict[str, dict]:
    """digest -> record, for every readable record in the store."""
    index = {}
    objects = store.root / "objects"
    for record_path in objects.glob("*/*.json") if objects.is_dir() else ():
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("digest"), str) and isinstance(record.get("job"), dict):
            index[record["digest"]] = record
    return index


def _pictures(run_dir: Path, stage: str, by_digest: dict, unknown: list) -> list[tuple[Path, dict]]:
    """(picture, store record) of a stage's folder, for the pictures whose digest the store knows."""
    folder = run_dir / stage
    found = []
    for picture in sorted(folder.glob("*.png")) if folder.is_dir() else ():
        if picture.name.startswith(".") or picture.name == "contact.png" or not picture.is_file():
            continue
        try:
            record = by_digest.get(file_digest(picture))
        except OSError:
            record = None
        kinds = (stage, "vary") if stage == "explore" else (stage,)  # variations live among the candidates
        if record is None or record["job"].get("kind") not in kinds:
            unknown.append(picture)
            log.warning("%s matches no %s picture in the store; left in place, not recorded", picture, stage)
            continue
        found.append((picture, record))
    return found


def _header(data: dict, pictures: dict) -> None:
    """The run's settings, from its candidates' jobs (else its refined pictures')."""
    source = pictures["explore"] or pictures["refine"]
    if not source:
        return
    _, record = source[0]
    job = record["job"]
    model = record.get("model") or job.get("model", "")
    data.update(prompt=job.get("prompt", ""), negative=job.get("negative", ""), model=model,
                model_name=display_name(model), model_fingerprint=job.get("model", ""), steps=job.get("steps"),
                guidance=job.get("guidance"), dtype=job.get("dtype"))
    if pictures["explore"]:
        data.update(width=job.get("width"), height=job.get("height"))
    variance = job.get("variance")
    if isinstance(variance, dict):  # --variance: one setting per run
        data["variance"] = {k: variance.get(k) for k in ("strength", "share", "steps")}


def _candidate(run_dir: Path, picture: Path, record: dict) -> dict:
    job = record["job"]
    entry = {"seed": job.get("seed"), "key": record["key"], "path": _rel(run_dir, picture),
             "seconds": record.get("seconds", 0.0), "cached": True}
    if job.get("kind") == "vary":  # a variation (pipeline vary): its id and its parent, from its PNG
        meta = _png_record(picture)
        from .core.seeds import pick_parent

        if isinstance(meta.get("variation"), str):
            entry.update(seed=meta["variation"], parent=pick_parent(meta["variation"]),
                         parent_key=meta.get("parent_key", ""), noise_seed=job.get("seed"),
                         strength=job.get("strength"), steps=job.get("steps"))
    return entry


def _refined(run_dir: Path, picture: Path, record: dict, parents: dict) -> dict:
    job = record["job"]
    meta = _png_record(picture)
    parent_key = meta.get("parent_key", "") if isinstance(meta.get("parent_key"), str) else ""
    match = _SEED_NAME.match(picture.name)
    seed = match.group(1) if match and "v" in match.group(1) else job.get("seed")  # a refined variation: its id
    entry = {"seed": seed, "key": record["key"], "path": _rel(run_dir, picture), "mode": job.get("mode"),
             "width": job.get("width"), "height": job.get("height"), "steps": job.get("steps"),
             "guidance": job.get("guidance"), "parent_key": parent_key, "source": parents.get(parent_key, ""),
             "seconds": record.get("seconds", 0.0), "cached": True}
    if job.get("mode") == "hires":
        entry.update(strength=job.get("strength"), enlarge=job.get("enlarge"), parent_digest=job.get("parent"))
        if job.get("crop"):
            entry["crop"] = job["crop"]
    return entry


def _upscaled(run_dir: Path, picture: Path, record: dict) -> dict:
    match = _SEED_NAME.match(picture.name)
    source = Path(record.get("source", "")).name if isinstance(record.get("source"), str) else ""
    seed = (match.group(1) if "v" in match.group(1) else int(match.group(1))) if match else None
    return {"seed": seed, "key": record["key"], "path": _rel(run_dir, picture),
            "source": source, "seconds": record.get("seconds", 0.0), "cached": True}


def _png_record(picture: Path) -> dict:
    try:
        from .core.images import read_info

        record = read_info(picture).get("pipeline")
    except UserError:
        return {}
    return record if isinstance(record, dict) else {}


def _rel(run_dir: Path, picture: Path) -> str:
    return str(picture.relative_to(run_dir))
