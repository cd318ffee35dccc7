"""Inpaint: fix one part of a picked picture — under a drawn mask, on each face found, or a new border.

A fix is a new picture of the run next to its parent: ``42i1`` is the first fix of candidate 42, ``42i1i1``
a fix of that one; the run records it (``inpaint`` section: its parent, which stage the parent came
from, and the mask kept beside the picture as ``inpaint/seed-42i1-mask.png``). A picture from disk is fixed
into ``OUT/inpainted/``. A fix's key holds the parent's file digest, the mask's digest and the settings, so
a re-run finds it in the store and a changed mask makes a new one. Planning imports no torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import masks
from ..core.errors import UserError
from ..core.inpaint_job import InpaintJob
from ..core.jobs import digest_bytes, render_fields, variance_from_record
from ..core.runs import load_run, record_pictures, resolve_run, set_latest, stage_pictures
from ..core.store import atomic_write, write_error
from .common import Item, StageResult, our_record, recorded_loras, recorded_meta, recorded_seed, store_picture
from .executor import Executor, StageWork, Work
from .inpaint_a1111 import a1111_keys
from .inpaint_spec import InpaintSpec
from .specs import DEFAULT_GUIDANCE, DEFAULT_STEPS

log = logging.getLogger("pipeline")

STAGE = "inpaint"
FROM_DISK = "inpainted"  # OUT/inpainted/: fixes of pictures given as files


@dataclass
class Source:
    """The picture to fix and how it was made."""

    name: str  # its id in the run (42, 42v1, 42i1) or its file's stem
    path: Path
    digest: str
    key: str  # its store key ("" for a file that is not one of ours)
    meta: dict  # prompt, negative, seed, guidance, steps, variance, loras


@dataclass
class Fix:
    id: str
    job: InpaintJob
    source: Source
    mask: np.ndarray  # what is re-drawn, on the result's canvas
    regions: list
    dest: Path
    notes: list = field(default_factory=list)
    faces: list = field(default_factory=list)
    loras: list = field(default_factory=list)

    @property
    def mask_dest(self) -> Path:
        return self.dest.with_name(self.dest.stem + "-mask.png")


@dataclass
class Plan:
    run_dir: Path | None
    fixes: list[Fix]


def plan(session, spec: InpaintSpec, run: str | None = None) -> Plan:
    if spec.image is not None:
        source = _file_source(spec.image)
        out_dir = session.out / FROM_DISK
        fix = _fix(session, spec, source, lambda job: f"{source.name}-{job.key[:10]}", out_dir)
        return Plan(None, [fix])
    run_dir = resolve_run(session.out, run)
    data = load_run(run_dir)
    made = stage_pictures(data, STAGE)
    fixes = [_fix(session, spec, source, lambda job, s=source: _fix_id(made, s.name, job.key), run_dir / STAGE)
             for source in _run_sources(session, spec, run_dir, data)]
    return Plan(run_dir, fixes)


def _file_source(image: str) -> Source:
    from ..core.images import read_info

    path = Path(image).expanduser()
    info = read_info(path)  # missing or unreadable: one sentence
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    meta = recorded_meta(info)
    ours = our_record(info)
    if ours is not None:
        meta["steps"] = ours.get("steps")
    key = ours.get("key", "") if ours is not None and isinstance(ours.get("key"), str) else ""
    return Source(path.stem, path, digest_bytes(data), key, meta)


def _run_sources(session, spec: InpaintSpec, run_dir: Path, data: dict) -> list[Source]:
    pictures = {str(p.get("seed")).lower(): p for p in stage_pictures(data, spec.source)}
    unknown = [pick for pick in spec.seeds if pick not in pictures]
    if unknown:
        listed = ", ".join(sorted(pictures)) or "none"
        raise UserError(f"{', '.join(unknown)}: not among run {run_dir.name}'s {spec.source} pictures "
                        f"(they are: {listed}); --from says which stage's pictures to fix")
    sources = []
    for pick in spec.seeds:
        entry = pictures[pick]
        artifact = session.store.get(str(entry.get("key")))
        if artifact is None:
            raise UserError(f"{spec.source} picture {pick} of run {run_dir.name} is missing or damaged in the store; "
                            f"make it again first")
        job = artifact.record.get("job") if isinstance(artifact.record.get("job"), dict) else {}
        meta = {k: job[k] for k in ("prompt", "negative", "seed", "guidance", "steps", "variance") if k in job}
        meta.setdefault("prompt", data.get("prompt"))
        loras = entry["loras"] if isinstance(entry.get("loras"), list) else data.get("loras")
        meta["loras"] = loras
        sources.append(Source(str(entry.get("seed")), artifact.path, artifact.record.get("digest") or "",
                              str(entry["key"]), meta))
    return sources


def _fix_id(made: list[dict], parent: str, key: str) -> str:
    """``42i1``, ``42i2``…: the id a fix of this key already has, else the next number after ``parent``'s."""
    mine = [p for p in made if str(p.get("parent")) == parent]
    for picture in mine:
        if picture.get("key") == key:
            return str(picture["seed"])
    numbers = [int(str(p["seed"])[len(parent) + 1:]) for p in mine if str(p.get("seed", "")).startswith(parent + "i")
               and str(p["seed"])[len(parent) + 1:].isdigit()]
    return f"{parent}i{max(numbers, default=0) + 1}"


