"""The picture grids of the app (candidates, refined, upscaled) and their large view.

A grid is a ``gr.HTML`` whose template never changes: its script (assets/viewer.js) builds the cards
itself and, while explore streams, appends only the cards it has not drawn yet. The value sent to
the browser is a small dict::

    {"run": "2026-…-fox", "stage": "explore", "items": [{...}, ...], "picks": ["42", ...]}

Gradio sends a generator's later values as diffs, so a streamed update carries only the new items
(about 300 bytes each): the browser's cost per candidate does not grow with the run.

Each item names the thumbnail (for the grid) and the full picture (for the large view and its
Download), both served by Gradio's file route from the output folder; never a copy. Picking, the
parameters of the large view and the zips are server functions of the grid: they take the run's
name, which ``AppState.run_dir`` confines to the output folder, and answer ``{"error": sentence}``
for a user error. Imports no torch.
"""
from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from ...core import registry
from ...core.errors import UserError
from ...core.runs import load_picks, run_lock, save_picks
from . import pictures

STAGES = registry.sections()
ZIPS = ".downloads"  # OUT/.downloads/RUN-WHICH.zip: the last zip asked for, replaced each time
TEMPLATE = '<div class="pgrid" data-empty="1"><div class="pgrid-head"></div><div class="pgrid-cards"></div></div>'


def _asset(name: str) -> str:
    return resources.files("pipeline.web").joinpath("assets", name).read_text(encoding="utf-8")


def css() -> str:
    return _asset("app.css")


def url(path: Path) -> str:
    """The page-relative URL of a file of the output folder (Gradio's file route)."""
    return "gradio_api/file=" + quote(str(Path(path).resolve()), safe="/")


def _rel(run_dir: Path, path: Path) -> str:
    """A file of the run as a path relative to it (the page adds the run's URL), else its own URL."""
    try:
        return quote(Path(path).relative_to(run_dir).as_posix(), safe="/")
    except ValueError:
        return url(path)


def item(run_dir: Path, shown: pictures.Shown, before: Path | None = None) -> dict:
    """One card: short keys and paths relative to the run, since every streamed candidate carries one.
    s: seed (a string: JavaScript numbers lose digits), p: the PNG, t: its thumbnail, z: size, c: caption,
    b: the candidate a refined picture was made from."""
    run_dir = Path(run_dir)
    size = list(shown.size) if shown.size else None
    label = str(shown.seed) if shown.seed is not None else "picture"
    if shown.stage != "explore" and size:
        label += f" · {size[0]}×{size[1]}"
    entry = {"s": None if shown.seed is None else str(shown.seed), "p": _rel(run_dir, shown.path),
             "t": _rel(run_dir, shown.thumb or shown.path), "z": size, "c": label}
    if before is not None:
        entry["b"] = _rel(run_dir, before)
    return entry


def value(run_dir: Path | None, stage: str, shown=(), picks=(), candidates=()) -> dict:
    """The value of a grid: the run's pictures of ``stage`` in this order."""
    if run_dir is None:
        return {"run": None, "base": "", "stage": stage, "items": [], "picks": []}
    before = {c.seed: c.path for c in candidates} if stage == "refine" else {}
    return {"run": Path(run_dir).name, "base": url(run_dir) + "/", "stage": stage,
            "items": [item(run_dir, s, before.get(s.seed)) for s in shown],
            "picks": [str(p) for p in picks] if stage == "explore" else []}


def view_value(view: pictures.RunView, stage: str, paths=None) -> dict:
    """A grid's value from a whole run (opening a run, or after a stage); ``paths`` picks and orders."""
    shown = {"explore": view.candidates, "refine": view.refined, "upscale": view.upscaled}[stage]
    if paths is not None:
        by_path = {str(s.path): s for s in shown}
        shown = [by_path[str(p)] for p in paths if str(p) in by_path]
    return value(view.run_dir, stage, shown, view.picks, view.candidates)


# ---------------------------------------------------------------- server functions of a grid

