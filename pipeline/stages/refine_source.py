"""Refine an image from disk (`refine --from IMAGE`): what its metadata says (our record, or A1111's
parameters text), the LoRAs it was made with (found by digest), and the run it goes to (its own
``from-NAME-DIGEST`` folder unless --run names one). Planning only: imports no torch."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from ..jobs import digest_bytes, variance_from_record
from ..models import display_name
from ..runs import check_run_name, resolve_run, slugify
from ..seeds import MAX_SEED
from ..specs import DEFAULT_GUIDANCE, RefineSpec
from .hires import as_hires_fix, image_size
from .refine import Pick, Plan, candidate_name, enlarge_name, refine_job, scaled_size

log = logging.getLogger("pipeline")


def plan_source(session, spec: RefineSpec, run: str | None) -> Plan:
    """The one job of `refine --from IMAGE`: its prompt, seed, negative, guidance, variance and LoRAs from
    the image's own record, else from A1111 text (prompt and seed only), else from --prompt/--seed."""
    from ..images import parse_a1111, read_info

    path = Path(spec.source).expanduser()
    info = read_info(path)  # a missing or unreadable image is a UserError
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    meta, parent_key = {}, ""
    record = info["pipeline"] if isinstance(info["pipeline"], dict) else None
    if record and isinstance(record.get("prompt"), str) and record["prompt"].strip():
        meta = {k: record[k] for k in ("prompt", "negative", "seed", "guidance", "variance", "loras") if k in record}
        parent_key = record.get("key", "") if isinstance(record.get("key"), str) else ""
        step = record.get("upscale")  # an upscaled picture: its own key is the upscale's, the rest is its source's
        if isinstance(step, dict) and isinstance(step.get("key"), str):
            parent_key = step["key"]
    elif info["parameters"]:
        parsed = parse_a1111(info["parameters"])
        # A1111's Steps and CFG scale belong to another sampler and model (typically 20-30 steps
        # at CFG 7); on Turbo they would burn the picture, so only the prompt and seed are taken.
        meta = {k: parsed[k] for k in ("prompt", "negative", "seed", "variance") if parsed.get(k) not in (None, "")}
        if parsed["settings"].get("Lora hashes") and spec.loras is None:
            log.warning("%s was made with LoRAs (%s) for another program's model; they are not applied (give "
                        "--lora to refine with a Z-Image LoRA)", path, parsed["settings"]["Lora hashes"])
    prompt = spec.prompt if spec.prompt is not None else meta.get("prompt")
    if not prompt:
        raise UserError(f"{path} carries no generation parameters: give --prompt (and --seed) to refine it")
    seed = spec.seed if spec.seed is not None else seed_of(meta.get("seed"))
    params = {
        "prompt": prompt,
        "negative": spec.negative if spec.negative is not None else str(meta.get("negative", "")),
        "guidance": spec.guidance if spec.guidance is not None else float(meta.get("guidance", DEFAULT_GUIDANCE)),
    }
    shown_size = image_size(data)  # as shown: EXIF orientation applied, as the enlarging does
    size = spec.size or scaled_size(shown_size, spec.scale)
    digest = digest_bytes(data)
    loras = source_loras(session, spec, meta.get("loras"), path)
    job = refine_job(session, spec, params, seed, size, digest if spec.mode == "hires" else "", enlarge_name(spec),
               variance_from_record(meta.get("variance")), loras)
    parent_job = record if record and [record.get("width"), record.get("height")] == shown_size else None
    job, first = as_hires_fix(job, parent_job)
    hires = spec.mode == "hires"
    pick = Pick(job, candidate_name(seed), path.resolve() if hires else None, parent_key, str(path.resolve()),
                parent_data=data if hires else None, first_pass=first, loras=loras)
    if run is not None:
        try:
            return Plan(resolve_run(session.out, run), [pick])
        except UserError:
            run_dir = session.out / check_run_name(str(run))
    else:
        run_dir = session.out / f"from-{slugify(path.stem, 30)}-{digest[:8]}"
    if (run_dir / "run.json").is_file():
        return Plan(run_dir, [pick])
    header = {"prompt": prompt, "negative": params["negative"], "model": session.model,
              "model_name": display_name(session.model), "model_fingerprint": session.fingerprint,
              "steps": job.steps, "guidance": job.guidance, "dtype": session.dtype, "source": str(path.resolve())}
    return Plan(run_dir, [pick], new_run=header)


def source_loras(session, spec: RefineSpec, records, path: Path) -> list:
    """--lora/--no-lora, else the LoRAs the image's own record names (found by digest)."""
    if spec.loras is not None:
        return session.resolve_loras(spec.loras)
    if not isinstance(records, list) or not records:
        return []
    from ..engines.lora import from_records

    loras = from_records(records, session.model, session.lora_paths)
    session.register_loras(loras, str(path))
    return loras


def seed_of(value) -> int:
    """A seed from an image's metadata; 0 when absent or not one of ours (A1111 writes -1 for random)."""
    try:
        seed = int(value)
    except (TypeError, ValueError):
        return 0
    return seed if 0 <= seed <= MAX_SEED else 0
