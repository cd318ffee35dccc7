"""The stages, named once. Everything that lists stages reads this list: run.json's picture sections (explore's
save leaves every other section alone), repair, the gallery, the app grid, the config sections and the run
summary. A new stage (inpaint, ...) is one line here. Imports nothing.

Each stage: its ``name`` (its command and its config section), the run.json ``section`` that holds its pictures
and the run folder they are placed in (vary's variations are candidates: they sit in explore's), and ``results``:
whether its pictures are results of a candidate (shown beside it) rather than candidates.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    section: str
    results: bool = False


STAGES = (
    Stage("explore", "explore"),
    Stage("vary", "explore"),
    Stage("refine", "refine", results=True),
    Stage("upscale", "upscale", results=True),
)


def names() -> tuple[str, ...]:
    """Every stage, in pipeline order (a run summary's, a config's sections)."""
    return tuple(stage.name for stage in STAGES)


def sections() -> tuple[str, ...]:
    """run.json's picture sections, each a folder of the run, in pipeline order."""
    return tuple(dict.fromkeys(stage.section for stage in STAGES))


def result_sections() -> tuple[str, ...]:
    """The sections whose pictures are results of a candidate (refined, upscaled, ...)."""
    return tuple(dict.fromkeys(stage.section for stage in STAGES if stage.results))
