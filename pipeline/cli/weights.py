"""`pipeline weights`: which upscaler weights are here, and where they come from."""
from __future__ import annotations

import click

from .common import user_errors


@click.command()
@user_errors
def weights():
    """List the upscaler weights available and where they came from."""
    from ..engines.weights import list_weights, weights_dir

    click.echo(f"weights folder: {weights_dir()}  (set PIPELINE_WEIGHTS to change)")
    for info in list_weights():
        where = str(info.path) if info.path else "not here yet (downloaded or converted on first use)"
        click.echo(f"  {info.name:28} {info.source:42} {where}")
