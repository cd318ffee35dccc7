"""What an inpaint writes into A1111's ``parameters`` text, beside ``Size``, ``Model`` and ``Denoising strength``:
img2img inpaint's keys for a drawn mask (``Mask blur``, ``Inpaint area``, ``Masked area padding``), ADetailer's
for the face detail pass, so civitai and A1111 readers know what was done. Pure; imports no torch."""
from __future__ import annotations

ADETAILER_VERSION = "pipeline"  # what was run is ours, written with ADetailer's names


def a1111_keys(job, faces=(), paddings=()) -> list[list]:
    """``[[name, value], ...]`` in A1111's order for ``job`` (an ``InpaintJob``); ``paddings``: each region's
    padding in px (the detail pass: the crop factor's, per face)."""
    if job.detector:
        model, _, settings = job.detector.partition(" ")
        words = settings.split()
        confidence = words[words.index("confidence") + 1] if "confidence" in words else None
        keys = [["ADetailer model", model.split("@")[0]], ["ADetailer confidence", _number(confidence)],
                ["ADetailer dilate erode", 0], ["ADetailer mask blur", job.blur],
                ["ADetailer denoising strength", job.strength], ["ADetailer inpaint only masked", job.area == "masked"],
                ["ADetailer inpaint padding", max(paddings, default=0) if job.area == "masked" else None],
                ["ADetailer faces", len(faces)], ["ADetailer version", ADETAILER_VERSION]]
        return [[name, value] for name, value in keys if value is not None]
    keys = [["Mask blur", job.blur],
            ["Inpaint area", "Only masked" if job.area == "masked" else "Whole picture"],
            ["Masked area padding", job.padding],
            ["Outpaint", job.extend or None]]
    return [[name, value] for name, value in keys if value is not None]


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return int(value) if value.is_integer() else value
