"""PNG metadata (A1111-style ``parameters`` plus our JSON record) and contact sheets."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

from .errors import UserError

JSON_CHUNK = "pipeline"
A1111_CHUNK = "parameters"


def _fmt_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def a1111_parameters(params: dict) -> str:
    """The text A1111's PNG Info reads: prompt, ``Negative prompt:`` line, settings line."""
    lines = [params.get("prompt", "")]
    if params.get("negative"):
        lines.append(f"Negative prompt: {params['negative']}")
    settings = [
        ("Steps", params.get("steps")),
        ("Sampler", "Euler"),
        ("Schedule type", "Simple"),
        ("CFG scale", params.get("guidance")),
        ("Seed", params.get("seed")),
        ("Size", f"{params.get('width')}x{params.get('height')}" if params.get("width") else None),
        ("Model", params.get("model_name")),
        *_variance_entries(params),
        ("Denoising strength", params.get("strength") if params.get("mode") == "hires" else None),
        ("Hires upscaler", params.get("enlarge") if params.get("mode") == "hires" else None),
        ("Upscaler", params.get("upscaler")),
        ("Version", params.get("version")),
    ]
    lines.append(", ".join(f"{name}: {_fmt_number(value)}" for name, value in settings if value not in (None, "")))
    return "\n".join(lines)


def _variance_entries(params: dict) -> list:
    """--variance as A1111-style entries (none when it is off)."""
    variance = params.get("variance")
    if not isinstance(variance, dict):
        return []
    seed = variance.get("seed")
    return [("Variance", variance.get("strength")), ("Variance share", variance.get("share")),
            ("Variance steps", variance.get("steps")),
            ("Variance seed", seed if seed != params.get("seed") else None)]  # a variation keeps its parent's


def _parse_variance(result: dict, parsed: dict) -> None:
    try:
        variance = {"strength": float(result["Variance"]), "share": float(result.get("Variance share", 0.5)),
                    "steps": float(result.get("Variance steps", 0.2))}
        variance["seed"] = int(result.get("Variance seed", parsed["seed"]))
    except (KeyError, ValueError):
        return
    parsed["variance"] = variance


def parse_a1111(text: str) -> dict:
    """Parse an A1111 ``parameters`` text into prompt, negative and the settings."""
    lines = text.strip("\n").split("\n")
    settings_line = ""
    if lines and re.search(r"(^|, )Steps: ", lines[-1]):
        settings_line = lines.pop()
    prompt_lines, negative_lines, target = [], [], None
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:"):].strip()
        (target if target is not None else prompt_lines).append(line)
    result = {"prompt": "\n".join(prompt_lines).strip(), "negative": "\n".join(negative_lines).strip()}
    for name, value in re.findall(r'\s*([\w ()\-]+):\s*("(?:\\.|[^"])*"|[^,]*)(?:,|$)', settings_line):
        result[name.strip()] = value.strip()
    parsed = {"prompt": result["prompt"], "negative": result["negative"]}
    for name, key, kind in (("Steps", "steps", int), ("CFG scale", "guidance", float), ("Seed", "seed", int),
                            ("Denoising strength", "strength", float)):
        if name in result:
            try:
                parsed[key] = kind(result[name])
            except ValueError:
                pass
    if "Variance" in result:
        _parse_variance(result, parsed)
    if "Size" in result and re.fullmatch(r"\d+x\d+", result["Size"]):
        parsed["width"], parsed["height"] = (int(v) for v in result["Size"].split("x"))
    if "Model" in result:
        parsed["model_name"] = result["Model"]
    return parsed


def encode_png(image, params: dict) -> bytes:
    """PNG bytes with the A1111 ``parameters`` chunk and the full JSON record.

    ``params`` must be deterministic (no timings): equal inputs give equal bytes.
    """
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(A1111_CHUNK, a1111_parameters(params))
    info.add_itxt(JSON_CHUNK, json.dumps(params, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def read_info(path: Path) -> dict:
    """Metadata of an image: {'parameters': str|None, 'pipeline': dict|None, 'size': (w, h)}."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                text = dict(getattr(image, "text", None) or image.info)
                size = image.size
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise UserError(f"{path} has too many pixels to be safe to decode "
                        f"(more than {Image.MAX_IMAGE_PIXELS} pixels)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise UserError(f"{path} is not a readable image ({err})") from None
    record = None
    if isinstance(text.get(JSON_CHUNK), str):
        try:
            record = json.loads(text[JSON_CHUNK])
        except ValueError:
            record = None
    parameters = text.get(A1111_CHUNK) if isinstance(text.get(A1111_CHUNK), str) else None
    return {"parameters": parameters, "pipeline": record, "size": size}


def contact_sheet(items: list[tuple[str, Path]], thumb: int = 160, columns: int | None = None):
    """A grid of thumbnails, each labelled (e.g. with its seed). Returns a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    if not items:
        raise ValueError("contact sheet needs at least one image")
    columns = columns or min(8, max(1, round(len(items) ** 0.5 + 0.49)))
    rows = (len(items) + columns - 1) // columns
    label_h, pad = 18, 4
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (label, path) in enumerate(items):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
        x = pad + (index % columns) * cell_w
        y = pad + (index // columns) * cell_h
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        draw.text((x + 2, y + thumb + 3), label, fill=(235, 235, 235), font=font)
    return sheet
