"""`pipeline vary`: more candidates like picked ones (image-to-image with new noise)."""
from __future__ import annotations

import click

from .common import (chosen_control, chosen_loras, control_options, lora_option, make_pipeline, next_hint, no_lora_option, parse_batch, report,
                     resolve_out, session_options, user_errors)


@click.command()
@click.option("--seeds", required=True, metavar="SPEC", help="candidates to vary: seeds or variation ids, e.g. 42,97v2")
@click.option("--count", type=int, default=4, show_default=True, help="variations of each candidate")
@click.option("--strength", default="subtle", show_default=True, metavar="subtle|strong|NUMBER",
              help="how much is re-drawn: subtle (0.5), strong (0.85), or a number between 0 and 1")
@click.option("--run", "run", default=None, metavar="DIR|NAME", help="run folder [default: the latest run]")
@click.option("--steps", type=int, default=None, help="denoising steps of a full render [default: the run's]")
@click.option("--batch", default="auto", show_default=True, metavar="N", help="pictures denoised together")
@lora_option
@no_lora_option
@control_options("canny")
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def vary(seeds, count, strength, run, steps, batch, lora, no_lora, control, control_type, control_strength,
         control_start, control_end, control_model, dry_run, as_json, model, out, device, dtype, memory):
    """Make variations of picked candidates: new candidates like them, next to them in the run.

    Variation ids say where they come from: 42v3 is the third variation of seed 42, 42v3v1 a
    variation of that one. Refine, upscale and the gallery take them like any candidate.

    \b
      pipeline vary --seeds 42 --count 8
      pipeline vary --seeds 42,97 --count 4 --strength strong
      pipeline refine --seeds 42v3
    """
    control = chosen_control(control, control_type, control_strength, control_start, control_end, control_model)
    out_given, out = out, resolve_out(out, run)
    if model is None:  # vary with the model the run was made with
        from ..stages.refine import default_model

        model = default_model(out, run)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        spec = p.vary_spec(seeds, count=count, strength=strength, steps=steps, batch=parse_batch(batch),
                           loras=chosen_loras(lora, no_lora), control=control)
        result = p.vary(spec, run=run, dry_run=dry_run)
    if report(result, as_json, "variations"):
        return
    for item in result.items:
        click.echo(f"  {item.seed}: {item.path}")
    click.echo(f"  contact sheet: {result.run_dir / 'explore' / 'contact.png'}")
    if (result.run_dir / "index.html").is_file():
        click.echo(f"  gallery:       {result.run_dir / 'index.html'}")
    click.echo(next_hint(f"refine --seeds {result.items[0].seed}", "pick the ones you like", run=run, out=out_given))
