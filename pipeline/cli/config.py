"""`pipeline config schema|show`: the JSON Schema of config files, and a config as it will run."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .common import SET_HELP, print_json, user_errors


@click.group("config")
def config_group():
    """Config files: their JSON Schema, and a config with its defaults filled in."""


@config_group.command()
@user_errors
def schema():
    """Print the JSON Schema of config files (for editors' completion and checking)."""
    from ..config.loader import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@config_group.command()
@click.argument("config", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of YAML")
@user_errors
def show(config, overrides, as_json):
    """Print CONFIG as it will run: checked, overrides applied, defaults filled in."""
    import yaml

    from ..config.loader import load_config

    loaded = load_config(config, overrides, resolve=True)
    loaded.raise_unresolved()
    data = loaded.config.resolved()
    if as_json:
        print_json(data)
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100), nl=False)
