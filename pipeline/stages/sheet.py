"""The contact sheet of a run's candidates (``explore/contact.png``): explore writes it, vary refreshes it.
A picture, not a page: the HTML views are the API's to refresh."""
from __future__ import annotations

import io
from pathlib import Path

from ..core.images import contact_sheet, lora_label
from ..core.jobs import digest_bytes
from ..core.runs import load_run, stage_pictures, update_run, write_error
from ..core.store import atomic_write


def _sheet_label(candidate: dict) -> str:
    if isinstance(candidate["seed"], str):  # a variation (pipeline vary): its id and strength
        strength = candidate.get("strength")
        return f"{candidate['seed']} · vary {strength:g}" if isinstance(strength, float) else candidate["seed"]
    return f"seed {candidate['seed']}"


def write_contact_sheet(out_dir: Path, data: dict, run_dir: Path) -> None:
    candidates = stage_pictures(data, "explore")
    entries = [(_sheet_label(c), run_dir / c["path"]) for c in candidates if (run_dir / c["path"]).is_file()]
    if not entries:
        return
    path = out_dir / "contact.png"
    title = f"LoRA: {lora_label(data['loras'])}" if data.get("loras") else ""
    # the sheet shows exactly these pictures: skip the redraw (most of a cached re-run's time) when unchanged
    signature = digest_bytes("\n".join([title] * bool(title) + [f"{c['seed']} {c['key']}" for c in candidates])
                             .encode())
    if path.is_file() and data["explore"].get("contact_sheet") == signature:
        return
    data["explore"]["contact_sheet"] = signature
    sheet = contact_sheet(entries, title=title)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    try:
        atomic_write(path, buffer.getvalue())  # a unique temp file: two processes may write it at once
    except OSError as err:
        raise write_error(path, err) from err


def refresh_contact_sheet(run_dir: Path) -> None:
    """Redraw the run's sheet from run.json (now with variations beside their parents) and record its signature."""
    data = load_run(run_dir)
    if not data.get("explore"):
        return
    write_contact_sheet(run_dir / "explore", data, run_dir)
    signature = data["explore"].get("contact_sheet")
    update_run(run_dir, lambda current: current.setdefault("explore", {}).update(contact_sheet=signature))
