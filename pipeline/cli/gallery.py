"""`pipeline gallery [RUN]`: rebuild a run's index.html and print its path."""
from __future__ import annotations

import os
from pathlib import Path

import click

from .common import user_errors


@click.command()
@click.argument("run", required=False, metavar="[RUN]")
@click.option("--out", default=None, metavar="DIR", help="output folder [default: $PIPELINE_OUT or outputs]")
@click.option("--open", "open_page", is_flag=True, help="open the page in the default web browser")
@user_errors
def gallery(run, out, open_page):
    """Rebuild RUN/index.html (the page to look at a run and pick seeds) and print its path.

    RUN is a run folder or its name in --out; the latest run when left out.
    """
    from ..web.gallery import build_gallery

    page = build_gallery(Path(out or os.environ.get("PIPELINE_OUT", "outputs")), run)
    click.echo(str(page))
    if open_page:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            click.echo("warning: no web browser found; open the path above yourself", err=True)