def _fix(session, spec: InpaintSpec, source: Source, name_of, out_dir: Path) -> Fix:
    from PIL import Image

    with Image.open(source.path) as opened:
        pixels = np.asarray(opened.convert("RGB"))
    size = (pixels.shape[1], pixels.shape[0])
    notes, faces, detector = [], [], ""
    sides = masks.parse_extend(spec.extend)
    if sides:
        pixels, mask = masks.extend_canvas(pixels, sides)
        offset = (sides.get("left", 0), sides.get("top", 0))
    else:
        mask, offset = np.zeros(pixels.shape[:2], bool), (0, 0)
    if spec.mask:
        drawn, notes = masks.read_mask(spec.mask, size, "the mask")
        mask[offset[1]:offset[1] + size[1], offset[0]:offset[0] + size[0]] |= drawn
    if spec.faces:
        from ..engines import faces as finder

        found = finder.find_faces(pixels, spec.face_confidence)
        if not found:
            raise finder.NoFace(f"{source.name}: {finder.no_face_sentence(spec.face_confidence)}")
        faces = found
        regions = finder.face_regions((pixels.shape[1], pixels.shape[0]), found, spec.crop_factor)
        for region in regions:
            mask |= region.mask
        detector = f"{finder.detector_id()} confidence {spec.face_confidence:g} crop {spec.crop_factor:g}"
    else:
        regions = [masks.Region(mask, spec.padding)]
    prompt = (spec.face_prompt if spec.faces and spec.face_prompt else spec.prompt) or source.meta.get("prompt")
    if not prompt:
        raise UserError(f"{source.path} carries no prompt in its metadata: give --prompt")
    loras = session.resolve_loras(spec.loras) if spec.loras is not None else \
        recorded_loras(session, source.meta.get("loras"), str(source.name))
    seed = spec.seed if spec.seed is not None else recorded_seed(source.meta.get("seed"))
    guidance = source.meta.get("guidance", DEFAULT_GUIDANCE)
    fields = render_fields(model=session.fingerprint, prompt=prompt, negative=str(source.meta.get("negative") or ""),
                           width=pixels.shape[1], height=pixels.shape[0],
                           steps=spec.steps or int(source.meta.get("steps") or DEFAULT_STEPS),
                           guidance=guidance if isinstance(guidance, (int, float)) else DEFAULT_GUIDANCE, seed=seed,
                           dtype=session.dtype, variance=variance_from_record(source.meta.get("variance")),
                           loras=loras)
    job = InpaintJob(**fields, strength=spec.chosen_strength, parent=source.digest, mask=masks.mask_digest(mask),
                     area=spec.area, blur=spec.mask_blur, padding=_padding(spec), work=_work(spec),
                     extend=spec.extend or "", detector=detector)
    ident = name_of(job)
    dest = out_dir / (f"seed-{ident}.png" if out_dir.name == STAGE else f"{ident}.png")
    return Fix(ident, job, source, mask, regions, dest, notes, faces, loras)


def _padding(spec: InpaintSpec) -> int | None:
    if spec.area == "whole":
        return None  # the whole picture is rendered: no crop
    return 0 if spec.faces else spec.padding  # faces: each face's crop factor (in ``detector``)


def _work(spec: InpaintSpec) -> int | None:
    return None if spec.area == "whole" else spec.work


# ---------------------------------------------------------------- executing


def inpaint(session, spec: InpaintSpec, *, run: str | None = None, dry_run: bool = False, on_picture=None,
            stop=None) -> StageResult:
    the_plan = plan(session, spec, run)
    for fix in the_plan.fixes:
        for note in fix.notes:
            log.warning("%s", note)
    works = [Work(fix.id, fix.job, fix) for fix in the_plan.fixes]
    executor = Executor(session)
    if dry_run:
        stored = executor.dry_run(works)
        return StageResult(STAGE, the_plan.run_dir, planned=len(works), stored=stored,
                           computed=len(works) - stored, dry_run=True)
    items = executor.run(InpaintWork(session, spec, the_plan.run_dir), works, stop=stop, on_picture=on_picture)
    if the_plan.run_dir is not None and executor.main:
        set_latest(session.out, the_plan.run_dir)
    computed = sum(not item.cached for item in items)
    return StageResult(STAGE, the_plan.run_dir, items, planned=len(works), stored=len(items) - computed,
                       computed=computed)


