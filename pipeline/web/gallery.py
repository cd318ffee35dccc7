"""The gallery: ``RUN/index.html``, a self-contained page to look at a run and pick seeds.

Every stage rewrites it from ``run.json``. The page needs no server, no network and no
external files besides the run's own pictures: styles and script are inlined, thumbnails
(256-px WebP, thumbs.py) live in ``RUN/thumbs/``, full pictures load only when enlarged.

Every user text is escaped (HTML text and attributes with ``html.escape``, the embedded
JSON with ``<``, ``>``, ``&``, U+2028 and U+2029 as ``\\uXXXX``), and a Content Security Policy
allows only the page's own inline script (by hash), so a hostile prompt stays text.

Imports no torch.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from ..core import registry
from ..core.runs import PICKS_FILE, load_picks, load_run, resolve_run, stage_pictures
from ..core.store import atomic_write, write_error
from .thumbs import THUMB_SIZE, Thumbs

log = logging.getLogger("pipeline")

PAGE = "index.html"
STAGE_LABELS = {"explore": "candidate", "refine": "refined", "upscale": "upscaled"}
RUN_FIELDS = ("prompt", "negative", "model", "model_name", "width", "height", "steps", "guidance", "dtype",
              "model_fingerprint", "created")


@dataclass
class Picture:
    """One picture on the page: where it is, its thumbnail, and the parameters shown on enlarge."""

    stage: str
    seed: int | None
    path: str  # URL relative to the page
    thumb: str | None  # URL relative to the page, None when the picture cannot be read
    size: tuple[int, int] | None
    params: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        text = STAGE_LABELS.get(self.stage, self.stage)
        scale = self.params.get("scale")
        if self.stage == "upscale" and scale:
            text += f" ×{scale:g}" if isinstance(scale, (int, float)) else f" ×{scale}"
        if self.stage == "upscale" and isinstance(self.params.get("detail"), (int, float)):
            text += f" + detail {self.params['detail']:g}"
        if self.size:
            text += f" · {self.size[0]}×{self.size[1]}"
        return text

    @property
    def short_label(self) -> str:
        """Under a small thumbnail next to its candidate: the size, or the scale of an upscale."""
        scale = self.params.get("scale")
        if self.stage == "upscale" and isinstance(scale, (int, float)):
            return f"×{scale:g}"
        if self.size:
            return f"{self.size[0]}×{self.size[1]}"
        return STAGE_LABELS.get(self.stage, self.stage)

    def to_json(self) -> dict:
        """For the page's script. Seeds are strings: JavaScript numbers lose digits above 2**53."""
        params = {k: str(v) if k == "seed" or _big(v) else v for k, v in self.params.items()}
        return {"stage": self.stage, "label": self.label, "seed": None if self.seed is None else str(self.seed),
                "path": self.path, "thumb": self.thumb, "size": list(self.size) if self.size else None,
                "params": params}


def _shown(value) -> bool:
    return isinstance(value, (str, int, float, bool)) and value != ""


