"""Command line: parse, call the library, print. No logic lives here.

Importing this module must stay cheap (no torch, no diffusers): `pipeline --help` is instant.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from .errors import UserError

log = logging.getLogger("pipeline")


class _StderrHandler(logging.Handler):
    def emit(self, record):
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        tqdm = sys.modules.get("tqdm")
        if tqdm is not None:  # a progress bar may be drawn: clear it, write the line, redraw it
            with tqdm.tqdm.external_write_mode(file=sys.stderr):
                click.echo(f"{prefix}{record.getMessage()}", err=True)
        else:
            click.echo(f"{prefix}{record.getMessage()}", err=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def _setup_logging(verbose: bool) -> None:
    import warnings

    warnings.showwarning = _show_warning
    if not verbose:  # the libraries' own chatter (set before they are imported)
        os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
    log.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("pipeline.status").setLevel(logging.INFO)  # "loading …", "encoding …": on stderr, always
    log.propagate = False


def user_errors(func):
    """Every user error is one sentence on stderr and exit status 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UnicodeError:  # e.g. a path or prompt holding bytes that are not UTF-8 (surrogate escapes)
            click.echo("error: an argument holds bytes that are not valid UTF-8; pass UTF-8 text", err=True)
            sys.exit(2)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished pictures are stored; run the same command again to resume", err=True)
            sys.exit(130)
        except MemoryError:
            click.echo("error: out of memory; try a smaller --batch or --size, or a lower --memory profile", err=True)
            sys.exit(2)
        except OSError as err:  # unexpected file-system trouble, e.g. a disk that filled up
            from .store import write_error

            click.echo(f"error: {write_error(Path(err.filename or '?'), err)}", err=True)
            sys.exit(2)

    return wrapper


