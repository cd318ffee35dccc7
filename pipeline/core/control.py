"""Control maps: what a ControlNet is shown. Imports no torch (OpenCV, numpy, Pillow).

    control image --fit--> the job's size (aspect kept by a center crop, said once) --type--> the map
      canny  edges found here (OpenCV's Canny on the fitted picture, thresholds 100/200, white on black)
      gray   the picture's luminance (the Union model recolours it)
      tile   the picture itself (the Tile model adds detail to what it is shown)
      map    used as given: a pose skeleton, a depth or edge map made elsewhere

Annotators that need downloaded weights (depth, pose, HED, …) are not built in: those types are refused with
a pointer to ``map``. The map's digest (sha256 of its size and RGB pixels) goes in the job key, so a different
map re-keys and the same map from another file does not.
"""
from __future__ import annotations

import difflib
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

log = logging.getLogger("pipeline")

TYPES = ("canny", "gray", "tile", "map")
ANNOTATORS = ("depth", "pose", "openpose", "dwpose", "hed", "softedge", "mlsd", "scribble", "lineart", "normal", "seg")
# from the model cards and what users settle at: Union 0.6-0.8 (full strength blurs Turbo), Tile about 0.85
DEFAULT_STRENGTH = {"canny": 0.75, "gray": 0.75, "map": 0.75, "tile": 0.85}
# sd-webui-controlnet's preprocessor ("module") names for what each type does here
A1111_MODULE = {"canny": "canny", "gray": "recolor_luminance", "tile": "tile_resample", "map": "none"}
CANNY_LOW, CANNY_HIGH = 100, 200
_said: set[tuple] = set()


def check_type(name) -> str:
    """A control type, lower-cased; one sentence for an annotator type (pointing to ``map``) or a typo."""
    text = str(name or "").strip().lower()
    if text in TYPES:
        return text
    if text in ANNOTATORS:
        return _annotator_error(text)
    close = difflib.get_close_matches(text, list(TYPES) + list(ANNOTATORS), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close and close[0] in TYPES else ""
    raise UserError(f"--control-type {name!r} is not one of {', '.join(TYPES)}{hint}")


def _annotator_error(text: str):
    raise UserError(f"--control-type {text} needs an annotator with downloaded weights, which is not built in: make "
                    f"the {text} map elsewhere (ComfyUI, A1111's ControlNet preprocessors) and give it with "
                    "--control MAP --control-type map")


def check_strength(value, control_type: str) -> float:
    if value is None:
        return DEFAULT_STRENGTH[control_type]
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--control-strength {value!r} is not a number (0 is off, {DEFAULT_STRENGTH[control_type]} "
                        f"is the default for {control_type})") from None
    if not 0 <= number <= 2:
        raise UserError(f"--control-strength {value!r} is out of range: use 0 to 2 (0 is off)")
    return number


def check_window(start, end) -> tuple[float, float]:
    """(start, end): the fraction of the steps during which control applies."""
    try:
        first, last = float(0.0 if start is None else start), float(1.0 if end is None else end)
    except (TypeError, ValueError):
        raise UserError(f"--control-start/--control-end must be numbers from 0 to 1, not {start!r}/{end!r}") from None
    if not (0 <= first < last <= 1):
        raise UserError(f"--control-start {first:g} and --control-end {last:g} must satisfy 0 <= start < end <= 1 "
                        "(fractions of the steps)")
    return first, last


def load_image(path, flag: str = "--control") -> Image.Image:
    """The control image, RGB; one sentence for a missing file or one that is not an image."""
    from .image_files import opened_image

    with opened_image(Path(str(path)).expanduser(), flag) as image:
        image.load()
        return image.convert("RGB")


def fit(image: Image.Image, width: int, height: int, what: str = "the control image") -> Image.Image:
    """``image`` at width x height: scaled to cover it, then its center cut out (said once when the aspect differs)."""
    if image.size == (width, height):
        return image
    iw, ih = image.size
    if abs(iw * height - ih * width) > 0.02 * ih * width:  # aspects differ by more than sizes' rounding to 16
        key = (what, image.size, (width, height))
        if key not in _said:
            _said.add(key)
            log.warning("%s is %dx%d and the pictures %dx%d: its center is cropped to the pictures' aspect",
                        what, iw, ih, width, height)
    scale = max(width / iw, height / ih)
    w, h = max(width, round(iw * scale)), max(height, round(ih * scale))
    resized = image.resize((w, h), Image.Resampling.LANCZOS)
    left, top = (w - width) // 2, (h - height) // 2
    return resized.crop((left, top, left + width, top + height))


def preprocess(image: Image.Image, control_type: str) -> Image.Image:
    """The map for ``control_type`` from an already fitted RGB picture."""
    rgb = np.asarray(image.convert("RGB"))
    if control_type == "canny":
        import cv2

        edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), CANNY_LOW, CANNY_HIGH)
        return Image.fromarray(np.repeat(edges[..., None], 3, axis=2))
    if control_type == "gray":
        return image.convert("L").convert("RGB")
    return image.convert("RGB")


