"""Run directories: where people find their pictures.

    OUT/<timestamp>-<slug>/run.json
    OUT/<timestamp>-<slug>/explore/seed-42.png   (hard links into the store)
    OUT/latest -> <timestamp>-<slug>

Imports no torch.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
import os
import re
import shutil
import time
import unicodedata
from pathlib import Path

from .errors import UserError
from .store import atomic_write, sweep_temp, temp_prefix, write_error

RUN_FILE = "run.json"
RUN_VERSION = 2  # 2: each stage's section lists its pictures under "pictures"
_V1_PICTURES = {"explore": "candidates", "refine": "pictures", "upscale": "items"}  # version 1's names
RUN_LOCK = ".run.lock"
LATEST = "latest"
MAX_SLUG = 40
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def slugify(text: str, max_length: int = MAX_SLUG) -> str:
    """A file-name-safe, bounded slug: lowercase ASCII letters, digits and dashes."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:max_length].rstrip("-")
    if not slug or slug in _WINDOWS_RESERVED:
        slug = f"run-{slug}" if slug else "run"
    return slug


def check_run_name(name: str) -> str:
    """A user-given run name must be a single plain folder name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name != name.strip():
        raise UserError(f"run name {name!r} must be a plain folder name without slashes")
    if any(unicodedata.category(c) in ("Cc", "Cs") or c in _BIDI_CONTROLS for c in name):
        raise UserError(f"run name {name!r} must not contain control characters")
    if name.split(".")[0].lower() in _WINDOWS_RESERVED or name == LATEST or name.startswith(".") or name.endswith("."):
        raise UserError(f"run name {name!r} is reserved; choose another")
    if len(name.encode("utf-8")) > 200:
        raise UserError("run name is too long (at most 200 bytes)")
    return name


MAX_SAME_SECOND = 1000  # explores of one prompt started in one second: more is a loop gone wrong


def new_run_dir(out: Path, prompt: str, name: str | None = None, *, claim: bool = False) -> Path:
    """The run folder of a new explore: ``OUT/NAME``, or ``OUT/<timestamp>-<slug>``.

    With ``claim`` the timestamped folder is created here, atomically (``mkdir`` fails when it
    exists), so two explores started in the same second get two folders (``…-2``) instead of
    sharing one. ``release_run_dir`` removes a claimed folder that stayed empty."""
    out = Path(out)
    if name:
        return out / check_run_name(name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}-{slugify(prompt)}"
    if claim:
        if out.exists() and not out.is_dir():  # mkdir below would fail with FileExistsError forever
            raise UserError(f"--out {out} is a file: give a folder (it is created if missing)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise UserError(f"--out {out}: a file stands where a folder should be in its path") from None
        except OSError as err:
            raise write_error(out, err) from err
    for n in range(1, MAX_SAME_SECOND + 1):  # bounded: an error that repeats must not spin forever
        candidate = out / (base if n == 1 else f"{base}-{n}")
        if not claim:
            if not candidate.exists():
                return candidate
            continue
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if not out.is_dir():  # the folder itself went away or was replaced by a file
                raise UserError(f"--out {out} is not a folder any more") from None
        except OSError as err:
            raise write_error(candidate, err) from err
    raise UserError(f"{MAX_SAME_SECOND} runs named {base}… already exist in {out}: give --run NAME")


def release_run_dir(run_dir: Path) -> None:
    """Remove a run folder claimed by ``new_run_dir(claim=True)`` when nothing was put in it
    (an explore that failed or was stopped before its first picture leaves no trace)."""
    try:
        Path(run_dir).rmdir()
    except OSError:
        pass  # not empty (or gone): it holds pictures, keep it


def set_latest(out: Path, run_dir: Path) -> None:
    """Point OUT/latest at ``run_dir`` (a relative symlink, or a text file where links fail)."""
    out = Path(out)
    link = out / LATEST
    tmp = out / f"{temp_prefix(link)}link.tmp"
    try:
        sweep_temp(out)
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(run_dir.name, tmp)
        os.replace(tmp, link)
    except OSError:
        try:
            if link.is_symlink():
                link.unlink()
            atomic_write(link, run_dir.name.encode("utf-8"))
        except OSError as err:
            raise write_error(link, err) from err


def resolve_run(out: Path, run: str | Path | None) -> Path:
    """The run a later stage works on: an explicit path or name, else OUT/latest."""
    out = Path(out)
    if run is None:
        link = out / LATEST
        if link.is_symlink():
            target = out / os.readlink(link)
        elif link.is_file():
            target = out / link.read_text(encoding="utf-8").strip()
        else:
            raise UserError(f"no run found in {out}/: {_where_runs_are(out)}")
    else:
        target = Path(run)
        if not target.is_dir() and (out / str(run)).is_dir():
            target = out / str(run)
        if not target.is_dir():
            raise UserError(f"there is no run {str(run)!r} (no such folder here or in {out}/)")
    if not (target / RUN_FILE).is_file():
        raise UserError(f"{target} is not a run directory (it has no {RUN_FILE})")
    return target


def _where_runs_are(out: Path) -> str:
    """A hint for OUT without OUT/latest: output folders just below it that hold runs (`make demo`
    writes outputs/demo/), else run folders in OUT itself. The hint names them rather than
    using them: each output folder has its own store, so a run is worked on with its own --out."""
    try:
        children = sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        children = []
    nested = [p for p in children if (p / LATEST).is_symlink() or (p / LATEST).is_file()]
    if nested:
        names = " or ".join(f"--out {p}" for p in nested[:3])
        return f"runs were found in {', '.join(f'{p}/' for p in nested[:3])}: pass {names} (or set PIPELINE_OUT)"
    runs = [p for p in children if (p / RUN_FILE).is_file()]
    if runs:
        newest = max(runs, key=lambda p: (p / RUN_FILE).stat().st_mtime)
        return f"it has no {LATEST} link; pass --run NAME, e.g. --run {newest.name} (the newest)"
    return "run `pipeline explore PROMPT` first or pass --run"


def load_run(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is corrupt ({err.__class__.__name__}); rebuild it with `pipeline repair {run_dir}`") from err
    if not isinstance(data, dict):
        raise UserError(f"{path} is corrupt (not a JSON object); rebuild it with `pipeline repair {run_dir}`")
    return upgrade(data)


def upgrade(data: dict) -> dict:
    """A run.json of any version in the shape of the current one (in place): version 1's
    `explore.candidates` and `upscale.items` become `pictures`. The file itself is rewritten in the
    new shape by the next stage that records something in the run."""
    for stage, old in _V1_PICTURES.items():
        section = data.get(stage)
        if isinstance(section, dict) and "pictures" not in section and isinstance(section.get(old), list):
            section["pictures"] = section.pop(old)
    if data:
        data["version"] = RUN_VERSION
    return data


def stage_pictures(data: dict, stage: str) -> list[dict]:
    """The pictures a stage recorded in a run.json (loaded with ``load_run``)."""
    section = data.get(stage)
    found = section.get("pictures") if isinstance(section, dict) else None
    return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else []


def new_run_data(header: dict) -> dict:
    """The run.json of a new run: its version, when it was made, and the stage's header."""
    return {"version": RUN_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **header}


