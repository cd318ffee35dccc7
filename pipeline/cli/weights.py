"""`pipeline weights`: which upscaler weights are here, and where they come from."""
from __future__ import annotations

import click

from .common import user_errors


@click.command()
@user_errors
def weights():
    """List the upscaler weights, the LoRAs and the ControlNets available, and where they came from."""
    import os

    from ..models.loras import list_loras, lora_folders
    from ..models.upscaler_weights import list_weights, weights_dir

    click.echo(f"weights folder: {weights_dir()}  (set PIPELINE_WEIGHTS to change)")
    for info in list_weights():
        where = str(info.path) if info.path else "not here yet (downloaded or converted on first use)"
        click.echo(f"  {info.name:28} {info.source:42} {where}")
    model = os.environ.get("PIPELINE_MODEL")
    click.echo(f"LoRAs (--lora NAME), looked for in: {', '.join(str(f) for f in lora_folders(model))}")
    found = list_loras(model)
    for file in found:
        click.echo(f"  {file.name:28} {file.size / 2**20:8.1f} MiB   {file.path}")
    if not found:
        click.echo("  none (put .safetensors LoRAs in the first folder, or set PIPELINE_LORAS)")
    from ..models import controlnets

    click.echo(f"ControlNets (--control-model NAME), looked for in: "
               f"{', '.join(str(f) for f in controlnets.controlnet_folders(model))}")
    found_cn = controlnets.list_controlnets(model)
    for entry in found_cn:
        click.echo(f"  {entry.name:28} {entry.size / 2**20:8.1f} MiB   {controlnets.describe(entry)}   {entry.path}")
    if not found_cn:
        click.echo(f"  none (put {controlnets.UNION_FILE} or {controlnets.TILE_FILE} from {controlnets.UNION_REPO} "
                   "in the first folder)")
