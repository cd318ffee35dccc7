"""`pipeline repair RUN`: rebuild a run's run.json from the store and the pictures in its folder."""
from __future__ import annotations

import os
from pathlib import Path

import click

from .common import print_json, user_errors


@click.command()
@click.argument("run", metavar="RUN")
@click.option("--out", default=None, metavar="DIR", help="output folder holding RUN [default: $PIPELINE_OUT or outputs]")
@click.option("--force", is_flag=True, help="rebuild run.json even when it reads fine (the old one is kept)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@user_errors
def repair(run, out, force, as_json):
    """Rebuild RUN/run.json from the store when it is missing or corrupt; add the pictures it lacks.

    RUN is a run folder or its name in --out. Each picture under RUN/explore, RUN/refine and
    RUN/upscale is matched to its store record by its sha256; the record holds the job that made
    it. A corrupt run.json is kept as run.json.corrupt-<time>. The store is OUT/.store, or
    $PIPELINE_STORE. A run.json that reads fine gains the pictures of RUN's stage folders it
    does not list (from their store record, else the record inside the PNG); nothing else changes.
    """
    from ..api import Pipeline

    if out is None and Path(run).is_dir():  # a run folder: its store is next to it
        out = Path(run).resolve().parent
    out = Path(out or os.environ.get("PIPELINE_OUT", "outputs"))
    with Pipeline(out=out) as p:
        result = p.repair(run, force=force)
    if as_json:
        print_json(result.to_json())
        return
    if not result.rebuilt:
        added = ", ".join(f"{n} {stage}" for stage, n in result.added.items() if n)
        if added:
            click.echo(f"repair: added to {result.run_dir / 'run.json'} the pictures it lacked: {added}")
        else:
            click.echo(f"repair: {result.run_dir / 'run.json'} reads fine; nothing to do (--force rebuilds it)")
        for picture in result.unknown:
            click.echo(f"  not recorded (no record of it in the store or in the file): {picture}")
        return
    counts = ", ".join(f"{n} {stage}" for stage, n in result.recorded.items() if n) or "no pictures"
    click.echo(f"repair: rebuilt {result.run_dir / 'run.json'} ({result.reason}): {counts}")
    if result.kept_as:
        click.echo(f"  the old run.json is kept as {result.kept_as}")
    for picture in result.unknown:
        click.echo(f"  not in the store, not recorded: {picture}")
