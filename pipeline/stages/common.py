"""What every stage shares: result types, batching, storing a rendered picture."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__
from ..core.metadata import encode_png
from ..models.names import display_name
from ..core.store import Artifact


@dataclass
class Item:
    """One picture of a stage: where it is, which job made it, whether it came from the store."""

    seed: int | None
    path: Path
    key: str
    cached: bool
    seconds: float
    name: str = ""

    def to_json(self) -> dict:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass
class StageResult:
    stage: str
    run_dir: Path | None
    items: list[Item] = field(default_factory=list)
    planned: int = 0
    stored: int = 0  # jobs found in the store
    computed: int = 0  # jobs computed now
    dry_run: bool = False
    fixes: list[Item] = field(default_factory=list)  # --detail-faces: the face pass's pictures (inpaint 42i1, ...)

    @property
    def seeds(self) -> list[int]:
        return [item.seed for item in self.items]

    @property
    def paths(self) -> list[Path]:
        return [item.path for item in self.items]

    def to_json(self) -> dict:
        return {
            "stage": self.stage,
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "planned": self.planned,
            "stored": self.stored,
            "computed": self.computed,
            "dry_run": self.dry_run,
            "items": [item.to_json() for item in self.items],
            **({"fixes": [item.to_json() for item in self.fixes]} if self.fixes else {}),
        }


def batches(jobs: list, size: int, group=lambda job: job.batch_group()):
    """Split jobs into batches of at most ``size`` whose ``group`` (``batch_group()``) is equal."""
    groups: dict[tuple, list] = {}
    for job in jobs:
        groups.setdefault(group(job), []).append(job)
    for group in groups.values():
        for start in range(0, len(group), size):
            yield group[start:start + size]


def resolve_batch(batch, engine, size) -> int:
    if batch != "auto":
        return int(batch)
    if engine.device == "cpu":
        return 1  # on the CPU a batch shares nothing; single images keep the progress bar honest
    if str(engine.device).startswith("cuda") and hasattr(engine, "auto_batch"):
        return engine.auto_batch(size[0], size[1])  # from free memory under the chosen profile
    return 4 if size[0] * size[1] <= 768 * 768 else 1


def png_params(job, model: str, **extra) -> dict:
    """The deterministic metadata written into a picture (no timings: equal jobs, equal bytes)."""
    return {**job.describe(), "key": job.key, "model_name": display_name(model), "version": f"pipeline {__version__}",
            **extra}


def store_picture(store, job, image, model: str, *, seconds: float, engine, provenance: dict | None = None,
                  **extra) -> Artifact:
    """Encode and store a rendered picture; ``provenance``: which process computed it (the executor's share)."""
    return store.put(job.key, *encode_picture(job, image, model, seconds=seconds, engine=engine,
                                              provenance=provenance, **extra))


def encode_picture(job, image, model: str, *, seconds: float, engine, provenance: dict | None = None,
                   **extra) -> tuple[bytes, dict]:
    """(PNG bytes, store record) of a rendered picture: what ``store_picture`` stores, and what a Ray
    worker sends back for the driver to store."""
    params = png_params(job, model, **extra)
    record = {
        "job": job.describe(),
        "model": model,
        "seconds": round(seconds, 4),
        "device": engine.device,
        "profile": engine.profile,
        "peak_memory_bytes": engine.peak_memory_bytes(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "version": __version__,
        **(provenance or {}),  # which process computed it, under accelerate launch / torchrun
    }
    return encode_png(image, params), record


def progress_bar(total: int, enabled: bool, desc: str, unit: str = "img"):
    """A tqdm bar on a terminal; elsewhere (a log file, a pipe) a ``LineProgress`` that writes one
    line when the stage ends, instead of a bar's hundreds of carriage returns."""
    if not enabled or total == 0:  # the caller enables one bar: the main process's
        return None
    if not stderr_is_terminal():
        return LineProgress(total, desc, unit)
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def stderr_is_terminal() -> bool:
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """A progress bar's stand-in where stderr is not a terminal: ``explore: 16 img in 41.2 s``, once."""

    def __init__(self, total: int, desc: str, unit: str):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.started = time.perf_counter()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.n:  # nothing done (an error before the first one): the error says what happened
            return
        import sys

        seconds = time.perf_counter() - self.started
        done = f"{self.n} of {self.total}" if self.n != self.total else str(self.n)
        unit = self.unit if self.total == 1 or self.unit == "img" else f"{self.unit}s"  # 2 tiles; img stays
        print(f"{self.desc}: {done} {unit} in {seconds:.1f} s", file=sys.stderr, flush=True)


def run_variance(data: dict, pick):
    """The --variance of a run's candidate ``pick`` (a seed or variation id): the run's settings, seeded
    by the seed it descends from, so refine and vary use the conditioning the candidate was made with."""
    from ..core.jobs import variance_from_record
    from ..core.seeds import pick_root

    settings = data.get("variance")
    if not isinstance(settings, dict):
        return None
    return variance_from_record({**settings, "seed": pick_root(pick)})


def candidate_loras(session, data: dict, candidate: dict, what: str) -> list:
    """The LoRAs a run's candidate was made with (its own entry's, else the run's)."""
    records = candidate["loras"] if isinstance(candidate.get("loras"), list) else data.get("loras")
    return recorded_loras(session, records, what)


def recorded_loras(session, records, what: str) -> list:
    """The LoRAs a record lists, found again by digest in the known folders; a missing file is one sentence
    naming it (and ``what`` needs it) when a picture needs computing."""
    if not isinstance(records, list) or not records:
        return []
    from ..models.loras import from_records

    loras = from_records(records, session.model, session.lora_paths)
    session.register_loras(loras, what)
    return loras


def our_record(info: dict) -> dict | None:
    """A picture's record of ours (``images.read_info``), when it says how the picture was made (a prompt)."""
    record = info["pipeline"]
    return record if isinstance(record, dict) and isinstance(record.get("prompt"), str) and \
        record["prompt"].strip() else None


def recorded_meta(info: dict) -> dict:
    """How a picture was made, from its metadata (``images.read_info``): prompt, negative, seed, guidance,
    variance and LoRAs from our record; else prompt, negative, seed and variance from A1111's text (its Steps
    and CFG scale belong to another sampler and model: on Turbo they would burn the picture), with its
    ``Lora hashes`` as ``lora_hashes`` (another program's LoRAs: never applied); else nothing."""
    from ..core.images import parse_a1111

    record = our_record(info)
    if record is not None:
        return {k: record[k] for k in ("prompt", "negative", "seed", "guidance", "variance", "loras") if k in record}
    if not info["parameters"]:
        return {}
    parsed = parse_a1111(info["parameters"])
    meta = {k: parsed[k] for k in ("prompt", "negative", "seed", "variance") if parsed.get(k) not in (None, "")}
    if parsed["settings"].get("Lora hashes"):
        meta["lora_hashes"] = parsed["settings"]["Lora hashes"]
    return meta


def recorded_seed(value) -> int:
    """A seed from a picture's metadata; 0 when absent or not one of ours (A1111 writes -1 for random)."""
    from ..core.seeds import MAX_SEED

    try:
        seed = int(value)
    except (TypeError, ValueError):
        return 0
    return seed if 0 <= seed <= MAX_SEED else 0


def check_loras(engine, jobs) -> None:
    """Have the engine read and check the LoRAs these jobs use, before the first picture is written
    (a LoRA made for another model fails here). Jobs without LoRAs ask nothing of the engine."""
    if any(getattr(job, "loras", None) for job in jobs):
        engine.check_loras(jobs)