class InpaintWork(StageWork):
    """Inpaint's part: each fix rendered region by region and pasted through its mask, the mask kept beside it."""

    name = STAGE

    def __init__(self, session, spec: InpaintSpec, run_dir: Path | None):
        super().__init__(session)
        self.spec, self.run_dir = spec, run_dir

    def dest(self, work: Work) -> Path:
        return work.part.dest

    def item_name(self, work: Work) -> str:
        return work.part.source.name

    def place(self, work: Work, artifact, cached: bool, seconds: float | None = None, put: bool = True) -> Item:
        if put:
            _place_mask(work.part)
        return super().place(work, artifact, cached, seconds, put)

    def render(self, engine, works: list[Work], progress) -> list:
        from PIL import Image

        from ..engines.inpaint import inpaint_pixels, render_crop

        outputs = []
        for work in works:
            job = work.job
            with Image.open(work.part.source.path) as opened:
                pixels = np.asarray(opened.convert("RGB"))
            sides = masks.parse_extend(job.extend)
            if sides:
                pixels, _ = masks.extend_canvas(pixels, sides)
            result, crops = inpaint_pixels(pixels, work.part.regions,
                                           lambda crop, i, job=job: render_crop(engine, job, crop, job.seed + i),
                                           area=job.area, work=job.work or 0, blur=job.blur)
            outputs.append((Image.fromarray(result), crops))
        return outputs

    def store(self, engine, work: Work, output, seconds: float, provenance: dict):
        image, crops = output
        fix, job = work.part, work.job
        extra = {"inpaint": fix.id, "parent_key": fix.source.key, "parent_name": fix.source.name,
                 "parent_stage": self.spec.source if self.run_dir is not None else "file",
                 "renders": [{"box": list(c.box), "size": list(c.size)} for c in crops],
                 "a1111": a1111_keys(job, fix.faces, [r.padding for r in fix.regions])}
        if fix.faces:
            extra["faces"] = [{"box": list(face.box), "score": face.score} for face in fix.faces]
        if job.loras:
            extra["loras"] = [lora.record() for lora in fix.loras]
        return store_picture(self.session.store, job, image, self.session.model, seconds=seconds, engine=engine,
                             provenance=provenance, stage=STAGE, **extra)

    def record(self, done) -> None:
        if self.run_dir is not None:
            for work, item in done:
                _record(self.run_dir, self.spec, work.part, work.job, item)


def _place_mask(fix: Fix) -> None:
    """The mask beside the picture (white = re-drawn), written atomically."""
    import io

    buffer = io.BytesIO()
    masks.mask_image(fix.mask).save(buffer, format="PNG")
    try:
        atomic_write(fix.mask_dest, buffer.getvalue())
    except OSError as err:
        raise write_error(fix.mask_dest, err) from err


def _record(run_dir: Path, spec: InpaintSpec, fix: Fix, job: InpaintJob, item: Item) -> None:
    entry = {"seed": fix.id, "key": item.key, "path": str(item.path.relative_to(run_dir)),
             "mask": str(fix.mask_dest.relative_to(run_dir)), "parent": fix.source.name, "from": spec.source,
             "parent_key": fix.source.key, "seconds": item.seconds, "cached": item.cached,
             "strength": job.strength, "area": job.area, "steps": job.steps, "noise_seed": job.seed,
             **({"extend": job.extend} if job.extend else {}), **({"faces": len(fix.faces)} if fix.faces else {}),
             **({"loras": [lora.record() for lora in fix.loras]} if fix.loras else {})}
    record_pictures(run_dir, STAGE, [entry])


def detail_faces(session, result: StageResult, source: str, strength: float, *, face_prompt: str | None = None,
                 confidence: float = 0.3, work: int = 1024, loras=None) -> list[Item]:
    """``refine --detail-faces S`` / ``upscale --detail-faces S``: the face pass on each picture ``result``
    made (a run's picture by its id, a file by its path). A picture without a face is said and left as it is."""
    from ..engines.faces import NoFace
    from .specs import build

    fixes = []
    for item in result.items:
        where = {"seeds": [str(item.seed)], "source": source} if result.run_dir is not None and item.seed is not None \
            else {"image": str(item.path)}
        spec = build(InpaintSpec, **where, faces=True, strength=strength, face_prompt=face_prompt,
                     face_confidence=confidence, work=work, loras=loras)
        try:
            fixes += inpaint(session, spec, run=str(result.run_dir) if "seeds" in where else None).items
        except NoFace as err:
            log.warning("%s; it is left as it is", err)
    return fixes
