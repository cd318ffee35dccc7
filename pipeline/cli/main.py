"""Command line: parse, call the library, print. No logic lives here.

`main` is the `pipeline` command; each subcommand lives in its own module and only imports
`common`, so the package has no import cycle. Importing it stays cheap (no torch, no diffusers).
"""
from __future__ import annotations

import click

from . import config, explore, gallery, inpaint, refine, repair, run, show, ui, upscale, vary, weights
from .common import closed_pipe_exit, setup_logging


class _Group(click.Group):
    """Refuses, before any option is converted, arguments no file name or prompt can hold."""

    def parse_args(self, ctx, args):
        for arg in args:
            problem = ("a NUL character" if "\0" in arg else
                       "bytes that are not valid UTF-8" if any("\ud800" <= c <= "\udfff" for c in arg) else None)
            if problem:
                click.echo(f"error: argument {arg[:60]!r} holds {problem}", err=True)
                ctx.exit(2)
        ctx.meta["pipeline.argv"] = list(args)
        try:
            return super().parse_args(ctx, args)  # `pipeline --help | head -1`
        except BrokenPipeError:
            closed_pipe_exit()

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)  # a command's output cut short by a closed pipe (also its --help)
        except BrokenPipeError:
            closed_pipe_exit()
        except click.NoSuchOption as err:
            _no_such_option(ctx, err)


def _no_such_option(ctx, err: click.NoSuchOption) -> None:
    """`pipeline explore "-a fox"`: click takes the prompt for an option. One sentence that says
    to put -- first (and click's guess, when it has one), exit status 2."""
    import shlex

    command = err.ctx.command if err.ctx is not None else None
    arguments = [p for p in getattr(command, "params", []) if isinstance(p, click.Argument)]
    guess = f" (did you mean {', '.join(sorted(err.possibilities))}?)" if err.possibilities else ""
    where = f"pipeline {err.ctx.info_name}" if err.ctx is not None and err.ctx.parent is not None else "pipeline"
    message = f"error: {where} has no option {err.option_name}{guess}"
    if arguments and not err.possibilities:  # no option it resembles: likely a prompt or file name
        raw = next((a for a in ctx.meta.get("pipeline.argv", []) if a.startswith(err.option_name)), err.option_name)
        name = arguments[0].human_readable_name
        message += (f"; a {name} that starts with '-' goes after --, e.g. "
                    f"pipeline {err.ctx.info_name} -- {shlex.quote(raw)}")
    click.echo(message, err=True)
    ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="say more about what happens (model loading, devices)")
@click.version_option(package_name="pipeline", message="pipeline %(version)s")
def main(verbose):
    """Explore many quick 512² Z-Image-Turbo candidates, refine the ones you pick at 1024²,
    and upscale them with Real-ESRGAN — cached on disk, made for 8–12 GB GPUs.

    \b
      pipeline explore "a red fox in snow" --count 16
      pipeline refine --seeds 42,97
      pipeline upscale
    """
    setup_logging(verbose)
    from ..scale.distributed import quiet_other_processes

    quiet_other_processes()  # under accelerate launch / torchrun only the main process prints results


for command in (explore.explore, refine.refine, upscale.upscale, weights.weights, show.show, gallery.gallery,
                run.run, config.config_group, repair.repair, vary.vary, inpaint.inpaint, ui.ui):
    main.add_command(command)
