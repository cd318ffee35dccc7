"""`pipeline show IMAGE`: the generation parameters a picture carries."""
from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import UserError
from .common import print_json, user_errors


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def safe(value) -> str:
    """Text from a file, made safe to print on a terminal: carriage returns, escape sequences,
    other control characters and bidi overrides (which could hide or reorder what is shown) are
    printed as escapes (``\\r``, ``\\x1b``, ``\\u202e``); newlines and tabs stay."""
    import unicodedata

    text = str(value)
    if not any(c in _BIDI or (unicodedata.category(c) in ("Cc", "Zl", "Zp") and c not in "\n\t")
               for c in text):
        return text
    out = []
    for c in text:
        if c in "\n\t" or not (c in _BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp")):
            out.append(c)
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the full record as JSON")
@user_errors
def show(image, as_json):
    """Print the parameters stored in IMAGE (ours or A1111's)."""
    from ..core.images import read_info

    info = read_info(image)
    if as_json:
        print_json(info["pipeline"] or {"parameters": info["parameters"]})
        return
    if not info["parameters"] and not info["pipeline"] and not info.get("postprocessing"):
        raise UserError(f"{image} carries no generation parameters")
    record = dict(info["pipeline"] or {})
    step = record.pop("upscale", None)
    detail = isinstance(step, dict) and isinstance(step.get("detail"), dict)
    if isinstance(step, dict) or info.get("postprocessing"):
        _show_upscale(info, step if isinstance(step, dict) else {})
        if detail and info["parameters"]:  # the text is the detail pass's, not the source's
            click.echo("  detail pass, as A1111's SD upscale writes it:")
            click.echo(safe(info["parameters"]))
        click.echo("")
        what = f"{record['kind']} picture" if record.get("kind") else "the original picture"
        size = f", {record['width']}x{record['height']}" if record.get("width") and record.get("height") else ""
        key = f", key {record['key'][:12]}" if record.get("key") else ""
        click.echo(safe(f"made from: {what}{size}{key}"))
    if info["parameters"] and not detail:
        click.echo(safe(info["parameters"]))
    loras = record.pop("loras", None)
    control, control_name = record.pop("control", None), record.pop("control_name", None)
    if record:
        click.echo("")
        for name in sorted(record):
            click.echo(safe(f"{name}: {record[name]}"))
    _show_comfyui(info.get("comfyui"))
    if isinstance(loras, list) and loras:
        click.echo("loras:")
        for lora in loras:
            if isinstance(lora, dict):
                click.echo(safe(f"  {lora.get('name', '?')}  weight {lora.get('weight', '?')}  "
                                f"sha256 {lora.get('sha256', '?')}"))
    if isinstance(control, dict):
        click.echo(safe(f"control: {control.get('type', '?')}, strength {control.get('strength', '?')} over "
                        f"{control.get('start', 0.0)}–{control.get('end', 1.0)} of the steps, ControlNet "
                        f"{control_name or control.get('model', '?')}"))
        digest = str(control.get("map", ""))
        click.echo(safe(f"  map sha256 {digest} (kept in the run as control/{digest[:16]}.png)"))


def _show_comfyui(chunks) -> None:
    """Whether the picture carries a ComfyUI graph (ComfyUI loads it when the PNG is dropped on it)."""
    import json

    if not isinstance(chunks, dict) or "prompt" not in chunks:
        return
    try:
        graph = json.loads(chunks["prompt"])
    except ValueError:
        graph = None
    if not isinstance(graph, dict):
        return
    classes = [n.get("class_type") for n in graph.values() if isinstance(n, dict)]
    ui = " and its workflow (UI graph)" if "workflow" in chunks else ""
    click.echo(safe(f"ComfyUI graph: {len(classes)} nodes{ui}; drop the picture on ComfyUI to load it"))


def _show_upscale(info: dict, step: dict) -> None:
    """What an upscaled file is: its stage, its own size and key, how it was upscaled."""
    width, height = info["size"]
    key = f", key {step['key'][:12]}" if step.get("key") else ""
    click.echo(f"upscaled picture: {width}x{height}{key}")
    if step:
        scale = step.get("scale")
        line = f"  upscaler: {step.get('upscaler', '?')}"
        line += f", x{scale:g}" if isinstance(scale, (int, float)) else ""
        line += f", {step['precision']}" if step.get("precision") else ""
        tile, overlap = step.get("tile"), step.get("overlap")
        if tile == 0:
            line += ", whole image at once"
        elif isinstance(tile, int) and tile > 0:
            line += f", tiles of {tile} px sharing {overlap} px"
        click.echo(safe(line))
        detail = step.get("detail")
        if isinstance(detail, dict):
            tiles = detail.get("tiles") if isinstance(detail.get("tiles"), list) else []
            click.echo(safe(f"  detail: strength {detail.get('strength')}, {detail.get('model_name', '?')}, "
                            f"{detail.get('steps')} steps, seed {detail.get('seed')}, "
                            f"{len(tiles)} tile{'s' if len(tiles) != 1 else ''} of at most {detail.get('tile')} px "
                            f"sharing {detail.get('overlap')} px"))
    if info.get("postprocessing"):
        click.echo(safe(f"  postprocessing (A1111 Extras): {info['postprocessing']}"))
    if info.get("extras"):
        click.echo(safe(f"  extras (A1111 Extras): {info['extras']}"))
