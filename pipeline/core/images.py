"""PNG metadata (A1111-style ``parameters`` plus our JSON record) and contact sheets."""
from __future__ import annotations

import json
import re
from pathlib import Path

from .lora_text import (  # noqa: F401
    lora_hashes,
    lora_label,
    lora_tags,
    parse_lora_hashes,
    split_lora_tags,
)

JSON_CHUNK = "pipeline"
A1111_CHUNK = "parameters"
POSTPROCESSING_CHUNK = "postprocessing"  # A1111's Extras tab: what was done to the picture after generation
EXTRAS_CHUNK = "extras"  # the same text again, under the section name A1111's Extras tab saves with


# AUTOMATIC1111's names for the enlargers refine's hires mode can use (its "Hires upscaler" list).
A1111_UPSCALERS = {"lanczos": "Lanczos", "realesrgan-x4plus": "R-ESRGAN 4x+",
                   "realesrgan-x4plus-anime": "R-ESRGAN 4x+ Anime6B", "realesr-animevideov3": "R-ESRGAN AnimeVideo"}
# A1111's settings-line pattern (modules/infotext_utils.py, ``re_param_code``): ``Name: value`` where a
# value is either JSON-quoted or runs to the next comma.
A1111_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")


def _fmt_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def quote(value) -> str:
    """A settings value as A1111's ``quote()`` writes it: JSON-quoted when it holds ``,``, ``:`` or a newline;
    also (where A1111's own writer does not, and its reader then mangles the line) when it starts with ``"``
    (read as the start of a quoted value running to the next ``"``) or with white space (eaten by the reader)."""
    text = _fmt_number(value)
    if "," not in text and "\n" not in text and ":" not in text and not text.startswith('"') \
            and not text[:1].isspace():
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    """A1111's ``unquote()``: a JSON-quoted value decoded, anything else as it is."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def a1111_upscaler_name(enlarge: str) -> str:
    """``lanczos`` / ``<weights>@<digest>`` (refine's key) as A1111 names the upscaler."""
    name = str(enlarge).split("@", 1)[0]
    return A1111_UPSCALERS.get(name.lower(), name)


def a1111_cfg(guidance) -> float | None:
    """Our guidance as A1111's (and ComfyUI's) ``CFG scale``: diffusers' Z-Image guides with
    ``pos + g·(pos − neg)``, A1111 with ``neg + s·(pos − neg)``, so s = g + 1 (guidance 0, no CFG, is CFG 1)."""
    if guidance is None:
        return None
    return round(float(guidance) + 1.0, 6)


def img2img_steps_run(steps: int, strength: float) -> int:
    """How many steps an image-to-image pass runs: diffusers skips ``int(steps − steps × strength)`` of the
    ``steps``-step schedule and runs the rest (8 steps at 0.5: the last 4; at 0.3: the last 3)."""
    skipped = int(max(steps - min(steps * strength, steps), 0))
    return steps - skipped


def a1111_img2img_strength(steps: int, strength: float) -> float:
    """The ``Denoising strength`` that makes A1111's img2img run what we ran: we run the last
    ``img2img_steps_run`` steps of the ``steps``-step schedule; A1111 (``setup_img2img_steps``, without
    "img2img_fix_steps") runs ``int(strength × steps) + 1`` steps from ``sigmas[steps − that]``, so it needs
    ``int(strength × steps)`` = ran − 1. Our strength when it already gives that, else the largest
    two-decimal value that does (8 steps at 0.5: 0.49, where 0.5 would run 5 steps from σ 0.83)."""
    ran = img2img_steps_run(steps, strength)
    if int(min(strength, 0.999) * steps) == ran - 1:
        return strength
    for digits in (2, 3, 4, 6):
        scale = 10 ** digits
        value = (int(ran / steps * scale) - 1) / scale
        while value > 0 and int(min(value, 0.999) * steps) > ran - 1:
            value = round(value - 1 / scale, digits)
        if value > 0 and int(min(value, 0.999) * steps) == ran - 1:
            return round(value, digits)
    return strength


def a1111_hires_scale(first: tuple[int, int], target: tuple[int, int]) -> float | None:
    """The ``Hires upscale`` that takes the first pass exactly to ``target`` in A1111 (it computes
    ``int(side × scale)``, and its slider runs 1–4); None when only ``Hires resize`` can say it."""
    scale = round(target[0] / first[0], 6)
    if not 1 <= scale <= 4:
        return None
    exact = int(first[0] * scale) == target[0] and int(first[1] * scale) == target[1]
    return scale if exact else None


def a1111_hires_crop(first: tuple[int, int], target: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """What A1111's hires fix does for ``Hires resize`` to ``target``, in pixels: ``calculate_target_resolution``
    enlarges the first pass to the size returned first (its own aspect, covering the target), and
    ``sample_hr_pass`` cuts the target out of the latent at the offset returned second (``truncate_x // 2`` latent
    columns on the left, ``truncate_y // 2`` rows on top, 8 pixels each)."""
    (width, height), (target_w, target_h) = first, target
    if width / height < target_w / target_h:
        upscale_to = (target_w, target_w * height // width)
    else:
        upscale_to = (target_h * width // height, target_h)
    truncate_x, truncate_y = (upscale_to[0] - target_w) // 8, (upscale_to[1] - target_h) // 8
    return upscale_to, (truncate_x // 2 * 8, truncate_y // 2 * 8)


def _hires_settings(params: dict, first: dict) -> list[tuple[str, object]]:
    """A hires refine of our own txt2img candidate as A1111's hires fix: ``Size`` and the first line's
    Steps/CFG are the first pass (the candidate), then how it was enlarged and the second pass where it
    differs (``Hires steps`` is what the pass ran: A1111 runs exactly that many in its hires pass)."""
    width, height = params.get("width"), params.get("height")
    strength = params.get("strength")
    settings: list[tuple[str, object]] = [("Size", f"{first['width']}x{first['height']}"),
                                          ("Model", params.get("model_name")), ("Denoising strength", strength)]
    scale = a1111_hires_scale((first["width"], first["height"]), (width, height))
    settings.append(("Hires upscale", scale) if scale else ("Hires resize", f"{width}x{height}"))
    ran = img2img_steps_run(int(params.get("steps") or 0), float(strength or 0))
    if ran != first.get("steps"):
        settings.append(("Hires steps", ran))
    settings.append(("Hires upscaler", a1111_upscaler_name(params.get("enlarge") or "lanczos")))
    if params.get("guidance") != first.get("guidance"):
        settings.append(("Hires CFG Scale", a1111_cfg(params.get("guidance"))))  # Forge's key; A1111 has none
    if params.get("negative") and params.get("negative") != first.get("negative"):
        settings.append(("Hires negative prompt", params["negative"]))
    return settings


def _img2img_settings(params: dict) -> list[tuple[str, object]]:
    """An image-to-image pass as A1111's img2img writes it: ``Size`` is the result, ``Denoising strength``,
    no Hires keys. The init image is the parent, resized to ``Size`` (A1111's default "Just resize")."""
    settings: list[tuple[str, object]] = [("Size", f"{params.get('width')}x{params.get('height')}"),
                                          ("Model", params.get("model_name")),
                                          ("Denoising strength", _img2img_strength(params))]
    if params.get("enlarge"):  # A1111's setting of that name (it writes no infotext for it): ours
        settings.append(("Upscaler for img2img", a1111_upscaler_name(params["enlarge"])))
    if params.get("kind") == "vary":
        from .seeds import pick_parent

        variation = params.get("variation")
        settings += [("Vary parent", pick_parent(variation) if isinstance(variation, str) else None),
                     ("Vary parent seed", params.get("parent_seed"))]
    return settings


def _img2img_strength(params: dict):
    strength = params.get("strength")
    if not isinstance(strength, (int, float)) or not isinstance(params.get("steps"), int):
        return strength
    return a1111_img2img_strength(params["steps"], float(strength))


def _first_pass(params: dict) -> dict | None:
    """The first pass of a hires refine written as A1111's hires fix, or None (not a hires refine, or its
    parent was not our own text-to-image candidate at another size: then it is an img2img)."""
    first = params.get("first_pass")
    if params.get("mode") != "hires" or not isinstance(first, dict):
        return None
    if not all(isinstance(first.get(k), int) for k in ("width", "height", "steps")):
        return None
    return first


def a1111_parameters(params: dict) -> str:
    """The text A1111's PNG Info reads: prompt, ``Negative prompt:`` line, settings line.

    As A1111's ``create_infotext`` (modules/processing.py) writes it: values holding ``,``, ``:`` or a
    newline are JSON-quoted. Three forms, by what was done:

    - text-to-image (explore, a rerender): ``Size`` is the picture's;
    - hires fix (a hires refine of our own text-to-image candidate): the first line and ``Size`` are the
      candidate's pass, then ``Denoising strength``, ``Hires upscale``/``Hires resize``, ``Hires steps``,
      ``Hires upscaler`` and, where they differ, ``Hires CFG Scale`` and ``Hires negative prompt``;
    - img2img (vary, any other hires refine): ``Size`` is the result, ``Denoising strength``, no Hires keys.
    """
    first = _first_pass(params)
    negative = first.get("negative") if first else params.get("negative")
    prompt, tags = params.get("prompt", ""), lora_tags(params.get("loras"))
    lines = [f"{prompt} {tags}" if prompt and tags else (prompt or tags)]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    settings = [
        ("Steps", first["steps"] if first else params.get("steps")),
        ("Sampler", "Euler"),
        ("Schedule type", "Simple"),
        ("CFG scale", a1111_cfg(first.get("guidance") if first else params.get("guidance"))),
        ("Seed", params.get("seed")),
    ]
    if first:
        settings += _hires_settings(params, first)
    elif params.get("mode") == "hires" or params.get("kind") in ("vary", "inpaint"):
        settings += _img2img_settings(params)
    else:
        settings += [("Size", f"{params.get('width')}x{params.get('height')}" if params.get("width") else None),
                     ("Model", params.get("model_name"))]
    for name, entries in A1111_ENTRIES:  # an optional part of the record: its own settings
        if params.get(name) not in (None, "", [], {}):
            settings += entries(params)
    # settings a stage wrote as A1111 pairs itself (inpaint's Mask blur, ADetailer's keys)
    settings += [tuple(pair) for pair in params.get("a1111") or () if isinstance(pair, list) and len(pair) == 2]
    settings += [("Lora hashes", lora_hashes(params.get("loras"))), ("Upscaler", params.get("upscaler")),
                 ("Version", params.get("version"))]
    lines.append(", ".join(f"{name}: {quote(value)}" for name, value in settings if value not in (None, "")))
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


# Settings an optional record field adds to the A1111 text, as (field, fn(record) -> [(name, value)]); a new
# knob (ControlNet, inpaint) registers its own with ``a1111_entries("control")`` instead of editing the writer.
A1111_ENTRIES: list = [("variance", _variance_entries)]


def a1111_entries(field_name: str):
    def register(fn):
        A1111_ENTRIES.append((field_name, fn))
        return fn
    return register


@a1111_entries("control")
def _control_entries(params: dict) -> list:
    """sd-webui-controlnet's unit line (``ControlNet 0: "Module: canny, Model: …"``, core/control.py)."""
    from .control import a1111_line

    return [("ControlNet 0", a1111_line(params))]


def _parse_variance(result: dict, parsed: dict) -> None:
    try:
        variance = {"strength": float(result["Variance"]), "share": float(result.get("Variance share", 0.5)),
                    "steps": float(result.get("Variance steps", 0.2))}
        variance["seed"] = int(result.get("Variance seed", parsed["seed"]))
    except (KeyError, ValueError):
        return
    parsed["variance"] = variance


def _hires_target(width: int, height: int, settings: dict) -> tuple[int, int] | None:
    """The second pass's size, computed as A1111's ``calculate_target_resolution`` does."""
    if "Hires resize" in settings:
        match = _IMAGE_SIZE.match(settings["Hires resize"])
        if not match:
            return None
        rx, ry = int(match.group(1)), int(match.group(2))
        if rx == 0 and ry == 0:
            return None
        if ry == 0:
            return rx, rx * height // width
        if rx == 0:
            return ry * width // height, ry
        return rx, ry
    if "Hires upscale" in settings:
        try:
            scale = float(settings["Hires upscale"])
        except ValueError:
            return None
        return int(width * scale), int(height * scale)
    return None


def parse_a1111(text: str) -> dict:
    """Parse an A1111 ``parameters`` text into prompt, negative and the settings, by A1111's own rules
    (``parse_generation_parameters``): the last line holds the settings when at least three match its
    pattern; quoted values are unquoted; ``guidance`` is ``CFG scale`` − 1 (``cfg_scale`` as written). A hires
    fix gives ``width``/``height`` (its first pass, as ``Size`` means), ``hires_width``/``hires_height`` (the
    picture), ``strength``, ``hires_steps`` and ``hires_upscaler``."""
    *lines, last = text.strip().split("\n")
    if len(A1111_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, done_with_prompt = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[len("Negative prompt:"):].strip()
        (negative if done_with_prompt else prompt).append(line)
    settings = {name: unquote(value) for name, value in A1111_PARAM.findall(last)}
    text_prompt, tags = split_lora_tags("\n".join(prompt))
    parsed = {"prompt": text_prompt, "negative": "\n".join(negative), "settings": settings}
    if tags:
        parsed["lora_tags"] = tags
    for name, key, kind in (("Steps", "steps", int), ("CFG scale", "cfg_scale", float), ("Seed", "seed", int),
                            ("Denoising strength", "strength", float), ("Hires steps", "hires_steps", int)):
        if name in settings:
            try:
                parsed[key] = kind(settings[name])
            except ValueError:
                pass
    if "cfg_scale" in parsed:  # A1111's CFG scale s is our guidance s - 1 (see a1111_cfg)
        parsed["guidance"] = round(max(0.0, parsed["cfg_scale"] - 1.0), 6)
    if "Variance" in settings:
        _parse_variance(settings, parsed)
    match = _IMAGE_SIZE.match(settings.get("Size", ""))
    if match:
        parsed["width"], parsed["height"] = int(match.group(1)), int(match.group(2))
        target = _hires_target(parsed["width"], parsed["height"], settings)
        if target is not None:
            parsed["hires_width"], parsed["hires_height"] = target
            parsed["hires_upscaler"] = settings.get("Hires upscaler", "")
    if "Model" in settings:
        parsed["model_name"] = settings["Model"]
    return parsed


def a1111_postprocessing(info: dict) -> str:
    """The infotext A1111's Extras tab writes into ``postprocessing`` and ``extras``:
    ``Name: value`` pairs joined by ``, ``, a value holding a comma, colon or newline
    JSON-quoted (``quote``), ``None`` values left out."""
    return ", ".join(name if name == value else f"{name}: {quote(value)}"
                     for name, value in info.items() if value is not None)


def read_info(path: Path) -> dict:
    """Metadata of an image: {'parameters': str|None, 'pipeline': dict|None, 'size': (w, h)}."""
    from .image_files import opened_image

    with opened_image(path) as image:
        text = dict(getattr(image, "text", None) or image.info)
        size = image.size
    record = None
    if isinstance(text.get(JSON_CHUNK), str):
        try:
            record = json.loads(text[JSON_CHUNK])
        except ValueError:
            record = None
    parameters = text.get(A1111_CHUNK) if isinstance(text.get(A1111_CHUNK), str) else None
    extras = {name: text[name] for name in (POSTPROCESSING_CHUNK, EXTRAS_CHUNK) if isinstance(text.get(name), str)}
    comfy = {name: text[name] for name in ("prompt", "workflow") if isinstance(text.get(name), str)}
    return {"parameters": parameters, "pipeline": record, "size": size, **extras,
            **({"comfyui": comfy} if comfy else {})}


def contact_sheet(items: list[tuple[str, Path]], thumb: int = 160, columns: int | None = None, title: str = ""):
    """A grid of thumbnails, each labelled (e.g. with its seed), under an optional one-line ``title``
    (e.g. the run's LoRAs). Returns a PIL image."""
    from PIL import Image, ImageDraw, ImageFont

    if not items:
        raise ValueError("contact sheet needs at least one image")
    columns = columns or min(8, max(1, round(len(items) ** 0.5 + 0.49)))
    rows = (len(items) + columns - 1) // columns
    label_h, pad = 18, 4
    top = label_h if title else 0
    cell_w, cell_h = thumb + pad, thumb + label_h + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad + top), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    if title:
        draw.text((pad + 2, pad + 1), title, fill=(235, 235, 235), font=font)
    for index, (label, path) in enumerate(items):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
        x = pad + (index % columns) * cell_w
        y = pad + top + (index // columns) * cell_h
        sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        draw.text((x + 2, y + thumb + 3), label, fill=(235, 235, 235), font=font)
    return sheet
