"""What a stage does with ``--control``: resolve the ControlNet, make each job's control map, key it, keep it.

    prepare(session, spec.control, default type, stage)  -> StageControl (None: no control, or strength 0)
    control.map_for(width, height[, picture])            -> ControlMap (fitted, preprocessed; digest)
    control.use(map)                                     -> the job's ControlUse (what its key carries)
    control.render(engine, jobs[, images, strength])     -> pictures, each job with its own map
    control.keep(run_dir, map)                           -> control/<digest>.png in the run folder

Strength 0 is no control at all: ``prepare`` returns None, so the jobs, keys and pixels are those of the same
command without ``--control``. Imports no torch: the maps are made with OpenCV at plan time (their digests
are in the keys), and the ControlNet is loaded only when a job misses the store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.control import ControlMap, control_map, load_image
from ..core.errors import UserError
from ..core.jobs import ControlUse, make_control

MAP_FOLDER = "control"


@dataclass(eq=False)
class StageControl:
    type: str
    strength: float
    start: float
    end: float
    entry: object  # models.controlnets.ControlNetFile
    source: object = None  # the control image (PIL), or None: each picture is its own control (tile)
    source_path: str | None = None
    maps: dict = field(default_factory=dict)  # digest -> ControlMap, for the engine

    def map_for(self, width: int, height: int, picture=None, what: str = "the control image") -> ControlMap:
        """The map of a job of width x height: from the control image, or from ``picture`` (tile without one)."""
        image = self.source if self.source is not None else picture
        if image is None:
            raise UserError(f"--control-type {self.type} needs --control IMAGE here")
        made = control_map(image, self.type, width, height, what if self.source is not None else "the picture")
        self.maps.setdefault(made.digest, made)
        return made

    def use(self, made: ControlMap) -> ControlUse | None:
        return make_control(made.digest, self.type, self.strength, self.start, self.end, self.entry.fingerprint)

    def record(self, made: ControlMap | None = None) -> dict:
        """The control as run.json and ``pipeline show`` say it (the map: its digest and file in the run)."""
        data = {"type": self.type, "strength": self.strength, "start": self.start, "end": self.end,
                "model": self.entry.name, "fingerprint": self.entry.fingerprint}
        if made is not None:
            data.update(map=made.digest, path=f"{MAP_FOLDER}/{map_name(made.digest)}")
        return data

    def keep(self, run_dir: Path, made: ControlMap) -> Path:
        """The map beside the pictures (so the run stays reproducible when the control image is gone)."""
        from ..core.store import atomic_write

        path = Path(run_dir) / MAP_FOLDER / map_name(made.digest)
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, made.png())
        return path

    def render(self, engine, jobs, *, images=None, strength: float | None = None, noise=None, sample: bool = True):
        from ..engines import controlnet

        maps = [self.maps[job.control.map].image for job in jobs]
        return controlnet.render(engine, self.entry, jobs, maps, images=images, strength=strength, noise=noise,
                                 sample=sample)


def map_name(digest: str) -> str:
    return f"{digest[:16]}.png"


def prepare(session, spec, default_type: str, stage: str, has_picture: bool = False) -> StageControl | None:
    """The stage's control from its spec (``stages.specs.ControlSpec``); None when there is none or its
    strength is 0. Every refusal happens here, before any model loads: the image, the type, the file."""
    if spec is None:
        return None
    from ..models import controlnets

    kind = spec.kind(default_type)
    spec.needs_image(default_type, stage, has_picture)
    source = load_image(spec.image) if spec.image else None
    strength = spec.strength_for(default_type)
    if strength == 0:
        return None
    entry = controlnets.resolve(spec.model, kind, session.model)
    controlnets.config_for(entry)  # a file that is no Z-Image ControlNet is refused now, saying what it is
    return StageControl(type=kind, strength=strength, start=spec.start, end=spec.end, entry=entry, source=source,
                        source_path=str(Path(spec.image).expanduser().resolve()) if spec.image else None)


def render_fields(job) -> dict:
    """What the PNG's record adds for a job with control: the ControlNet's name (A1111's ``Model:``)."""
    if getattr(job, "control", None) is None:
        return {}
    from ..core.control import model_name

    return {"control_name": model_name(job.control.model)}