def map_digest(image: Image.Image) -> str:
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}\n".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class ControlMap:
    """A map at a job's size, and its digest (what the job key carries)."""

    image: Image.Image
    digest: str
    type: str

    def crop(self, x: int, y: int, w: int, h: int) -> Image.Image:
        """The part of the map under one tile (padded with its edge pixels past the map's border)."""
        rgb = np.asarray(self.image)
        height, width = rgb.shape[:2]
        if x + w > width or y + h > height:
            rgb = np.pad(rgb, ((0, max(0, y + h - height)), (0, max(0, x + w - width)), (0, 0)), mode="edge")
        return Image.fromarray(rgb[y:y + h, x:x + w])

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.image.save(buffer, format="PNG")
        return buffer.getvalue()


def control_map(image: Image.Image, control_type: str, width: int, height: int,
                what: str = "the control image") -> ControlMap:
    """The map a job of width x height uses: ``image`` fitted, then preprocessed for the type."""
    made = preprocess(fit(image, width, height, what), control_type)
    return ControlMap(made, map_digest(made), control_type)


def _number(value) -> str:
    return repr(float(value))


def model_name(fingerprint: str) -> str:
    """A ControlNet's name from its fingerprint (``controlnet:NAME:digest``, ``hub:repo@commit/NAME.safetensors``)."""
    text = str(fingerprint)
    if text.startswith("controlnet:"):
        return text.split(":")[1]
    tail = text.rsplit("/", 1)[-1]
    return tail[:-len(".safetensors")] if tail.endswith(".safetensors") else tail


def a1111_line(params: dict) -> str | None:
    """The value of A1111's ``ControlNet 0`` setting as sd-webui-controlnet writes it (its ``ControlNetUnit``
    infotext), from a picture's record: ``params["control"]`` (the job's) and ``params["control_name"]``."""
    control = params.get("control")
    if not isinstance(control, dict) or not control.get("type"):
        return None
    kind = control["type"]
    fields = [("Module", A1111_MODULE.get(kind, "none")),
              ("Model", params.get("control_name") or model_name(control.get("model", ""))),
              ("Weight", _number(control.get("strength", 1.0))), ("Resize Mode", "Crop and Resize"),
              ("Processor Res", min(int(params.get("width") or 512), int(params.get("height") or 512))),
              *([("Threshold A", _number(CANNY_LOW)), ("Threshold B", _number(CANNY_HIGH))] if kind == "canny" else []),
              ("Guidance Start", _number(control.get("start", 0.0))), ("Guidance End", _number(control.get("end", 1.0))),
              ("Pixel Perfect", "False"), ("Control Mode", "Balanced")]
    return ", ".join(f"{name}: {value}" for name, value in fields)


def parse_a1111_line(value: str) -> dict:
    """``ControlNet 0``'s value back as {module, model, weight, start, end} (what sd-webui-controlnet reads)."""
    found = {}
    for part in str(value).split(", "):
        name, _, text = part.partition(": ")
        found[name.strip()] = text.strip()
    result = {"module": found.get("Module"), "model": found.get("Model")}
    for name, key in (("Weight", "weight"), ("Guidance Start", "start"), ("Guidance End", "end")):
        try:
            result[key] = float(found[name])
        except (KeyError, ValueError):
            pass
    return result
