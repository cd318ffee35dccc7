"""Super-resolution, the step below both upscale stages: Real-ESRGAN (or any spandrel model) weights resolved and
checked, one job per input, the upscaler loaded once per session, one picture upscaled into PNG bytes that carry
its source's metadata plus the step, and the run's ``upscale`` section recorded. The plain upscale stores these
pictures; the detail pass (``detail.py``) draws on them. Imports no torch until a picture is computed.

Contract: ``super_resolution(session, inputs, ...)`` plans (the settings checked in one sentence each);
``SuperResolution.compute(item, job, progress)`` makes one picture (or takes it from the store) under its lock;
``record(run_dir, items, upscaler, fields)`` merges pictures into run.json by output path.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core.errors import UserError
from ..core.hardware import cpu_has_native_bf16, gpu_likely_present
from ..core.images import (
    A1111_CHUNK,
    EXTRAS_CHUNK,
    JSON_CHUNK,
    POSTPROCESSING_CHUNK,
    a1111_postprocessing,
    a1111_upscaler_name,
)
from ..core.jobs import UpscaleJob
from ..core.runs import record_pictures
from ..core.seeds import pick_order
from ..core.store import file_digest
from .common import Item
from .upscale_time import image_size, recall_cost

log = logging.getLogger("pipeline")

@dataclass(frozen=True)
class UpscaleInput:
    path: Path  # the image to upscale
    dest: Path  # where people find the result
    seed: int | None = None


def concrete_precision(precision: str, device: str | None) -> str:
    """The precision ``auto`` means on this machine, decided without importing torch."""
    if precision != "auto":
        return precision
    on_gpu = (device or "auto").startswith(("cuda", "mps")) or (device in (None, "auto") and gpu_likely_present())
    if on_gpu:
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def scale_label(scale: float | None, native: int | None = None) -> str:
    value = scale if scale is not None else native
    if value is None:
        return "4"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def plan(session, inputs: list[UpscaleInput], *, model, scale, tile, overlap, precision):
    """The weights to use and one job per input (pure: no torch). The settings are an ``UpscaleSpec``'s, checked."""
    from ..models import upscaler_weights as weights_mod

    resolved = weights_mod.resolve_weights(model)
    weights_digest = weights_mod.weights_digest(resolved.path)
    concrete = concrete_precision(precision, session.device)
    jobs = []
    for item in inputs:
        try:
            digest = file_digest(item.path)
        except OSError as err:
            raise UserError(f"cannot read {item.path}: {err.strerror or err}") from None
        jobs.append(UpscaleJob(input=digest, weights=weights_digest, scale=float(scale or 0.0),
                               tile=-1 if tile is None else int(tile), overlap=-1 if overlap is None else int(overlap),
                               precision=concrete))
    return resolved, jobs


def load(session, weights_path: Path, precision: str, concrete: str):
    """The upscaler, loaded once per session (an estimate and the upscale that follows share it)."""
    from ..engines.upscaler import load_upscaler

    def load():
        engine = load_upscaler(weights_path, device=session.device or "auto", precision=precision)
        recall_cost(session.store.root, engine)  # measured before on this machine: no probes this time
        if engine.precision != concrete:
            log.info("upscaler runs in %s (asked for %s)", engine.precision, concrete)
        return engine

    return session.upscaler((str(weights_path), session.device, precision), load)


def upscale_one(engine, path: Path, job: UpscaleJob, tile, overlap, progress) -> bytes:
    """Upscale one image file; return PNG bytes carrying the input's metadata plus this step."""
    from ..engines.upscale_images import load_image, resize_to

    image = load_image(path)
    result = engine.upscale(image, tile=tile, overlap=overlap, progress=progress)
    if job.scale and job.scale != engine.scale:
        result = resize_to(result, job.scale, base_size=image.size)
    return encode(result, path, engine, job, tile, overlap)


