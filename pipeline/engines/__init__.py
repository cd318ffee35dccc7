"""Engines: the code that imports torch and runs models (loaded only when a job misses the store): the Z-Image
engine and its memory profiles, int8, LoRA weights, seed variance, prompt embeddings, the detail pass and the
Real-ESRGAN upscaler. May import models (where files come from) and core; never stages or anything above."""
from __future__ import annotations

import logging


class _EmptyFloat32ListFilter(logging.Filter):
    """diffusers warns on every ``model.to(dtype)`` that "modules … should be kept in float32: []" —
    even when that list is empty, so nothing is kept anywhere. Drop exactly that empty case (seen with -v)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "should be kept in float32: []" not in record.getMessage()


logging.getLogger("diffusers.models.modeling_utils").addFilter(_EmptyFloat32ListFilter())
