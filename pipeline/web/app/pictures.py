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
    if shown.stage == "explore" and isinstance(shown.seed, str) and shown.params.get("parent") is not None:
        parts = _vary_command(run_dir, shown, data) + ["--out", q(str(out))]
    elif shown.stage == "explore":
        size = f"{data.get('width')}x{data.get('height')}"
        parts = ["pipeline", "explore", q(str(data.get("prompt", ""))), "--seeds", str(shown.seed), "--size", size,
                 "--steps", str(data.get("steps")), "--guidance", f"{data.get('guidance', 0):g}"]
        if data.get("negative"):
            parts += ["--negative", q(str(data["negative"]))]
        parts += [*_lora_options(data), "--model", q(str(data.get("model", ""))), "--out", q(str(out)),
                  "--run", q(run_dir.name)]
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


def _lora_options(data: dict, records=None) -> list[str]:
    """--lora NAME:WEIGHT for each LoRA the run (or a picture) was made with."""
    records = data.get("loras") if records is None else records
    parts = []
    for record in records if isinstance(records, list) else []:
        if isinstance(record, dict) and record.get("name"):
            parts += ["--lora", shlex.quote(f"{record['name']}:{float(record.get('weight', 1.0)):g}")]
    return parts


def _vary_command(run_dir: Path, shown: Shown, data: dict) -> list[str]:
    """`pipeline vary` making this variation again: its parent, as many of the parent's variations with
    the same settings as it takes to reach this one (those are in the store too), strength and steps."""
    from ...stages.specs import VARY_STRENGTHS

    params = shown.params
    parent, strength, steps = params.get("parent"), params.get("strength"), params.get("steps")
    pictures = (data.get("explore") or {}).get("pictures") or []
    prefix = f"{parent}v"
    same = sorted(int(p["seed"][len(prefix):]) for p in pictures
                  if isinstance(p, dict) and isinstance(p.get("seed"), str) and p["seed"].startswith(prefix)
                  and p["seed"][len(prefix):].isdigit() and p.get("strength") == strength and p.get("steps") == steps)
    number = int(str(shown.seed)[len(prefix):]) if str(shown.seed)[len(prefix):].isdigit() else None
    count = same.index(number) + 1 if number in same else 1
    words = {v: k for k, v in VARY_STRENGTHS.items()}
    parts = ["pipeline", "vary", "--run", shlex.quote(str(run_dir)), "--seeds", str(parent), "--count", str(count)]
    if strength is not None:
        parts += ["--strength", words.get(strength, f"{float(strength):g}")]
    if steps is not None:
        parts += ["--steps", str(steps)]
    return parts


def params(shown: Shown, data: dict) -> dict:
    """What the picture panel lists (shown as JSON text, never as HTML)."""
    base = {k: data.get(k) for k in ("prompt", "negative", "model_name", "width", "height", "steps", "guidance")
            if data.get(k) not in (None, "")}
    records = shown.params.get("loras") if isinstance(shown.params.get("loras"), list) else data.get("loras")
    names = [f"{r['name']} {float(r.get('weight', 1.0)):g}" for r in records or [] if isinstance(r, dict) and r.get("name")]
    if names:  # the large view says which LoRAs made the picture
        base["loras"] = ", ".join(names)
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
