"""`pipeline refine`: picked candidates (or any image) at a larger size, keeping their composition."""
from __future__ import annotations

from pathlib import Path

import click

from ..core.errors import UserError
from .common import (chosen_control, chosen_loras, control_options, face_options, log, lora_option, make_pipeline,
                     next_hint, no_lora_option, parse_batch, report, resolve_out, session_options, user_errors)


@click.command()
@click.option("--seeds", default=None, metavar="SPEC",
              help="candidates of the run to refine, e.g. 42,97 [default: the picks saved by `pipeline ui`]")
@click.option("--from", "source", default=None, metavar="IMAGE", type=click.Path(path_type=Path),
              help="refine this image instead; parameters come from its metadata, else from --prompt/--seed")
@click.option("--run", "run", default=None, metavar="DIR|NAME", help="run folder [default: the latest run]")
@click.option("--size", default=None, metavar="SIZE",
              help="target size, e.g. 1024x1536 [default: candidate × --scale]")
@click.option("--scale", type=float, default=None, help="target = candidate size × SCALE, rounded to 16 [default: 2]")
@click.option("--mode", type=click.Choice(["hires", "rerender"]), default="hires", show_default=True,
              help="hires keeps the composition (img2img of the enlarged candidate); rerender renders the seed anew")
@click.option("--strength", type=float, default=None,
              help="hires: how much is re-drawn, 0-1 (0.5 = 4 of 8 steps) [default: 0.5]")
@click.option("--steps", type=int, default=None, help="denoising steps of a full render [default: 8]")
@click.option("--guidance", type=float, default=None, help="CFG scale [default: the run's or the image's, else 0]")
@click.option("--negative", default=None, help="negative prompt (used only with --guidance > 0) [default: the run's]")
@click.option("--prompt", default=None, help="with --from: the prompt (required when the image carries none)")
@click.option("--seed", type=int, default=None, help="with --from: the seed [default: the image's, else 0]")
@click.option("--upscaler", default="lanczos", show_default=True, metavar="NAME",
              help="hires: how to enlarge the candidate: lanczos, or Real-ESRGAN weights "
                   "(realesrgan-x4plus, ... or a file)")
@click.option("--batch", default="auto", show_default=True, metavar="N", help="pictures denoised together")
@face_options
@lora_option
@no_lora_option
@control_options("tile")
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def refine(seeds, source, run, size, scale, mode, strength, steps, guidance, negative, prompt, seed, upscaler, batch,
           detail_faces, face_prompt, face_confidence, face_size, lora, no_lora, control, control_type, control_strength,
           control_start, control_end, control_model, dry_run, as_json, model, out, device, dtype, memory):
    """Re-render picked candidates of a run (or any image) larger, keeping their composition.

    \b
      pipeline refine --seeds 42,97
      pipeline refine --run NAME --seeds 42 --size 1024x1536 --mode rerender
      pipeline refine --from outputs/latest/explore/seed-42.png
      pipeline refine --from photo.jpg --prompt "a cup of coffee" --seed 1 --strength 0.4

    The candidate's LoRAs are used again (found by their digest); --lora replaces them, --no-lora drops them.
    --control-type tile (the Tile ControlNet, with the candidate itself as control) keeps the picture while a
    higher --strength adds detail; --control IMAGE follows another image.
    """
    from ..core.sizes import parse_size

    if negative and guidance == 0:
        log.warning("--negative has no effect with --guidance 0 (Turbo's default); set --guidance above 0 to use it")
    control = chosen_control(control, control_type, control_strength, control_start, control_end, control_model)
    out_given, out = out, resolve_out(out, run)
    if seeds is None and source is None:  # the picks saved with the run (by `pipeline ui`)
        from ..core.runs import load_picks, resolve_run

        try:
            seeds = load_picks(resolve_run(Path(out), run)) or None
        except UserError:
            seeds = None
        if seeds is None:
            raise UserError("say what to refine: --seeds 42,97 (candidates of the run) or --from IMAGE")
    if model is None:  # refine with the model the run (or the image) was made with
        from ..stages.refine import default_model

        model = default_model(out, run, source)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        spec = p.refine_spec(seeds, source=source, prompt=prompt, seed=seed,
                             size=parse_size(size) if size else None, scale=scale, mode=mode, strength=strength,
                             steps=steps, guidance=guidance, negative=negative, upscaler=upscaler,
                             batch=parse_batch(batch), loras=chosen_loras(lora, no_lora), control=control)
        result = p.refine(spec, run=run, dry_run=dry_run, detail_faces=detail_faces, face_prompt=face_prompt,
                          face_confidence=face_confidence, face_size=face_size)
    if report(result, as_json):
        return
    for item in result.items:
        click.echo(f"  seed {item.seed}: {item.path}")
    for item in result.fixes:
        click.echo(f"  faces re-drawn, {item.seed}: {item.path}")
    if (result.run_dir / "index.html").is_file():
        click.echo(f"  gallery: {result.run_dir / 'index.html'}")
    run_given = run if run is not None else (result.run_dir.name if source is not None else None)  # --from: its run
    click.echo(next_hint("upscale", "the refined pictures, ×4 with Real-ESRGAN", run=run_given, out=out_given))
