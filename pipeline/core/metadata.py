"""The one PNG writer: every stage hands it the picture and our record; the texts other programs read are
pure functions of that record (A1111's ``parameters``, its Extras ``postprocessing``/``extras``, ComfyUI's
``prompt``/``workflow``), written beside the record itself (``pipeline``, iTXt).

Which A1111 text a record gets is chosen by ``A1111_TEXTS`` (first match wins; a new stage registers its
own with ``@a1111_text_for``); the ComfyUI graph by ``comfy_graph``'s registries. Imports nothing heavy.
"""
from __future__ import annotations

import io
import json
from typing import Callable

from .images import (A1111_CHUNK, EXTRAS_CHUNK, JSON_CHUNK, POSTPROCESSING_CHUNK, _variance_entries, a1111_cfg,
                     a1111_img2img_strength, a1111_parameters, a1111_postprocessing, a1111_upscaler_name, lora_hashes,
                     lora_tags, quote)

COMFY_PROMPT_CHUNK = "prompt"  # ComfyUI's SaveImage: the API graph
COMFY_WORKFLOW_CHUNK = "workflow"  # and the UI graph

A1111_TEXTS: list[tuple[Callable[[dict], bool], Callable[[dict], str | None]]] = []


def a1111_text_for(applies: Callable[[dict], bool]):
    """Register the A1111 text of the records ``applies`` accepts (registered later: asked first)."""
    def register(fn):
        A1111_TEXTS.insert(0, (applies, fn))
        return fn
    return register


def is_ours(record) -> bool:
    return isinstance(record, dict) and isinstance(record.get("prompt"), str)


def _step(record: dict) -> dict | None:
    step = record.get("upscale")
    return step if isinstance(step, dict) else None


@a1111_text_for(lambda record: is_ours(record))
def _generation_text(record: dict) -> str:
    """A picture we made (an upscale keeps its source's text, as A1111's Extras tab does)."""
    return a1111_parameters({k: v for k, v in record.items() if k != "upscale"})


@a1111_text_for(lambda record: isinstance((_step(record) or {}).get("detail"), dict))
def a1111_detail_text(record: dict) -> str:
    """The text A1111's SD upscale script leaves on its output: the img2img infotext (``Size`` is the tile,
    as its ``p.width``/``p.height`` are) with ``Denoising strength``, ``SD upscale overlap`` and
    ``SD upscale upscaler`` (scripts/sd_upscale.py's ``extra_generation_params``); the LoRAs the pass
    applied as tags and ``Lora hashes``; CFG scale by the project's rule (guidance 0 is CFG 1)."""
    from .. import __version__

    step = _step(record)
    detail = step["detail"]
    tiles = [t for t in detail.get("tiles") or () if isinstance(t, list) and len(t) == 4]
    tile_w, tile_h = (max(t[2] for t in tiles), max(t[3] for t in tiles)) if tiles else (step.get("width"),
                                                                                         step.get("height"))
    loras = _detail_loras(record, detail)
    lines = [_with_tags(str(detail.get("prompt") or ""), loras)]
    steps, strength = int(detail.get("steps") or 8), float(detail.get("strength") or 0.0)
    params = {"seed": detail.get("seed"), "variance": detail.get("variance")}
    settings = [("Steps", steps), ("Sampler", "Euler"), ("Schedule type", "Simple"),
                ("CFG scale", a1111_cfg(detail.get("guidance") or 0.0)), ("Seed", detail.get("seed")),
                ("Size", f"{tile_w}x{tile_h}"), ("Model", detail.get("model_name")),
                ("Denoising strength", a1111_img2img_strength(steps, strength)),
                ("SD upscale overlap", detail.get("overlap")),
                ("SD upscale upscaler", a1111_upscaler_name(step.get("upscaler", ""))), *_variance_entries(params),
                ("ControlNet 0", _detail_control_line(detail, tile_w, tile_h)),
                ("Lora hashes", lora_hashes(loras)), ("Version", f"pipeline {__version__}")]
    lines.append(", ".join(f"{name}: {quote(value)}" for name, value in settings if value not in (None, "")))
    return "\n".join(lines)


def _detail_control_line(detail: dict, tile_w, tile_h) -> str | None:
    """sd-webui-controlnet's unit line for a detail pass drawn with a ControlNet (Tile: each tile its crop)."""
    control = detail.get("control")
    if not isinstance(control, dict):
        return None
    from .control import a1111_line

    return a1111_line({"control": control, "control_name": control.get("model"), "width": tile_w, "height": tile_h})


def _detail_loras(record: dict, detail: dict) -> list[dict]:
    """The LoRAs the detail pass applied (its key's sha256 and weight), named from the source's record."""
    names = {r.get("sha256"): r for r in record.get("loras") or () if isinstance(r, dict)}
    found = []
    for use in detail.get("loras") or ():
        if isinstance(use, dict) and use.get("sha256") in names:
            found.append({**names[use["sha256"]], "weight": use.get("weight", 1.0)})
    return found


def _with_tags(prompt: str, loras) -> str:
    tags = lora_tags(loras)
    return f"{prompt} {tags}" if prompt and tags else (prompt or tags)


def postprocessing_text(record: dict) -> str | None:
    """A plain upscale as A1111's Extras tab writes it (a detail pass is an img2img, not an Extras step)."""
    step = _step(record)
    if step is None or isinstance(step.get("detail"), dict) or not step.get("upscaler"):
        return None
    return a1111_postprocessing({"Postprocess upscale by": step.get("scale"),
                                 "Postprocess upscaler": a1111_upscaler_name(step["upscaler"])})


def a1111_text(record: dict) -> str | None:
    for applies, text in A1111_TEXTS:
        if applies(record):
            return text(record)
    return None


def comfy_texts(record: dict) -> dict[str, str]:
    """ComfyUI's ``prompt`` and ``workflow`` chunks, as its SaveImage writes them (``json.dumps``)."""
    from . import comfy_kinds  # noqa: F401  (registers the builders)
    from .comfy_graph import comfy_prompt
    from .comfy_workflow import comfy_workflow

    prompt = comfy_prompt(record)
    if prompt is None:
        return {}
    return {COMFY_PROMPT_CHUNK: json.dumps(prompt), COMFY_WORKFLOW_CHUNK: json.dumps(comfy_workflow(prompt))}


def png_texts(record: dict, inherited_parameters: str | None = None) -> dict[str, str]:
    """Every text chunk but our record, in writing order. ``inherited_parameters``: the source file's own
    ``parameters`` text, kept when the record is not ours (an upscale of another program's picture)."""
    texts = {}
    parameters = a1111_text(record) or inherited_parameters
    if parameters:
        texts[A1111_CHUNK] = parameters
    extras = postprocessing_text(record)
    if extras:
        texts[POSTPROCESSING_CHUNK] = texts[EXTRAS_CHUNK] = extras
    texts.update(comfy_texts(record))
    return texts


def encode_png(image, record: dict, *, inherited_parameters: str | None = None) -> bytes:
    """PNG bytes: the texts of ``png_texts`` (tEXt) and ``record`` (iTXt). ``record`` must be deterministic
    (no timings): equal inputs give equal bytes."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for name, text in png_texts(record, inherited_parameters).items():
        info.add_text(name, text)
    info.add_itxt(JSON_CHUNK, json.dumps(record, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()
