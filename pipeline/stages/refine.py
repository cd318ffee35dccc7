"""Refine: picked candidates (or any image) made larger while keeping their composition.

    hires     the stored candidate, enlarged to the target size (Lanczos, or a Real-ESRGAN
              model), then an image-to-image pass with the same prompt and seed at --strength
              (to another aspect, a candidate is cropped as A1111's hires fix crops: see hires.py)
    rerender  text-to-image at the target size with the same seed (new noise: the
              composition may change)

A job's key holds its parameters and, for hires, the digest of the parent picture's file,
so re-running is free and a changed candidate is refined again. Planning imports no torch;
the model (and an upscaler) load only when a job misses the store.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

from ..core.errors import UserError
from ..models.names import TINY
from ..core.runs import load_run, new_run_data, record_pictures, resolve_run, set_latest, stage_pictures
from ..core.seeds import pick_order, seed_ranges
from ..engines.request import RenderRequest
from .specs import DEFAULT_GUIDANCE, RefineSpec
from .common import Item, StageResult, candidate_loras, run_variance, store_picture
from .executor import Executor, StageWork, Work
from .hires import as_hires_fix, enlarge_parents, parent_size
from .refine_jobs import Pick, Plan, candidate_name, enlarge_name, refine_job, scaled_size
from .refine_source import plan_source

log = logging.getLogger("pipeline")

STAGE_DIR = "refine"


def default_model(out: Path, run: str | None, source: str | Path | None = None) -> str | None:
    """The model to refine with when none is given: the run's, or the one named in the --from
    image's metadata (tiny-random or a Hugging Face repo id); None when unknown."""
    if source is None:
        try:
            return load_run(resolve_run(out, run)).get("model") or None
        except UserError:
            return None
    from ..core.images import read_info

    try:
        record = read_info(Path(source)).get("pipeline")
    except UserError:
        return None
    fingerprint = record.get("model") if isinstance(record, dict) else None
    if not isinstance(fingerprint, str):
        return None
    if fingerprint.startswith(TINY + "@"):
        return TINY
    if fingerprint.startswith("hub:"):
        return fingerprint[len("hub:"):].rsplit("@", 1)[0] or None
    return None


def plan(session, spec: RefineSpec, run: str | None = None) -> Plan:
    """The jobs of a refine. Reads run.json, the candidates' records and the --from image; no torch."""
    if spec.source is not None:
        return plan_source(session, spec, run)
    return _plan_run(session, spec, run)


def _plan_run(session, spec: RefineSpec, run: str | None) -> Plan:
    run_dir = resolve_run(session.out, run)
    data = load_run(run_dir)
    candidates = {c["seed"]: c for c in stage_pictures(data, "explore")}
    candidates.update({f["seed"]: f for f in stage_pictures(data, "inpaint") if f.get("seed") in spec.seeds})  # 42i1
    unknown = [seed for seed in spec.seeds if seed not in candidates]
    if unknown:
        if not candidates:
            raise UserError(f"run {run_dir} has no explore candidates to refine; use --from IMAGE to refine an image")
        what = "seed {} is not a candidate" if len(unknown) == 1 else "seeds {} are not candidates"
        raise UserError(f"{what.format(seed_ranges(unknown))} of run {run_dir.name}; "
                        f"its seeds are {seed_ranges(sorted(candidates, key=pick_order))}")
    size = spec.size or scaled_size((int(data["width"]), int(data["height"])), spec.scale)
    params = {
        "prompt": data["prompt"],
        "negative": spec.negative if spec.negative is not None else data.get("negative", ""),
        "guidance": spec.guidance if spec.guidance is not None else data.get("guidance", DEFAULT_GUIDANCE),
    }
    enlarge = enlarge_name(spec)
    given = None if spec.loras is None else session.resolve_loras(spec.loras)
    picks = []
    for seed in spec.seeds:
        candidate = candidates[seed]
        loras = given if given is not None else candidate_loras(session, data, candidate, f"candidate {seed}")
        parent_path, parent_digest, parent_job = None, "", None
        if spec.mode == "hires":
            artifact = session.store.get(candidate["key"])
            if artifact is None:
                raise UserError(_missing_candidate(run_dir, data, seed))
            parent_path, parent_digest = artifact.path, artifact.record["digest"]
            parent_job = artifact.record.get("job")
        # a variation renders with its own noise seed and its root candidate's conditioning
        noise_seed = candidate.get("noise_seed", seed) if isinstance(seed, str) else seed
        job = refine_job(session, spec, params, noise_seed, size, parent_digest, enlarge, run_variance(data, seed), loras)
        job, first = as_hires_fix(job, parent_job)
        picks.append(Pick(job, candidate_name(seed), parent_path, candidate["key"], candidate["path"], id=seed,
                          first_pass=first, loras=loras))
    return Plan(run_dir, picks)



