"""`pipeline explore`: many candidates of a prompt across seeds, to pick from."""
from __future__ import annotations

import click

from .common import (chosen_control, control_options, log, lora_option, make_pipeline, next_hint, parse_batch,
                     report, session_options, user_errors)


@click.command()
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
@click.option("--variance", type=float, default=0.0, show_default=True, metavar="STRENGTH",
              help="seeded noise on the prompt embedding in the first steps, so seeds differ more "
                   "(0 = off; 0.1-0.5 typical, up to 2)")
@click.option("--variance-share", type=float, default=None, metavar="FRACTION",
              help="share of the embedding's values that get noise [default: 0.5]")
@click.option("--variance-steps", type=float, default=None, metavar="FRACTION",
              help="share of the steps that see the noisy embedding [default: 0.2, the first 2 of 8]")
@lora_option
@control_options("canny")
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def explore(prompt, negative, seeds, count, seed, size, steps, guidance, run_name, batch, variance, variance_share,
            variance_steps, lora, control, control_type, control_strength, control_start, control_end, control_model,
            dry_run, as_json, model, out, device, dtype, memory):
    """Render many candidates of PROMPT across seeds, to pick from."""
    from ..core.sizes import parse_size

    if seeds is None and count is None:
        count = 16
    if negative and guidance == 0:
        log.warning("--negative has no effect with --guidance 0 (Turbo's default); set --guidance above 0 to use it")
    if (variance_share is not None or variance_steps is not None) and not variance:
        log.warning("--variance-share and --variance-steps have no effect without --variance (a strength above 0)")
    batch_value = parse_batch(batch)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        spec = p.explore_spec(prompt, seeds=seeds, count=count, seed=seed, size=parse_size(size), steps=steps,
                              guidance=guidance, negative=negative, batch=batch_value, variance=variance,
                              variance_share=variance_share, variance_steps=variance_steps, loras=list(lora),
                              control=chosen_control(control, control_type, control_strength, control_start,
                                                     control_end, control_model))
        result = p.explore(spec, run=run_name, dry_run=dry_run)
    if report(result, as_json, "candidate"):
        return
    run_dir = result.run_dir
    click.echo(f"  pictures:      {run_dir / 'explore'}/")
    click.echo(f"  contact sheet: {run_dir / 'explore' / 'contact.png'}")
    if (run_dir / "index.html").is_file():
        click.echo(f"  gallery:       {run_dir / 'index.html'}")
    picks = ",".join(str(s) for s in result.seeds[:2])
    click.echo(next_hint(f"refine --seeds {picks}", "pick the seeds you like", run=run_name, out=out))
