"""What the commands share: logging, the user-error wrapper, session options, output helpers.

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

from ..core.errors import UserError

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


def setup_logging(verbose: bool) -> None:
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


def closed_pipe_exit():
    """Whoever read our output stopped reading (`pipeline show IMG | head -1`): exit quietly with
    status 0, as git and ls do. stdout goes to /dev/null so the final flush cannot fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(0)


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
            _remove_empty_out()
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: finished pictures are stored; run the same command again to resume", err=True)
            sys.exit(130)
        except BrokenPipeError:
            closed_pipe_exit()
        except MemoryError:
            click.echo("error: out of memory; try a smaller --batch or --size, or a lower --memory profile", err=True)
            sys.exit(2)
        except OSError as err:  # unexpected file-system trouble, e.g. a disk that filled up
            from ..core.store import write_error

            click.echo(f"error: {write_error(Path(err.filename or '?'), err)}", err=True)
            sys.exit(2)

    return wrapper


def session_options(func):
    """Options every model-using command shares."""
    options = [
        click.option("--model", default=None, metavar="MODEL",
                     help="Hugging Face repo id (ORG/NAME or ORG/NAME@REVISION, from the local cache), local "
                          "diffusers folder, ComfyUI install or models folder, or tiny-random "
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
        click.option("--text-encoder", default=None, metavar="PATH", expose_value=False, callback=_engine_option,
                     help="single-file Qwen3-4B text encoder (.safetensors, e.g. ComfyUI's qwen_3_4b) instead of "
                          "the model's"),
        click.option("--vae", default=None, metavar="PATH", expose_value=False, callback=_engine_option,
                     help="single-file VAE (.safetensors, e.g. ComfyUI's ae.safetensors) instead of the model's"),
        click.option("--weights-dtype", type=click.Choice(["int8", "fp8"]), default=None, expose_value=False,
                     callback=_engine_option, help="store the transformer's weights in 8 bits (half the memory, so "
                                                   "it stays on a 12 GB card; pictures differ slightly): int8 is "
                                                   "closer to bf16 than fp8"),
        click.option("--compile", is_flag=True, default=None, expose_value=False, callback=_engine_option,
                     help="torch.compile the transformer (slow first render, faster after)"),
        click.option("--attention", default=None, metavar="BACKEND", expose_value=False, callback=_engine_option,
                     help="attention backend, e.g. flash, sage, _native_flash [default: PyTorch SDPA]"),
        ray_option(),
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


def ray_option():
    """--ray [ADDRESS]: render on a Ray pool (imports Ray only when given, or $PIPELINE_RAY is set)."""
    return click.option("--ray", default=None, is_flag=False, flag_value="local", metavar="[ADDRESS]",
                        expose_value=False, callback=_ray_value,
                        help="render on Ray workers, one per GPU: alone, a Ray started here; auto, the cluster "
                             "`ray start` runs; or its address [default: $PIPELINE_RAY, else no Ray]")


def _ray_value(ctx, param, value):
    if value is not None:
        ctx.meta["pipeline.ray"] = check_ray_address(value)
    return value


def check_ray_address(value: str) -> str:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; anything else is a prompt or path that
    --ray took for its address (``pipeline explore --ray "a fox"``)."""
    import re

    if value in ("local", "auto") or re.fullmatch(r"(ray://)?[\w.-]+:\d+", value):
        return value
    raise click.UsageError(f"--ray took {value!r} for a Ray address (local, auto or HOST:PORT); put --ray after "
                           "the prompt, or write --ray local")


def requested_ray() -> str | None:
    """The Ray address of this command: --ray, else $PIPELINE_RAY, else None (no Ray)."""
    from ..scale.ray_cluster import requested

    ctx = click.get_current_context(silent=True)
    return requested(ctx.meta.get("pipeline.ray") if ctx is not None else None)


def make_pipeline(model, out, device, dtype, memory, progress=True):
    from ..api import Pipeline

    ctx = click.get_current_context(silent=True)
    extra = dict(ctx.meta.get("pipeline.engine_options", {})) if ctx is not None else {}
    out = check_out(out or os.environ.get("PIPELINE_OUT", "outputs"))
    new = next((p for p in (out, out / ".store") if not p.exists()), None)
    if ctx is not None and new is not None:
        ctx.meta["pipeline.new_out"] = new  # made by this command: left empty by an error, it is removed
    return Pipeline(model=model, out=out, device=device, dtype=dtype,
                    memory=memory, progress=progress, ray=requested_ray(), **extra)


def _remove_empty_out() -> None:
    """A command that failed (a refused LoRA, a model that is not there) leaves no empty OUT/.store
    behind (nor an empty OUT it created): empty folders are removed, nothing else."""
    ctx = click.get_current_context(silent=True)
    out = ctx.meta.get("pipeline.new_out") if ctx is not None else None
    if out is None or not Path(out).is_dir():
        return
    for folder, _, _ in sorted(os.walk(out), key=lambda entry: -len(entry[0])):  # deepest first
        try:
            os.rmdir(folder)  # fails on a folder holding anything: that one is kept
        except OSError:
            pass


def check_out(out) -> Path:
    """--out (or $PIPELINE_OUT) must be a folder, or not exist yet: one sentence for every command."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder (it is created if missing)")
    return out


def resolve_out(out: str | None, run: str | None = None) -> Path:
    """The output folder: --out, else the parent of a --run given as a folder path, else $PIPELINE_OUT or outputs.

    So `pipeline refine --run /somewhere/outputs/<run> --seeds 3` works from any directory.
    """
    if out:
        return Path(out)
    if run and (Path(run) / "run.json").is_file() and ("/" in str(run) or os.sep in str(run)):
        return Path(run).resolve().parent
    return Path(os.environ.get("PIPELINE_OUT", "outputs"))


def next_hint(command: str, why: str, *, run=None, out=None) -> str:
    """The `next:` line: ``command`` with --run and --out as the user gave them (quoted for the
    shell), so it can be copied as is."""
    import shlex

    where = "".join(f" {flag} {shlex.quote(str(value))}" for flag, value in (("--run", run), ("--out", out)) if value)
    return f"next: pipeline {command}{where}   ({why})"


def print_json(data) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def plural(count: int, word: str) -> str:
    """`1 picture`, `2 pictures`."""
    return f"{count} {word if count == 1 else word + 's'}"


def report(result, as_json: bool, what: str = "picture") -> bool:
    """Print a stage's result: the JSON document, the dry-run plan, or the computed/reused line.

    Returns True when nothing more is to be printed (JSON or dry run)."""
    if as_json:
        print_json(result.to_json())
        return True
    if result.dry_run:
        click.echo(f"{result.stage}: {plural(result.planned, what)}, {result.stored} stored, "
                   f"{result.computed} to compute")
        return True
    click.echo(f"{result.stage}: {result.computed} computed, {result.stored} reused from the store")
    return False


def parse_batch(batch: str):
    if batch == "auto":
        return "auto"
    try:
        return int(batch)
    except ValueError:
        raise UserError(f"--batch must be a whole number or auto, not {batch!r}") from None


def lora_option(func):
    """--lora FILE_OR_NAME[:WEIGHT], repeatable."""
    return click.option("--lora", "lora", multiple=True, metavar="FILE_OR_NAME[:WEIGHT]",
                        help="apply a LoRA (.safetensors; a name is looked up in weights/loras/, $PIPELINE_LORAS "
                             "and a ComfyUI install's models/loras/), weight 1 by default; repeatable")(func)


def face_options(func):
    """--detail-faces S, --face-prompt, --face-confidence, --face-size: the face pass after refine or upscale."""
    func = click.option("--face-size", type=int, default=1024, show_default=True, metavar="PX",
                        help="--detail-faces: each face's crop renders at about PX² pixels")(func)
    func = click.option("--face-confidence", type=float, default=0.3, show_default=True,
                        help="--detail-faces: the detector's score a face needs")(func)
    func = click.option("--face-prompt", default=None,
                        help="--detail-faces: the prompt for the faces [default: the picture's]")(func)
    return click.option("--detail-faces", type=float, default=0.0, metavar="STRENGTH",
                        help="then re-draw each face found at this strength (0.3-0.4 typical; needs "
                             "pip install 'pipeline[faces]'); the fixes join the run as 42i1")(func)


def no_lora_option(func):
    return click.option("--no-lora", "no_lora", is_flag=True,
                        help="without the LoRAs the candidate was made with")(func)


def chosen_loras(lora: tuple, no_lora: bool):
    """What refine and vary pass on: None (the candidate's own LoRAs), [] (--no-lora) or the --lora list."""
    if no_lora and lora:
        raise UserError("give --lora or --no-lora, not both")
    if no_lora:
        return []
    return list(lora) if lora else None


SET_HELP = "override a key, e.g. --set refine.picks=42,97 --set upscale.scale=2 (the value is YAML); repeatable"