def session_options(func):
    """Options every model-using command shares."""
    options = [
        click.option("--model", default=None, metavar="MODEL",
                     help="Hugging Face repo id, local diffusers folder, or tiny-random "
                          "[default: $PIPELINE_MODEL or Tongyi-MAI/Z-Image-Turbo]"),
        click.option("--out", default=None, metavar="DIR", help="output folder [default: $PIPELINE_OUT or outputs]"),
        click.option("--device", default=None, metavar="DEV", help="cuda, cuda:1, mps or cpu [default: best available]"),
        click.option("--dtype", type=click.Choice(["auto", "bf16", "fp16", "fp32"]), default="auto", show_default=True,
                     help="compute precision: auto is bf16 on GPUs and bf16-capable CPUs, else fp32"),
        click.option("--memory", type=click.Choice(["auto", "full", "balanced", "low", "minimal"]), default="auto",
                     show_default=True, help="GPU memory profile: full is fastest, minimal needs least; auto picks "
                                             "from free VRAM and the size"),
        click.option("--transformer", default=None, metavar="PATH", expose_value=False, callback=_engine_option,
                     help="single-file transformer checkpoint (.safetensors or .gguf) instead of the model's"),
        click.option("--weights-dtype", type=click.Choice(["fp8"]), default=None, expose_value=False,
                     callback=_engine_option, help="store transformer weights in float8 (half the memory; slight "
                                                   "quality loss)"),
        click.option("--compile", is_flag=True, default=None, expose_value=False, callback=_engine_option,
                     help="torch.compile the transformer (slow first render, faster after)"),
        click.option("--attention", default=None, metavar="BACKEND", expose_value=False, callback=_engine_option,
                     help="attention backend, e.g. flash, sage, _native_flash [default: PyTorch SDPA]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _engine_option(ctx, param, value):
    """--transformer/--weights-dtype/--compile/--attention reach make_pipeline through the context,
    so commands keep their signatures."""
    if value not in (None, False):
        ctx.meta.setdefault("pipeline.engine_options", {})[param.name] = value
    return value


def make_pipeline(model, out, device, dtype, memory, progress=True):
    from .api import Pipeline

    ctx = click.get_current_context(silent=True)
    extra = dict(ctx.meta.get("pipeline.engine_options", {})) if ctx is not None else {}
    return Pipeline(model=model, out=out or os.environ.get("PIPELINE_OUT", "outputs"), device=device, dtype=dtype,
                    memory=memory, progress=progress, **extra)


def resolve_out(out: str | None, run: str | None = None) -> Path:
    """The output folder: --out, else the parent of a --run given as a folder path, else $PIPELINE_OUT or outputs.

    So `pipeline refine --run /somewhere/outputs/<run> --seeds 3` works from any directory.
    """
    if out:
        return Path(out)
    if run and (Path(run) / "run.json").is_file() and ("/" in str(run) or os.sep in str(run)):
        return Path(run).resolve().parent
    return Path(os.environ.get("PIPELINE_OUT", "outputs"))


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def report(result, as_json: bool, what: str = "pictures") -> bool:
    """Print a stage's result: the JSON document, the dry-run plan, or the computed/reused line.

    Returns True when nothing more is to be printed (JSON or dry run)."""
    if as_json:
        print_json(result.to_json())
        return True
    if result.dry_run:
        click.echo(f"{result.stage}: {result.planned} {what}, {result.stored} stored, {result.computed} to compute")
        return True
    click.echo(f"{result.stage}: {result.computed} computed, {result.stored} reused from the store")
    return False


class _Group(click.Group):
    """Refuses, before any option is converted, arguments no file name or prompt can hold."""

    def parse_args(self, ctx, args):
        for arg in args:
            problem = ("a NUL character" if "\0" in arg else
                       "bytes that are not valid UTF-8" if any("\ud800" <= c <= "\udfff" for c in arg) else None)
            if problem:
                click.echo(f"error: argument {arg[:60]!r} holds {problem}", err=True)
                ctx.exit(2)
        return super().parse_args(ctx, args)


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
    _setup_logging(verbose)
    from .distributed import quiet_other_processes

    quiet_other_processes()  # under accelerate launch / torchrun only the main process prints results


@main.command()
@click.argument("prompt")
@click.option("--negative", default="", help="negative prompt (used only with --guidance > 0)")
@click.option("--seeds", default=None, metavar="SPEC", help="seeds to render, e.g. 1,2,10-20")
@click.option("--count", type=int, default=None, help="render COUNT seeds from --seed [default: 16]")
@click.option("--seed", type=int, default=None, help="first seed for --count [default: random]")
@click.option("--size", default="512", show_default=True, metavar="SIZE",
              help="512, WIDTHxHEIGHT, or square/portrait/landscape/tall/wide")
@click.option("--steps", type=int, default=8, show_default=True, help="denoising steps (transformer calls)")
@click.option("--guidance", type=float, default=0.0, show_default=True, help="CFG scale; > 0 doubles the cost")
@click.option("--run", "run_name", default=None, metavar="NAME", help="run folder name [default: <time>-<prompt>]")
@click.option("--batch", default="auto", show_default=True, metavar="N", help="images denoised together")
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def explore(prompt, negative, seeds, count, seed, size, steps, guidance, run_name, batch, dry_run, as_json,
            model, out, device, dtype, memory):
    """Render many candidates of PROMPT across seeds, to pick from."""
    from .jobs import parse_size

    if seeds is None and count is None:
        count = 16
    if negative and guidance == 0:
        log.warning("--negative has no effect with --guidance 0 (Turbo's default); set --guidance above 0 to use it")
    batch_value = _parse_batch(batch)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        result = p.explore(prompt, seeds=seeds, count=count, seed=seed, size=parse_size(size), steps=steps,
                           guidance=guidance, negative=negative, batch=batch_value, run=run_name, dry_run=dry_run)
    if report(result, as_json, "candidates"):
        return
    run_dir = result.run_dir
    click.echo(f"  pictures:      {run_dir / 'explore'}/")
    click.echo(f"  contact sheet: {run_dir / 'explore' / 'contact.png'}")
    if (run_dir / "index.html").is_file():
        click.echo(f"  gallery:       {run_dir / 'index.html'}")
    picks = ",".join(str(s) for s in result.seeds[:2])
    click.echo(f"next: pipeline refine --seeds {picks}   (pick the seeds you like)")


def _parse_batch(batch: str):
    if batch == "auto":
        return "auto"
    try:
        return int(batch)
    except ValueError:
        raise UserError(f"--batch must be a whole number or auto, not {batch!r}") from None


@main.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the full record as JSON")
@user_errors
def show(image, as_json):
    """Print the parameters stored in IMAGE (ours or A1111's)."""
    from .images import read_info

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
from . import cli_refine  # noqa: E402,F401
from . import cli_gallery  # noqa: E402,F401
from . import cli_upscale  # noqa: E402,F401
from . import cli_run  # noqa: E402,F401
from . import cli_repair  # noqa: E402,F401
