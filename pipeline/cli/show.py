"""`pipeline show IMAGE`: the generation parameters a picture carries."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .common import print_json, user_errors

@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the full record as JSON")
@user_errors
def show(image, as_json):
    """Print the parameters stored in IMAGE (ours or A1111's)."""
    from ..images import read_info

    info = read_info(image)
    if as_json:
        print_json(info["pipeline"] or {"parameters": info["parameters"]})
        return
    if not info["parameters"] and not info["pipeline"]:
        raise UserError(f"{image} carries no generation parameters")
    if info["parameters"]:
        click.echo(info["parameters"])
    if info["pipeline"]:
        record = info["pipeline"]
        click.echo("")
        for name in sorted(record):
            click.echo(f"{name}: {record[name]}")
