"""A run as the app shows it: the gallery's pictures and thumbnails, picks, parameters and the CLI
command that reproduces a picture. Reuses the static gallery's reading of run.json and its thumbnails.
Imports no gradio and no torch."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from ...core.runs import load_picks, load_run
from ..gallery import collect
from ..thumbs import Thumbs


@dataclass
class Shown:
    stage: str
    seed: int | None
    path: Path
    thumb: Path | None
    size: tuple[int, int] | None
    params: dict = field(default_factory=dict)


@dataclass
class RunView:
    run_dir: Path
    data: dict
    candidates: list[Shown]
    refined: list[Shown]
    upscaled: list[Shown]
    picks: list[int]


def _shown(run_dir: Path, picture) -> Shown:
    thumb = run_dir / unquote(picture.thumb) if picture.thumb else None
    return Shown(picture.stage, picture.seed, run_dir / unquote(picture.path), thumb, picture.size, picture.params)


def view(run_dir: Path) -> RunView:
    """Everything a run holds, with thumbnails made (once) by the gallery's own code."""
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    thumbs = Thumbs(run_dir)
    groups, others = collect(run_dir, data, thumbs)
    candidates, refined, upscaled = [], [], []
    for group in groups:
        candidates.append(_shown(run_dir, group["candidate"]))
        for picture in group["results"]:
            (refined if picture.stage == "refine" else upscaled).append(_shown(run_dir, picture))
    for picture in others:
        (refined if picture.stage == "refine" else upscaled).append(_shown(run_dir, picture))
    return RunView(run_dir, data, candidates, refined, upscaled, load_picks(run_dir))


def thumb_of(run_dir: Path, stage: str, item) -> Path:
    """The gallery's thumbnail of one just-stored picture (an ``Item``), or the picture itself."""
    url, _ = Thumbs(Path(run_dir)).get(Path(item.path), stage, item.seed, item.key)
    return Path(run_dir) / unquote(url) if url else Path(item.path)


def caption(seed, picks=(), label: str = "") -> str:
    text = str(seed) if seed is not None else "picture"  # the seed: short enough for a thumbnail
    if label:
        text += f" · {label}"
    return f"✓ {text}" if seed in picks else text


def command(out: Path, run_dir: Path, shown: Shown, data: dict) -> str:
    """The CLI command that makes this picture again (from the store, so instantly)."""
    q = shlex.quote
    if shown.stage == "explore":
        size = f"{data.get('width')}x{data.get('height')}"
        parts = ["pipeline", "explore", q(str(data.get("prompt", ""))), "--seeds", str(shown.seed), "--size", size,
                 "--steps", str(data.get("steps")), "--guidance", f"{data.get('guidance', 0):g}"]
        if data.get("negative"):
            parts += ["--negative", q(str(data["negative"]))]
        parts += ["--model", q(str(data.get("model", ""))), "--out", q(str(out)), "--run", q(run_dir.name)]
    elif shown.stage == "refine":
        params = shown.params
        parts = ["pipeline", "refine", "--run", q(str(run_dir)), "--seeds", str(shown.seed)]
        if shown.size:
            parts += ["--size", f"{shown.size[0]}x{shown.size[1]}"]
        for key in ("mode", "strength", "steps"):
            if params.get(key) is not None:
                parts += [f"--{key}", str(params[key])]
        parts += ["--out", q(str(out))]
    else:
        parts = ["pipeline", "upscale", "--run", q(str(run_dir)), "--seeds", str(shown.seed)]
        upscaler = shown.params.get("upscaler") or shown.params.get("model")  # run.json's name; older runs: model
        if upscaler:
            parts += ["--upscaler", q(str(upscaler))]
        if shown.params.get("detail"):  # a Detail upscale: its strength and tile, as recorded
            parts += ["--detail", f"{float(shown.params['detail']):g}"]
            if shown.params.get("detail_tile"):
                parts += ["--detail-tile", str(int(shown.params["detail_tile"]))]
        parts += ["--out", q(str(out))]
    return " ".join(parts)


def params(shown: Shown, data: dict) -> dict:
    """What the picture panel lists (shown as JSON text, never as HTML)."""
    base = {k: data.get(k) for k in ("prompt", "negative", "model_name", "width", "height", "steps", "guidance")
            if data.get(k) not in (None, "")}
    return {"stage": shown.stage, "seed": shown.seed, "file": str(shown.path),
            "size": f"{shown.size[0]}×{shown.size[1]}" if shown.size else None, **base,
            **{k: v for k, v in shown.params.items() if k not in ("path", "key", "seed")}}


def result_json(result) -> dict:
    """A stage result for the page and API clients. No "path" keys: gradio_client would take those
    for files to download."""
    data = result.to_json()
    data["items"] = [{"seed": i.seed, "file": str(i.path), "key": i.key, "cached": i.cached, "seconds": i.seconds}
                     for i in result.items]
    return data