def _big(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53


# ---------------------------------------------------------------- public entry points

def write_gallery(run_dir: Path, data: dict | None = None) -> Path:
    """(Re)write ``RUN/index.html`` and its thumbnails from run.json; return the page's path."""
    run_dir = Path(run_dir)
    if data is None:
        data = load_run(run_dir)
    thumbs = Thumbs(run_dir)
    groups, others = collect(run_dir, data, thumbs)
    page = render_page(run_dir, data, groups, others)
    path = run_dir / PAGE
    try:
        atomic_write(path, page.encode("utf-8"))
    except OSError as err:
        raise write_error(path, err) from err
    thumbs.prune()
    return path


def build_gallery(out: Path, run: str | Path | None = None) -> Path:
    """The gallery of run ``run`` (a path or a name in ``out``; the latest run when None)."""
    return write_gallery(resolve_run(Path(out), run))


# ---------------------------------------------------------------- run.json -> pictures

def stage_items(data: dict, stage: str) -> list[dict]:
    """The recorded pictures of a stage that name a file."""
    return [item for item in stage_pictures(data, stage) if isinstance(item.get("path"), str)]


def _seed_of(item: dict) -> int | str | None:
    """The picture's seed, or its variation id (42v3, made by `pipeline vary`); None when it has neither."""
    from ..core.seeds import pick_order

    seed = item.get("seed")
    if isinstance(seed, str):
        return seed if pick_order(seed)[0] == 0 and "v" in seed else None
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def collect(run_dir: Path, data: dict, thumbs: "Thumbs") -> tuple[list[dict], list[Picture]]:
    """Candidates in seed order, each with its refined/upscaled pictures; plus pictures without a candidate."""
    groups: list[dict] = []
    by_seed: dict[int, dict] = {}
    for item in stage_items(data, "explore"):
        seed = _seed_of(item)
        group = {"seed": seed, "candidate": _picture(run_dir, "explore", item, _scalars(item), thumbs), "results": []}
        groups.append(group)
        if seed is not None:
            by_seed.setdefault(seed, group)
    others: list[Picture] = []
    for stage in registry.result_sections():
        for item in stage_items(data, stage):
            picture = _picture(run_dir, stage, item, _scalars(item), thumbs)
            seed = _seed_of(item)
            if seed is not None and seed in by_seed:
                by_seed[seed]["results"].append(picture)
            else:
                others.append(picture)
    return groups, others


def _scalars(item: dict) -> dict:
    return {k: v for k, v in item.items() if isinstance(v, (str, int, float, bool)) or v is None}


def _picture(run_dir: Path, stage: str, item: dict, params: dict, thumbs: "Thumbs") -> Picture:
    source = Path(item["path"])
    if not source.is_absolute():
        source = run_dir / source
    thumb, size = thumbs.get(source, stage, _seed_of(item), item.get("key"))
    return Picture(stage, _seed_of(item), page_url(run_dir, source), thumb, size, params)


def page_url(run_dir: Path, path: Path) -> str:
    """A URL for ``path`` relative to the page (percent-encoded, so never a scheme)."""
    try:
        rel = Path(os.path.relpath(path, run_dir)).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_uri()
    return quote(rel, safe="/")


# ---------------------------------------------------------------- rendering

def _asset(name: str) -> str:
    return resources.files("pipeline.web").joinpath("assets", name).read_text(encoding="utf-8")


def script_json(value) -> str:
    """JSON safe inside a <script> element: no ``</script>``, ``<!--``, or JS line terminators."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_page(run_dir: Path, data: dict, groups: list[dict], others: list[Picture]) -> str:
    run_dir = Path(run_dir)
    name = run_dir.resolve().name
    page_data = {
        "run": {"name": name, "dir": str(run_dir.resolve()),
                "params": {**{k: data[k] for k in RUN_FIELDS if _shown(data.get(k))}, **_lora_param(data)}},
        "groups": [{"seed": None if g["seed"] is None else str(g["seed"]), "candidate": g["candidate"].to_json(),
                    "results": [p.to_json() for p in g["results"]]} for g in groups],
        "others": [p.to_json() for p in others],
        # the picks saved with the run (by the browser app) win over this browser's localStorage
        "picks": [str(seed) for seed in load_picks(run_dir)] if (run_dir / PICKS_FILE).is_file() else None,
    }
    style, script = _asset("gallery.css"), _asset("gallery.js")
    csp = ("default-src 'none'; img-src 'self' file: data: blob:; "
           f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; base-uri 'none'; form-action 'none'")
    prompt = data.get("prompt") or ""
    title = f"{prompt[:80]}{'…' if len(prompt) > 80 else ''} · pipeline"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{_e(title)}</title>",
        f"<style>{style}</style>",
        "</head><body>",
        _header(name, data, groups),
        _grid(groups),
        _others(others),
        _bar(),
        _lightbox(),
        f'<script type="application/json" id="gallery-data">{script_json(page_data)}</script>',
        f"<script>{script}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _lora_param(data: dict) -> dict:
    """The run's LoRAs as one shown value (``style 0.8, ink 1``); nothing when it has none."""
    from ..core.images import lora_label

    label = lora_label(data.get("loras")) if isinstance(data.get("loras"), list) else ""
    return {"loras": label} if label else {}


def _header(name: str, data: dict, groups: list[dict]) -> str:
    params = []
    if data.get("width") and data.get("height"):
        params.append(("size", f"{data['width']}×{data['height']}"))
    for key, label in (("steps", "steps"), ("guidance", "guidance"), ("dtype", "precision")):
        if data.get(key) is not None:
            params.append((label, _fmt(data[key])))
    variance = data.get("variance")
    if isinstance(variance, dict) and variance.get("strength"):
        params.append(("variance", f"{_fmt(variance['strength'])} (share {_fmt(variance.get('share'))}, "
                                   f"steps {_fmt(variance.get('steps'))})"))
    if data.get("model_name") or data.get("model"):
        params.append(("model", data.get("model_name") or data.get("model")))
    if _lora_param(data):
        params.append(("LoRA", _lora_param(data)["loras"]))
    params.append(("candidates", str(len(groups))))
    refined = sum(any(p.stage == "refine" for p in g["results"]) for g in groups)
    if refined:
        params.append(("refined", str(refined)))
    if data.get("created"):
        params.append(("created", str(data["created"]).replace("T", " ")[:19]))
    chips = "".join(f'<li><span class="k">{_e(k)}</span> <span class="v">{_e(v)}</span></li>' for k, v in params)
    negative = data.get("negative") or ""
    neg = f'<p class="negative"><span class="k">negative</span> {_e(negative)}</p>' if negative else ""
    return (f'<header class="top"><div class="brand">pipeline <span class="run">{_e(name)}</span></div>'
            f'<h1 class="prompt">{_e(data.get("prompt") or "(no prompt)")}</h1>{neg}'
            f'<ul class="params">{chips}</ul>'
            '<p class="help">Click a picture to pick it · <kbd>←</kbd><kbd>→</kbd><kbd>↑</kbd><kbd>↓</kbd> move · '
            '<kbd>Space</kbd> pick · <kbd>Enter</kbd> enlarge · <kbd>Esc</kbd> close</p></header>')


def _thumb_img(picture: Picture, css: str, alt: str) -> str:
    if not picture.thumb:
        return f'<div class="{css} missing" role="img" aria-label="{_e(alt)} (missing)">missing</div>'
    width, height = picture.size or (THUMB_SIZE, THUMB_SIZE)
    scale = min(1.0, THUMB_SIZE / max(width, height))
    return (f'<img class="{css}" src="{_e(picture.thumb)}" alt="{_e(alt)}" loading="lazy" decoding="async" '
            f'width="{max(1, round(width * scale))}" height="{max(1, round(height * scale))}">')


def _grid(groups: list[dict]) -> str:
    if not groups:
        return '<main class="empty"><p>This run has no candidates yet.</p></main>'
    cards = []
    for index, group in enumerate(groups):
        candidate: Picture = group["candidate"]
        seed = group["seed"]
        label = (f"seed {seed}" if isinstance(seed, int) else f"variation {seed}" if seed is not None
                 else "candidate")
        results = "".join(
            f'<button type="button" class="result" data-group="{index}" data-result="{n}" tabindex="-1" '
            f'title="{_e(p.label)} (enlarge)">{_thumb_img(p, "rthumb", p.label)}<span>{_e(p.short_label)}'
            f"</span></button>"
            for n, p in enumerate(group["results"])
        )
        badges = "".join(f'<span class="badge {_e(stage)}">{_e(STAGE_LABELS[stage])}</span>'
                         for stage in registry.result_sections() if any(p.stage == stage for p in group["results"]))
        cards.append(
            f'<div class="card" role="checkbox" aria-checked="false" tabindex="{0 if index == 0 else -1}" '
            f'data-index="{index}" data-seed="{_e(seed)}" aria-label="{_e(label)}">'
            f'<div class="frame">{_thumb_img(candidate, "thumb", label)}<span class="check" aria-hidden="true">✓</span>'
            f'<button type="button" class="zoom" tabindex="-1" title="enlarge (Enter)" aria-label="enlarge {_e(label)}">'
            f"⤢</button></div>"
            f'<div class="meta"><span class="seed">{_e(label)}</span>{badges}</div>'
            + (f'<div class="results">{results}</div>' if results else "") + "</div>")
    return f'<main class="grid" id="grid">{"".join(cards)}</main>'


def _others(others: list[Picture]) -> str:
    if not others:
        return ""
    items = "".join(
        f'<button type="button" class="other" data-other="{n}" title="{_e(p.label)}">'
        f'{_thumb_img(p, "rthumb", p.label)}<span>{_e(p.label)}</span></button>' for n, p in enumerate(others))
    return f'<section class="others"><h2>Other pictures of this run</h2><div class="olist">{items}</div></section>'


def _bar() -> str:
    return ('<footer class="bar" id="bar"><div class="count" id="count">Nothing picked yet</div>'
            '<div class="snips"><div class="snip"><code id="cmd" class="cmd">Pick the candidates you like; '
            'the refine command appears here.</code><button type="button" id="copy-cmd" class="copy" disabled>'
            'Copy command</button></div>'
            '<div class="snip"><pre id="cfg" class="cfg"></pre><button type="button" id="copy-cfg" class="copy" '
            'disabled>Copy config</button></div></div>'
            '<button type="button" id="clear" class="clear" disabled>Clear</button>'
            '<div class="toast" id="toast" role="status" aria-live="polite"></div></footer>')


def _lightbox() -> str:
    return ('<div class="lightbox" id="lightbox" role="dialog" aria-modal="true" aria-label="picture" hidden>'
            '<div class="stage"><img id="lb-img" alt=""><div class="lb-loading" id="lb-loading">loading…</div></div>'
            '<aside class="side"><div class="lb-head"><h2 id="lb-title"></h2>'
            '<button type="button" class="close" id="lb-close" aria-label="close (Esc)">✕</button></div>'
            '<div class="tabs" id="lb-tabs"></div>'
            '<button type="button" class="pick" id="lb-pick">Pick</button>'
            '<table class="kv" id="lb-params"></table>'
            '<a id="lb-open" class="open" target="_blank" rel="noopener noreferrer">open the full-size file</a>'
            '<p class="lb-help"><kbd>←</kbd><kbd>→</kbd> previous / next · <kbd>Space</kbd> pick · '
            '<kbd>Esc</kbd> close</p></aside>'
            '<button type="button" class="nav prev" id="lb-prev" aria-label="previous">‹</button>'
            '<button type="button" class="nav next" id="lb-next" aria-label="next">›</button></div>')