def _missing_candidate(run_dir: Path, data: dict, seed) -> str:
    if isinstance(seed, str):
        from ..core.seeds import pick_parent, pick_path

        entry = {c.get("seed"): c for c in stage_pictures(data, "explore")}.get(seed, {})
        command = ["pipeline", "vary", "--run", str(run_dir), "--seeds", str(pick_parent(seed)),
                   "--count", str(pick_path(seed)[-1]), "--strength", str(entry.get("strength", "subtle"))]
        return (f"variation {seed} of run {run_dir.name} is missing or damaged in the store; make it again "
                f"with `{shlex.join(command)}`")
    command = ["pipeline", "explore", data["prompt"], "--out", str(run_dir.parent), "--run", run_dir.name,
               "--seeds", str(seed), "--size", f"{data['width']}x{data['height']}", "--steps", str(data["steps"]),
               "--guidance", str(data["guidance"]), "--model", str(data.get("model", ""))]
    if data.get("negative"):
        command += ["--negative", data["negative"]]
    return (f"candidate seed {seed} of run {run_dir.name} is missing or damaged in the store; "
            f"render it again with `{shlex.join(command)}`")




# ---------------------------------------------------------------- executing


def refine(session, spec: RefineSpec, *, run: str | None = None, dry_run: bool = False, on_picture=None,
           stop=None) -> StageResult:
    the_plan = plan(session, spec, run)
    if spec.mode == "rerender":
        width, height = the_plan.picks[0].job.width, the_plan.picks[0].job.height
        log.warning("rerender draws new noise at %dx%d, so the composition may change from the candidate; "
                    "use --mode hires to keep it", width, height)
    executor = Executor(session)
    works = [Work(pick.name, pick.job, pick) for pick in the_plan.picks]
    if dry_run:
        stored = executor.dry_run(works)
        run_dir = None if the_plan.new_run else the_plan.run_dir
        return StageResult("refine", run_dir, planned=len(works), stored=stored, computed=len(works) - stored,
                           dry_run=True)
    ordered = executor.run(RefineWork(session, spec, the_plan), works, stop=stop, on_picture=on_picture)
    computed = sum(not item.cached for item in ordered)
    return StageResult("refine", the_plan.run_dir, ordered, planned=len(works), stored=len(ordered) - computed,
                       computed=computed)


