"""`pipeline run CONFIG` and `pipeline config schema|show`: config-driven runs."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import main, print_json, user_errors

_SET_HELP = "override a key, e.g. --set refine.picks=42,97 --set upscale.scale=2 (the value is YAML); repeatable"


@main.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--dry-run", is_flag=True, help="show, per stage, how many jobs are stored and to compute; load no model")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@user_errors
def run(config, overrides, dry_run, as_json):
    """Run the stages a CONFIG file describes (explore, refine, upscale), for each of its prompts.

    \b
      pipeline run configs/smoke.yaml
      pipeline run configs/fox.yaml --set refine.picks=42,97 --set upscale.scale=2
      pipeline run configs/fox.yaml --dry-run
    """
    from .config import load_config
    from .runner import run_config

    loaded = load_config(config, overrides)
    result = run_config(loaded, dry_run=dry_run, progress=not as_json)
    if as_json:
        print_json(result.to_json())
        return
    for outcome in result.runs:
        click.echo(f"{outcome.name}  ({outcome.run_dir})")
        for name, stage in outcome.stages.items():
            click.echo(f"  {name:8} {_describe(stage, dry_run)}")
    if not dry_run and result.runs:
        latest = next((o.run_dir for o in reversed(result.runs) if (o.run_dir / "index.html").is_file()), None)
        totals = result.totals()
        computed = sum(t["computed"] for t in totals.values())
        stored = sum(t["stored"] for t in totals.values())
        click.echo(f"done: {computed} computed, {stored} reused from the store")
        if latest is not None:
            click.echo(f"gallery: {latest / 'index.html'}")


def _describe(stage, dry_run: bool) -> str:
    what = "candidates" if stage.stage == "explore" else "pictures"
    if stage.stored is None:
        return f"{stage.planned} {what}: stored / to compute known once {stage.waits_for} has run"
    if dry_run:
        return f"{stage.planned} {what}: {stage.stored} stored, {stage.computed} to compute"
    folder = Path(stage.items[0].path).parent if stage.items else ""
    return f"{stage.computed} computed, {stage.stored} reused from the store   {folder}/"


@main.group("config")
def config_group():
    """Config files: their JSON Schema, and a config with its defaults filled in."""


@config_group.command()
@user_errors
def schema():
    """Print the JSON Schema of config files (for editors' completion and checking)."""
    from .config import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@config_group.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of YAML")
@user_errors
def show(config, overrides, as_json):
    """Print CONFIG as it will run: checked, overrides applied, defaults filled in."""
    import yaml

    from .config import load_config

    data = load_config(config, overrides).config.resolved()
    if as_json:
        print_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), nl=False)
