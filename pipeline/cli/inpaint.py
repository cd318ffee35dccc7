"""`pipeline inpaint`: fix one part of a picture — under a mask, on each face, or a new border (outpaint)."""
from __future__ import annotations

from pathlib import Path

import click

from .common import (chosen_loras, lora_option, make_pipeline, next_hint, no_lora_option, report, resolve_out,
                     session_options, user_errors)


@click.command()
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--seeds", default=None, metavar="IDS", help="pictures of the run to fix, e.g. 42 or 42,97v2,42i1")
@click.option("--run", "run", default=None, metavar="DIR|NAME", help="run folder [default: the latest run]")
@click.option("--from", "source", type=click.Choice(["explore", "refine", "upscale", "inpaint"]), default="explore",
              show_default=True, help="which of the run's pictures --seeds names")
@click.option("--mask", default=None, metavar="MASK.png",
              help="what to re-draw: white pixels, or the transparent pixels of an RGBA picture")
@click.option("--prompt", default=None, help="what to draw there [default: the picture's own prompt]")
@click.option("--strength", type=float, default=None,
              help="how much is re-drawn, 0-1 [default: 0.75; --faces 0.35; --extend 1]")
@click.option("--mask-blur", type=int, default=4, show_default=True, metavar="PX",
              help="the mask fades out over PX pixels around it; beyond, the picture is untouched")
@click.option("--area", type=click.Choice(["masked", "whole"]), default="masked", show_default=True,
              help="masked: render the mask's box + padding at the working size; whole: the whole picture")
@click.option("--padding", type=int, default=32, show_default=True, metavar="PX",
              help="--area masked: context around the mask's box")
@click.option("--work", type=int, default=1024, show_default=True, metavar="PX",
              help="--area masked: the crop renders at about PX² pixels")
@click.option("--extend", default=None, metavar="SIDE:PX,...",
              help="outpaint: grow the canvas, e.g. left:256,bottom:128; the new border is re-drawn")
@click.option("--faces", is_flag=True, help="find each face and re-draw it (the detail pass), no mask needed")
@click.option("--hands", is_flag=True, help="not offered: no packaged hand detector (says why)")
@click.option("--face-prompt", default=None, help="--faces: the prompt for the faces [default: the picture's]")
@click.option("--face-confidence", type=float, default=0.3, show_default=True,
              help="--faces: the detector's score a face needs")
@click.option("--crop-factor", type=float, default=2.5, show_default=True,
              help="--faces: the crop around each face, × its box")
@click.option("--seed", type=int, default=None, help="noise seed [default: the picture's]")
@click.option("--steps", type=int, default=None, help="denoising steps of a full render [default: the picture's, 8]")
@lora_option
@no_lora_option
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def inpaint(image, seeds, run, source, mask, prompt, strength, mask_blur, area, padding, work, extend, faces, hands,
            face_prompt, face_confidence, crop_factor, seed, steps, lora, no_lora, dry_run, as_json, model, out,
            device, dtype, memory):
    """Fix part of a picture: re-draw what a mask covers, every face, or a new border; the rest stays.

    Fixes of a run's pictures join it as 42i1, 42i2, ... next to their parent (the mask is kept beside
    each as seed-42i1-mask.png); a file's fixes go to OUT/inpainted/.

    \b
      pipeline inpaint --seeds 42 --mask hand.png --prompt "an open hand"
      pipeline inpaint --seeds 42 --from refine --faces
      pipeline inpaint photo.png --mask sky.png --area whole --strength 0.9
      pipeline inpaint --seeds 42 --extend left:256,bottom:128
    """
    from ..core.errors import UserError

    if image is None and seeds is None:
        raise UserError("say what to fix: --seeds 42 (pictures of the run) or an IMAGE")
    out_given, out = out, resolve_out(out, run)
    if model is None:
        from ..stages.refine import default_model

        model = default_model(out, run, image)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        result = p.inpaint(image, run=run, seeds=seeds, source=source, mask=mask, prompt=prompt, strength=strength,
                           mask_blur=mask_blur, area=area, padding=padding, work=work, extend=extend, faces=faces,
                           hands=hands, face_prompt=face_prompt, face_confidence=face_confidence,
                           crop_factor=crop_factor, seed=seed, steps=steps, loras=chosen_loras(lora, no_lora),
                           dry_run=dry_run)
    if report(result, as_json, "fix"):
        return
    for item in result.items:
        click.echo(f"  {item.seed}: {item.path}")
    if result.run_dir is not None:
        if (result.run_dir / "index.html").is_file():
            click.echo(f"  gallery: {result.run_dir / 'index.html'}")
        click.echo(next_hint(f"inpaint --seeds {result.items[0].seed} --from inpaint --mask MASK.png",
                             "fix it further", run=run, out=out_given))