def save_run(run_dir: Path, data: dict) -> None:
    path = Path(run_dir) / RUN_FILE
    try:
        atomic_write(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    except OSError as err:
        raise write_error(path, err) from err


@contextmanager
def run_lock(run_dir: Path):
    """Hold an exclusive lock on a run's run.json across processes (released by the kernel on a crash)."""
    try:
        import fcntl
    except ImportError:  # no flock here (Windows): single-writer use only
        yield
        return
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / RUN_LOCK, "a+b")
    except OSError as err:
        raise write_error(run_dir / RUN_LOCK, err) from err
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def update_run(run_dir: Path, mutate) -> dict:
    """Read run.json, let ``mutate(data)`` change it, write it back — all under the run's lock,
    so stages running in different processes never drop each other's sections. Returns what was
    written (what every process recorded, not only this one)."""
    with run_lock(run_dir):
        data = load_run(run_dir)
        mutate(data)
        save_run(run_dir, data)
    return data


def merge_pictures(data: dict, stage: str, entries, id_of=lambda entry: entry.get("seed"), order=None) -> dict:
    """Add ``entries`` to ``data[stage]["pictures"]``, replacing those with the same id
    (``id_of(entry)``) and keeping every other picture: what another process recorded stays.
    Meant for inside ``update_run``. Returns the stage's section."""
    section = data.get(stage)
    if not isinstance(section, dict):
        section = data[stage] = {}
    merged = {id_of(entry): entry for entry in stage_pictures(data, stage)}
    for entry in entries:
        merged[id_of(entry)] = entry
    pictures = list(merged.values())
    if order is not None:
        pictures.sort(key=order)
    section["pictures"] = pictures
    return section