def _safe(fn):
    def wrapper(data):
        try:
            if not isinstance(data, dict):
                raise UserError("the page sent a malformed request")
            return fn(data)
        except UserError as err:
            return {"error": str(err)}
        except OSError as err:
            from .errors import message

            return {"error": message(err)}
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def server_functions(app):
    """pick, describe and zip_pictures, bound to the app's output folder."""

    def pick(data):
        """Pick or un-pick a candidate: {"run", "seed", "on"} -> {"picks": [...]} (RUN/picks.json)."""
        from ..gallery import write_gallery

        run_dir = app.run_dir(data.get("run"))
        seed = _seed(data.get("seed"))
        with run_lock(run_dir):  # read, change, write under the run's lock: two tabs keep both picks
            picks = load_picks(run_dir)
            if data.get("on"):
                picks = picks if seed in picks else [*picks, seed]
            else:
                picks = [s for s in picks if s != seed]
            picks = save_picks(run_dir, picks)
        write_gallery(run_dir)  # the static page shows the same picks
        return {"picks": [str(s) for s in picks]}

    def describe(data):
        """The large view's text: {"run", "stage", "p"} -> {"params": [[k, v], ...], "command": str}."""
        run_dir = app.run_dir(data.get("run"))
        view = pictures.view(run_dir)
        shown = _find(view, str(data.get("stage")), str(data.get("p", "")))
        params = pictures.params(shown, view.data)
        if params.get("size"):
            params.pop("width", None), params.pop("height", None)
        labels = {**LABELS, "model": "upscaler"} if shown.stage == "upscale" else LABELS
        rows = [[labels.get(k, k.replace("_", " ")), _text(k, v)] for k, v in params.items()
                if v not in (None, "") and k not in ("file", "stage")]
        rows.append(["file", str(shown.path)])
        return {"params": rows, "command": pictures.command(app.out, run_dir, shown, view.data)}

    def zip_pictures(data):
        """A zip of the full-size PNGs: {"run", "which": picked|refine|upscale} -> {"url", "name", "count"}."""
        run_dir = app.run_dir(data.get("run"))
        which = data.get("which")
        view = pictures.view(run_dir)
        if which == "picked":
            picks = set(view.picks)
            chosen = [c for c in view.candidates if c.seed in picks]
            empty = "nothing is picked yet: pick candidates with the ✓ in their corner"
        elif which in ("refine", "upscale"):
            chosen = view.refined if which == "refine" else view.upscaled
            empty = f"this run has no {'refined' if which == 'refine' else 'upscaled'} pictures yet"
        else:
            raise UserError("zip: ask for picked, refine or upscale")
        chosen = [c for c in chosen if c.path.is_file()]
        if not chosen:
            raise UserError(empty)
        name = f"{run_dir.name}-{which}.zip"
        path = write_zip(app.out / ZIPS / name, run_dir, chosen)
        return {"url": url(path), "name": name, "count": len(chosen)}

    return [_safe(pick), _safe(describe), _safe(zip_pictures)]


def write_zip(path: Path, run_dir: Path, chosen) -> Path:
    """The PNGs as they are on disk (metadata kept), stored without recompression; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
        for shown in chosen:
            try:
                arcname = shown.path.relative_to(run_dir).as_posix()
            except ValueError:
                arcname = shown.path.name
            archive.write(shown.path, arcname)
    tmp.replace(path)
    return path


def _seed(value) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise UserError(f"only candidates with a seed can be picked, not {value!r}") from None


def _find(view, stage: str, rel: str):
    shown = {"explore": view.candidates, "refine": view.refined, "upscale": view.upscaled}.get(stage, [])
    for s in shown:
        if _rel(view.run_dir, s.path) == rel:
            return s
    raise UserError(f"{rel!r} is not a picture of this run")


LABELS = {"model_name": "model", "cached": "from the store", "seconds": "time", "dtype": "precision",
          "parent_key": "parent key", "model_fingerprint": "fingerprint"}


def _text(key: str, value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key == "seconds" and isinstance(value, (int, float)):
        return f"{value:.2f} s"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


# ---------------------------------------------------------------- the component

def build(app, elem_id: str, stage: str, title: str, **props):
    """A grid of ``stage`` pictures; its large view walks through them."""
    import gradio as gr

    return gr.HTML(value=value(None, stage), html_template=TEMPLATE, js_on_load=_asset("viewer.js"),
                   server_functions=server_functions(app), elem_id=elem_id, elem_classes=["pgrid-box"],
                   padding=False, container=False, apply_default_css=False, stage=stage, title=title, **props)