def encode(image, source: Path, engine, job: UpscaleJob, tile: int | None, overlap: int | None) -> bytes:
    """PNG bytes as A1111's Extras tab writes them: the source's ``parameters`` untouched, the upscale
    in ``postprocessing`` and ``extras``; our JSON record gains an ``upscale`` step (the file's own key)."""
    import io

    from PIL import Image, PngImagePlugin

    scale = job.scale or engine.scale
    used_tile, used_overlap = engine.settings(tile, overlap, image_size(source))
    step = {"upscaler": engine.name, "weights": job.weights, "scale": scale, "tile": used_tile,
            "overlap": used_overlap if used_tile else 0, "precision": job.precision, "input": job.input,
            "key": job.key, "width": image.width, "height": image.height}
    try:
        with Image.open(source) as original:
            text = dict(getattr(original, "text", None) or {})
    except OSError:
        text = {}
    info = PngImagePlugin.PngInfo()
    if isinstance(text.get(A1111_CHUNK), str):
        info.add_text(A1111_CHUNK, text[A1111_CHUNK])
    extras = a1111_postprocessing({"Postprocess upscale by": scale,
                                   "Postprocess upscaler": a1111_upscaler_name(engine.name)})
    info.add_text(POSTPROCESSING_CHUNK, extras)
    info.add_text(EXTRAS_CHUNK, extras)
    record = {}
    if isinstance(text.get(JSON_CHUNK), str):
        try:
            record = json.loads(text[JSON_CHUNK])
        except ValueError:
            record = {}
    record["upscale"] = step
    info.add_itxt(JSON_CHUNK, json.dumps(record, sort_keys=True, ensure_ascii=False))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def upscaler_name(resolved) -> str:
    """The weights as `--upscaler` takes them: a preset's or weights folder file's name, else the file's path."""
    from ..models.upscaler_weights import SOURCE_FILE, weights_dir

    if resolved.source != SOURCE_FILE or resolved.path.parent == weights_dir():
        return resolved.name
    return str(resolved.path.resolve())


def record(run_dir: Path, items: list[Item], upscaler: str, fields: dict | None = None) -> None:
    """Merge the upscaled pictures into run.json's "upscale" section by output path, under the run's lock;
    ``fields``: more fields of each picture by key (the scale; the detail settings)."""
    entries = []
    for item in items:
        rel = str(item.path.relative_to(run_dir))
        entries.append({"seed": item.seed, "key": item.key, "path": rel, "source": item.name,
                        "upscaler": upscaler, "seconds": item.seconds, "cached": item.cached,
                        **(fields or {}).get(item.key, {})})
    record_pictures(run_dir, "upscale", entries, id_of=lambda e: e.get("path"), order=lambda e: pick_order(e.get("seed")))

class SuperResolution:
    """The super-resolution step of a set of inputs: its jobs, its loaded upscaler, computed and stored one by one
    (the plain upscale stores its pictures so; the detail pass draws on them)."""

    def __init__(self, session, resolved, jobs: list, inputs: list, tile, overlap, precision, provenance=None):
        self.session, self.resolved, self.jobs, self.inputs = session, resolved, jobs, inputs
        self.tile, self.overlap, self.precision = tile, overlap, precision
        self.provenance = provenance or {}  # which process computes (the executor's share)
        self.name = upscaler_name(resolved)
        self.scale = jobs[0].scale if jobs else None

    def engine(self):
        return load(self.session, self.resolved.path, self.precision, self.jobs[0].precision)

    def estimate_seconds(self, pairs) -> float:
        """Seconds to upscale these (input, job) pairs here (measured throughput)."""
        if not pairs:
            return 0.0
        return self.engine().estimate_seconds([image_size(item.path) for item, _ in pairs], self.tile, self.overlap)

    def windows(self, pairs) -> int:
        if not pairs:
            return 0
        engine = self.engine()
        return sum(engine.windows(*image_size(item.path), self.tile, self.overlap) for item, _ in pairs)

    def compute(self, item, job, progress):
        """Upscale one input into the store (unless another process just did); returns the artifact."""
        store = self.session.store
        with store.lock(job.key):
            artifact = store.get(job.key)
            if artifact is not None:
                return artifact
            engine = self.engine()
            if progress is not None:
                progress.start_picture(engine.windows(*image_size(item.path), self.tile, self.overlap))
            started = time.perf_counter()
            data = upscale_one(engine, item.path, job, self.tile, self.overlap,
                               progress.picture_callback if progress is not None else None)
            artifact = put(store, job, data, engine, item, time.perf_counter() - started, self.provenance)
            if progress is not None:
                progress.finish_picture()
            return artifact

    def release(self) -> None:
        """Free the upscaler before the diffusion model loads (one model on a GPU at a time)."""
        self.session.release_upscaler()

    def record(self, run_dir: Path, items: list[Item], fields: dict) -> None:
        record(run_dir, items, self.name, fields)


def super_resolution(session, inputs, *, model, scale, tile, overlap, precision, provenance=None) -> SuperResolution:
    """The checked, planned super-resolution of ``inputs`` (no torch until a picture needs computing)."""
    resolved, jobs = plan(session, inputs, model=model, scale=scale, tile=tile, overlap=overlap, precision=precision)
    return SuperResolution(session, resolved, jobs, inputs, tile, overlap, precision, provenance)


def put(store, job: UpscaleJob, data: bytes, engine, item, seconds: float, provenance: dict):
    """Store an upscaled picture's PNG bytes with its record."""
    return store.put(job.key, data, {"job": job.describe(), "seconds": round(seconds, 4), "device": str(engine.device),
                                     "precision": engine.precision, "source": str(item.path), "version": __version__,
                                     **(provenance or {})})