def record_pictures(run_dir: Path, stage: str, entries, *, id_of=lambda entry: entry.get("seed"), order=None,
                    before=None) -> dict:
    """Merge ``entries`` into run.json's ``stage`` section by picture id, under the run's lock:
    read, merge, write. ``before(data)`` may set the run's header first (it sees what is on disk).
    Returns the whole run.json as written."""
    entries = list(entries)

    def mutate(data: dict) -> None:
        if before is not None:
            before(data)
        merge_pictures(data, stage, entries, id_of, order)

    return update_run(run_dir, mutate)


def place(src: Path, dest: Path) -> None:
    """Make ``dest`` show the file ``src``: a hard link, or an atomic copy where links fail."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and os.path.samefile(src, dest):
            return
        sweep_temp(dest.parent)  # what a writer killed mid-copy left here
        tmp = dest.with_name(f"{temp_prefix(dest)}link.tmp")
        if tmp.exists():
            tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except OSError as err:
        raise write_error(dest, err) from err


PICKS_FILE = "picks.json"


_VARIATION_ID = re.compile(r"(?:0|[1-9]\d*)(?:v[1-9]\d*)+")  # 42v3, 42v3v1


def pick_id(value) -> int | str:
    """A picture id as picks hold it: 42 (a candidate's seed) or "42v3" (a variation, as run.json and
    the CLI name it); a UserError (one sentence) for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if text.isdigit() and (text == "0" or not text.startswith("0")):
        return int(text)
    if _VARIATION_ID.fullmatch(text):
        return text
    raise UserError(f"only candidates can be picked (a seed such as 42 or a variation such as 42v3), not {value!r}")


def _is_pick(value) -> bool:
    try:
        return pick_id(value) == value
    except UserError:
        return False


def load_picks(run_dir: Path) -> list:
    """The pictures picked in a run (RUN/picks.json, written by the browser app), in pick order: seeds
    (42) and variations ("42v3"); [] when none."""
    path = Path(run_dir) / PICKS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return []
    seeds = data.get("seeds") if isinstance(data, dict) else None
    if not isinstance(seeds, list):
        return []
    return [s for s in seeds if _is_pick(s)]


def save_picks(run_dir: Path, seeds) -> list:
    """Record the run's picks (RUN/picks.json), the same ones the gallery shows and `pipeline refine` uses."""
    picks = list(dict.fromkeys(pick_id(s) for s in seeds))
    path = Path(run_dir) / PICKS_FILE
    try:
        atomic_write(path, (json.dumps({"seeds": picks}) + "\n").encode("utf-8"))
    except OSError as err:
        raise write_error(path, err) from err
    return picks


def toggle_pick(run_dir: Path, seed, on: bool | None = None) -> list:
    """Pick ``seed`` (42 or "42v3") in a run, or unpick it when it is picked (``on``: pick or unpick
    whatever it was): read, change and write picks.json under the run's lock, so two tabs picking at
    once keep both picks. Returns the picks. The one pick path of the app and the API."""
    seed = pick_id(seed)
    with run_lock(run_dir):
        picks = load_picks(run_dir)
        picked = seed in picks
        if on is None:
            on = not picked
        if on and not picked:
            if seed not in {c.get("seed") for c in stage_pictures(load_run(run_dir), "explore")}:
                raise UserError(f"{seed} is not a candidate of run {run_dir.name}: pick one of its pictures")
            picks = [*picks, seed]
        elif not on:
            picks = [s for s in picks if s != seed]
        return save_picks(run_dir, picks)
