"""What a refine is made of, for both its planners (a run's picks in ``refine.py``, an image from disk in
``refine_source.py``): the pick, the plan, the job, how the parent is enlarged, the target size. No torch."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.jobs import RefineJob, render_fields
from ..core.sizes import check_size
from .specs import DEFAULT_REFINE_SCALE, DEFAULT_STEPS, RefineSpec

LANCZOS = "lanczos"


@dataclass
class Pick:
    """One picture to refine: its job, where it goes, and where its parent comes from."""

    job: RefineJob
    name: str  # file name under RUN/refine/
    parent_path: Path | None  # the parent's pixels (None for rerender)
    parent_key: str  # store key of the parent candidate ("" for a foreign image)
    source: str  # the candidate's run-relative path, or the --from image's path
    parent_data: bytes | None = None  # the --from image's bytes, as digested for the key
    id: int | str | None = None  # the candidate's seed or variation id (42v3); None: the job's seed
    loras: list = field(default_factory=list)  # engines.lora.Lora, as the job's key holds them
    first_pass: dict | None = None  # hires of our own txt2img candidate: its pass, for A1111's hires-fix text
    control: dict | None = None  # the control as recorded (stages.control.StageControl.record), when on

    @property
    def label(self):
        return self.job.seed if self.id is None else self.id


@dataclass
class Plan:
    run_dir: Path
    picks: list[Pick]
    new_run: dict | None = None  # run.json header when the run folder is to be created
    control: object = None  # stages.control.StageControl, when the refine follows a control map


def refine_job(session, spec, params, seed, size, parent_digest, enlarge, variance=None, loras=()) -> RefineJob:
    fields = render_fields(model=session.fingerprint, prompt=params["prompt"], negative=params["negative"],
                           width=size[0], height=size[1], steps=spec.steps or DEFAULT_STEPS,
                           guidance=params["guidance"], seed=seed, dtype=session.dtype, variance=variance,
                           loras=loras)
    if spec.mode == "hires":
        return RefineJob(**fields, mode="hires", strength=float(spec.strength), parent=parent_digest, enlarge=enlarge)
    # rerender draws from text alone: parent, strength and enlarging do not change its pixels
    return RefineJob(**fields, mode="rerender", strength=0.0, parent="", enlarge="")


def enlarge_name(spec: RefineSpec) -> str:
    """How hires enlarges the parent, as it enters the key: ``lanczos`` or ``<weights>@<sha256[:16]>``."""
    if spec.mode != "hires" or spec.upscaler.lower() == LANCZOS:
        return LANCZOS if spec.mode == "hires" else ""
    from ..models import upscaler_weights as weights  # no torch: resolving and hashing a weights file

    resolved = weights.resolve_weights(spec.upscaler)
    return f"{resolved.name}@{weights.weights_digest(resolved.path)[:16]}"


def scaled_size(size, scale: float | None) -> tuple[int, int]:
    scale = DEFAULT_REFINE_SCALE if scale is None else scale
    width, height = (max(16, int(round(side * scale / 16)) * 16) for side in size)
    check_size(width, height)
    return width, height


def candidate_name(seed: int) -> str:
    return f"seed-{seed}.png"