class RefineWork(StageWork):
    """Refine's part: each pick enlarged and redrawn (hires) or rendered again from text (rerender)."""

    name = "refine"

    def __init__(self, session, spec: RefineSpec, the_plan: Plan):
        super().__init__(session)
        self.spec, self.plan = spec, the_plan
        self.enlarged: dict = {}

    def dest(self, work: Work) -> Path:
        return self.plan.run_dir / STAGE_DIR / work.id

    def place(self, work, artifact, cached, seconds=None, put=True) -> Item:
        item = super().place(work, artifact, cached, seconds, put)
        item.seed = work.part.label
        return item

    def load(self, misses, progress):
        if self.spec.mode == "hires":
            self.enlarged = enlarge_parents(self.session, self.spec, [work.part for work in misses])
        return self.session.engine()

    def batch_size(self, engine, misses) -> int:
        return resolve_batch(self.spec.batch, engine, misses[0].job)

    def render(self, engine, works, progress) -> list:
        jobs = [work.job for work in works]
        if jobs[0].mode == "hires":
            request = RenderRequest.from_jobs(jobs, init_images=[self.enlarged[work.id] for work in works],
                                              strength=jobs[0].strength)
            return engine.render(request, "img2img")
        return engine.render(RenderRequest.from_jobs(jobs), "txt2img")

    def store(self, engine, work, image, seconds, provenance):
        return store_picture(self.session.store, work.job, image, self.session.model, seconds=seconds, engine=engine,
                             provenance=provenance, **self.metadata(work))

    def metadata(self, work) -> dict:
        """A refined picture's metadata beyond its job's."""
        pick = work.part
        extra = {"parent_size": parent_size(pick)} if work.job.mode == "hires" else {}
        if pick.first_pass:
            extra["first_pass"] = pick.first_pass
        if work.job.loras:
            extra["loras"] = [lora.record() for lora in pick.loras]
        return {"stage": "refine", "parent_key": pick.parent_key, **extra}

    remote_auto_limit = 4  # batch auto on a GPU worker: at most 4, as here

    @property
    def remote_batch(self):
        return self.spec.batch

    def remote(self, misses) -> list:
        """What a Ray worker needs for each miss (``ray_render``): the job, the enlarged candidate (hires; made
        here), the picture's metadata."""
        from .ray_render import RemoteWork

        if self.spec.mode == "hires":
            self.enlarged = enlarge_parents(self.session, self.spec, [work.part for work in misses])
        return [RemoteWork.of(work.job, self.enlarged[work.id] if work.job.mode == "hires" else None,
                              **self.metadata(work)) for work in misses]

    def record(self, done) -> None:
        _record(self.session, self.plan, [(work.part, item) for work, item in done],
                [work.job for work, _ in done])


def _record(session, the_plan: Plan, done: list[tuple[Pick, Item]], jobs: list) -> None:
    """Merge pictures into run.json's "refine" entry, re-reading it first so nothing recorded is lost.

    A new run's run.json is written with its first picture, and the run becomes the latest.
    """
    if not done:
        return
    run_dir = the_plan.run_dir

    def header(data: dict) -> None:
        if not data and the_plan.new_run is not None:
            data.update(new_run_data(the_plan.new_run))

    entries = []
    for (pick, item), job in zip(done, jobs):
        entry = {"seed": pick.label, "key": item.key, "path": str(item.path.relative_to(run_dir)),
                 "mode": job.mode, "width": job.width, "height": job.height, "steps": job.steps,
                 "guidance": job.guidance, "parent_key": pick.parent_key, "source": pick.source,
                 "seconds": item.seconds, "cached": item.cached}
        if job.mode == "hires":
            entry.update(strength=job.strength, enlarge=job.enlarge, parent_digest=job.parent)
            if job.crop:
                entry["crop"] = job.crop
        if job.loras:
            entry["loras"] = [lora.record() for lora in pick.loras]
        entries.append(entry)
    record_pictures(run_dir, "refine", entries, id_of=lambda p: p.get("path"), before=header,
                    order=lambda p: (pick_order(p.get("seed")), p.get("path", "")))
    set_latest(session.out, run_dir)


def resolve_batch(batch, engine, job) -> int:
    """auto: what the engine's memory model allows at this size (at most 4), else one at a time.

    At 1024² one picture already fills a GPU (4096 image tokens), so batching gains little;
    on a CPU a batch shares nothing.
    """
    if batch != "auto":
        return int(batch)
    auto_batch = getattr(engine, "auto_batch", None)
    return auto_batch(job.width, job.height, limit=4) if auto_batch else 1
