"""`pipeline run CONFIG`: the stages a config file describes, for each of its prompts."""
from __future__ import annotations

from pathlib import Path

import click

from .common import SET_HELP, plural, print_json, ray_option, requested_ray, user_errors


@click.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--dry-run", is_flag=True, help="show, per stage, how many jobs are stored and to compute; load no model")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@ray_option()
@user_errors
def run(config, overrides, dry_run, as_json):
    """Run the stages a CONFIG file describes (explore, refine, upscale), for each of its prompts.

    \b
      pipeline run configs/smoke.yaml
      pipeline run configs/fox.yaml --set refine.picks=42,97 --set upscale.scale=2
      pipeline run configs/fox.yaml --dry-run
    """
    from ..config.loader import load_config
    from ..runner import run_config

    loaded = load_config(config, overrides, resolve=True)
    result = run_config(loaded, dry_run=dry_run, progress=not as_json, ray=requested_ray())
    if as_json:
        print_json(result.to_json())
        return
    several = len(result.runs) > 1
    for outcome in result.runs:
        click.echo(f"{outcome.name}  ({outcome.run_dir})")
        for name, stage in outcome.stages.items():
            click.echo(f"  {name:8} {_describe(stage, dry_run)}")
        if several and not dry_run and (outcome.run_dir / "index.html").is_file():
            click.echo(f"  gallery  {outcome.run_dir / 'index.html'}")  # each prompt's run has its own page
    if not dry_run and result.runs:
        latest = next((o.run_dir for o in reversed(result.runs) if (o.run_dir / "index.html").is_file()), None)
        totals = result.totals()
        computed = sum(t["computed"] for t in totals.values())
        stored = sum(t["stored"] for t in totals.values())
        click.echo(f"done: {computed} computed, {stored} reused from the store")
        if latest is not None and not several:
            click.echo(f"gallery: {latest / 'index.html'}")


def _describe(stage, dry_run: bool) -> str:
    what = plural(stage.planned, "candidate" if stage.stage == "explore" else "picture")
    if stage.stored is None:
        return f"{what}: stored / to compute known once {stage.waits_for} has run"
    if dry_run:
        return f"{what}: {stage.stored} stored, {stage.computed} to compute"
    folder = Path(stage.items[0].path).parent if stage.items else ""
    return f"{stage.computed} computed, {stage.stored} reused from the store   {folder}/"
