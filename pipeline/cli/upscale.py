"""`pipeline upscale`: Real-ESRGAN super-resolution of a run's pictures or of any image, optionally with
detail re-drawn by the diffusion model (`--detail`)."""
from __future__ import annotations

from pathlib import Path

import logging

import click

from ..core.errors import UserError
from .common import (chosen_control, control_options, face_options, make_pipeline, report, resolve_out,
                     session_options, user_errors)

log = logging.getLogger("pipeline")


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", "run_name", default=None, metavar="RUN", help="run folder or name [default: latest]")
@click.option("--seeds", default=None, metavar="SPEC", help="seeds of the run to upscale (refined, else candidates)")
@click.option("--upscaler", default=None, metavar="NAME",
              help="realesrgan-x4plus (default), realesrgan-x4plus-anime, realesr-animevideov3, or a weights file")
@click.option("--weights", "weights_path", default=None, type=click.Path(path_type=Path),
              help="a .pth/.safetensors super-resolution model (any architecture spandrel knows)")
@click.option("--scale", type=float, default=None,
              help="output size / input size [default: the model's, e.g. 4; 2 with --detail]")
@click.option("--tile", type=int, default=None,
              help="upscaler tile size in input pixels; 0 = whole image [default: by memory]")
@click.option("--tile-overlap", "overlap", type=int, default=None,
              help="input pixels shared by neighbouring tiles [default: 64; 96 for tiles under 128; "
                   "36 for realesr-animevideov3]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="upscaler precision; auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
@click.option("--detail", type=float, default=0.0, metavar="STRENGTH",
              help="after upscaling, re-draw real detail with the diffusion model at this img2img strength "
                   "(0 = off; 0.2-0.4 typical) [default: 0]")
@click.option("--detail-tile", type=int, default=1024, show_default=True, metavar="PX",
              help="--detail works on tiles of at most PX output pixels (1024: the memory of a 1024² refine)")
@click.option("--prompt", default=None, help="--detail on a file that carries no prompt: the prompt to use")
@face_options
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@control_options("tile")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@session_options
@user_errors
def upscale(images, run_name, seeds, upscaler, weights_path, scale, tile, overlap, precision, detail, detail_tile,
            prompt, detail_faces, face_prompt, face_confidence, face_size, dry_run, control, control_type,
            control_strength, control_start, control_end, control_model, as_json, model, out, device, dtype, memory):
    """Upscale the refined pictures of a run (default: the latest), or IMAGES (files or folders).

    \b
      pipeline upscale                                  # the latest run's refined pictures, x4
      pipeline upscale --detail 0.3                     # x2, then Z-Image-Turbo adds detail over tiles
      pipeline upscale photo.png --detail 0.3 --prompt "a harbour at dawn"

    --model (and --dtype, --memory, --weights-dtype ...) are the diffusion model's, used by --detail;
    the upscaler is --upscaler.
    """
    from ..stages.specs import UpscaleSpec, build

    spec = build(UpscaleSpec, upscaler=str(weights_path or upscaler or "") or None, scale=scale, tile=tile,
                 overlap=overlap, precision=precision, detail=detail, detail_tile=detail_tile, prompt=prompt,
                 model=model, control=chosen_control(control, control_type, control_strength, control_start,
                                                     control_end, control_model))  # all checked before any load
    if upscaler and weights_path:
        raise UserError("give --upscaler or --weights, not both")
    if detail == 0 and not detail_faces:
        for given, name in ((model, "--model"), (prompt, "--prompt")):
            if given is not None:
                log.warning("%s is used by --detail only; without it the picture is upscaled as it is", name)
    out = resolve_out(out, run_name)
    if (detail > 0 or detail_faces > 0) and model is None:  # the model the run (or the first image) was made with
        from ..stages.refine import default_model

        model = default_model(out, run_name, images[0] if images and Path(images[0]).is_file() else None)
    with make_pipeline(model, out, device, dtype, memory, progress=not as_json) as p:
        result = p.upscale(list(images) or None, run=run_name, seeds=seeds, spec=spec.model_copy(update={"model": None}),
                           dry_run=dry_run, detail_faces=detail_faces, face_prompt=face_prompt,
                           face_confidence=face_confidence, face_size=face_size)  # the model is the Pipeline's
    if report(result, as_json):
        return
    for item in result.items:
        click.echo(f"  {item.path}")
    for item in result.fixes:
        click.echo(f"  faces re-drawn: {item.path}")
    if result.run_dir is not None and (result.run_dir / "index.html").is_file():
        click.echo(f"  gallery:       {result.run_dir / 'index.html'}")
