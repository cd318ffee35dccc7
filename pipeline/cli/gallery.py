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
    from ..core.errors import UserError
    from ..web.gallery import build_gallery

    try:
        page = build_gallery(Path(out or os.environ.get("PIPELINE_OUT", "outputs")), run)
    except UserError as err:
        raise UserError(_as_argument(str(err))) from None
    click.echo(str(page))
    if open_page:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            click.echo("warning: no web browser found; open the path above yourself", err=True)


def _as_argument(sentence: str) -> str:
    """The hints of the stages name ``--run``; gallery takes the run as its argument."""
    return (sentence.replace("pass --run NAME, e.g. --run ", "give the run, e.g. pipeline gallery ")
            .replace("or pass --run", "or give the run: pipeline gallery RUN"))
