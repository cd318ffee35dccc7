"""`pipeline upscale`: Real-ESRGAN super-resolution of a run's pictures or of any image."""
from __future__ import annotations

from pathlib import Path

import logging

import click

from ..errors import UserError
from .common import report, resolve_out, user_errors

log = logging.getLogger("pipeline")


@click.command()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--run", "run_name", default=None, metavar="RUN", help="run folder or name [default: latest]")
@click.option("--seeds", default=None, metavar="SPEC", help="seeds of the run to upscale (refined, else candidates)")
@click.option("--upscaler", default=None, metavar="NAME",
              help="realesrgan-x4plus (default), realesrgan-x4plus-anime, realesr-animevideov3, or a weights file")
@click.option("--model", default=None, metavar="NAME", help="deprecated name of --upscaler")
@click.option("--weights", "weights_path", default=None, type=click.Path(path_type=Path),
              help="a .pth/.safetensors super-resolution model (any architecture spandrel knows)")
@click.option("--scale", type=float, default=None, help="output size / input size [default: the model's, e.g. 4]")
@click.option("--tile", type=int, default=None, help="tile size in input pixels; 0 = whole image [default: by memory]")
@click.option("--tile-overlap", "overlap", type=int, default=None,
              help="input pixels shared by neighbouring tiles [default: 64; 96 for tiles under 128]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
              help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
@click.option("--out", default=None, metavar="DIR",
              help="output folder: runs live here; upscaled files go to DIR/upscaled "
                   "[default: $PIPELINE_OUT or outputs]")
@click.option("--device", default=None, metavar="DEV", help="cuda, cpu, … [default: best available]")
@click.option("--dry-run", is_flag=True, help="show what would be computed and stop")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document instead of text")
@user_errors
def upscale(images, run_name, seeds, upscaler, model, weights_path, scale, tile, overlap, precision, out, device,
            dry_run, as_json):
    """Upscale the refined pictures of a run (default: the latest), or IMAGES (files or folders)."""
    from ..api import Pipeline

    if model:
        if upscaler:
            raise UserError("give --upscaler only (--model is its old name)")
        log.warning("upscale --model is deprecated and goes away in the next release: use --upscaler %s "
                    "(--model names the diffusion model on explore and refine)", model)
        upscaler = model
    if upscaler and weights_path:
        raise UserError("give --upscaler or --weights, not both")
    out = resolve_out(out, run_name)
    with Pipeline(out=out, device=device, progress=not as_json) as p:
        result = p.upscale(list(images) or None, run=run_name, seeds=seeds,
                           upscaler=str(weights_path or upscaler or "") or None, scale=scale, tile=tile,
                           overlap=overlap, precision=precision, dry_run=dry_run)
    if report(result, as_json):
        return
    for item in result.items:
        click.echo(f"  {item.path}")
    if result.run_dir is not None and (result.run_dir / "index.html").is_file():
        click.echo(f"  gallery:       {result.run_dir / 'index.html'}")
