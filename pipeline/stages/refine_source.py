"""Refine an image from disk (`refine --from IMAGE`): what its metadata says (our record, or A1111's
parameters text), the LoRAs it was made with (found by digest), and the run it goes to (its own
``from-NAME-DIGEST`` folder unless --run names one). Planning only: imports no torch."""
from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import UserError
from ..core.jobs import digest_bytes, variance_from_record
from ..models.names import display_name
from ..core.runs import check_run_name, resolve_run, slugify
from .specs import DEFAULT_GUIDANCE, RefineSpec
from .common import our_record, recorded_loras, recorded_meta, recorded_seed
from .hires import as_hires_fix, image_size
from .refine_jobs import Pick, Plan, candidate_name, enlarge_name, refine_job, scaled_size

log = logging.getLogger("pipeline")


def plan_source(session, spec: RefineSpec, run: str | None) -> Plan:
    """The one job of `refine --from IMAGE`: its prompt, seed, negative, guidance, variance and LoRAs from
    the image's own record, else from A1111 text (prompt and seed only), else from --prompt/--seed."""
    from ..core.images import read_info

    path = Path(spec.source).expanduser()
    info = read_info(path)  # a missing or unreadable image is a UserError
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read {path}: {err.strerror or err}") from None
    meta, parent_key = recorded_meta(info), ""
    ours = our_record(info)
    if ours is not None:
        parent_key = ours.get("key", "") if isinstance(ours.get("key"), str) else ""
        step = ours.get("upscale")  # an upscaled picture: its own key is the upscale's, the rest is its source's
        if isinstance(step, dict) and isinstance(step.get("key"), str):
            parent_key = step["key"]
    if meta.get("lora_hashes") and spec.loras is None:
        log.warning("%s was made with LoRAs (%s) for another program's model; they are not applied (give "
                    "--lora to refine with a Z-Image LoRA)", path, meta["lora_hashes"])
    prompt = spec.prompt if spec.prompt is not None else meta.get("prompt")
    if not prompt:
        raise UserError(f"{path} carries no generation parameters: give --prompt (and --seed) to refine it")
    seed = spec.seed if spec.seed is not None else recorded_seed(meta.get("seed"))
    params = {
        "prompt": prompt,
        "negative": spec.negative if spec.negative is not None else str(meta.get("negative", "")),
        "guidance": spec.guidance if spec.guidance is not None else float(meta.get("guidance", DEFAULT_GUIDANCE)),
    }
    shown_size = image_size(data)  # as shown: EXIF orientation applied, as the enlarging does
    size = spec.size or scaled_size(shown_size, spec.scale)
    digest = digest_bytes(data)
    loras = session.resolve_loras(spec.loras) if spec.loras is not None else \
        recorded_loras(session, meta.get("loras"), str(path))  # --lora/--no-lora, else the image's own
    job = refine_job(session, spec, params, seed, size, digest if spec.mode == "hires" else "", enlarge_name(spec),
                     variance_from_record(meta.get("variance")), loras)
    record = info["pipeline"] if isinstance(info["pipeline"], dict) else None  # any record of ours: its first pass
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
