"""``upscale --detail``: the diffusion model re-draws a super-resolved canvas image-to-image, tile by tile.

    canvas = super-resolved picture, padded to the latent grid (edge pixels repeated)
    noise  = one latent-sized draw for the whole canvas from the seed (CPU generator)
    for each tile (tiling.detail_tiles):
        latent = VAE(tile)  ->  scale_noise(latent, first timestep, noise[tile])  ->  denoise  ->  decode
        accumulate the decoded tile with tiling.detail_weights (linear cross-fade over shared bands)

Tiles that overlap start from the same noise over the shared band, so they agree there up to what the
model saw beyond it; the cross-fade over the whole band hides what differs. The denoising itself is
``ZImageImg2ImgPipeline``'s, through the engine (memory profiles, int8 weights, --variance, CFG), with
only its ``prepare_latents`` replaced so the noise is the canvas slice and the VAE latent its mode.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..core.jobs import RenderJob
from .tiling import detail_tiles, detail_weights, padded


def _tile_pipeline_class():
    from diffusers import ZImageImg2ImgPipeline
    from diffusers.pipelines.z_image.pipeline_z_image_img2img import retrieve_latents

    class CanvasNoiseImg2Img(ZImageImg2ImgPipeline):
        """img2img whose starting noise is ``self.tile_noise`` (a slice of the canvas's noise)."""

        tile_noise: torch.Tensor | None = None

        def prepare_latents(self, image, timestep, batch_size, num_channels_latents, height, width, dtype, device,
                            generator, latents=None):
            image = image.to(device=device, dtype=dtype)
            encoded = retrieve_latents(self.vae.encode(image), sample_mode="argmax")
            encoded = (encoded - self.vae.config.shift_factor) * self.vae.config.scaling_factor
            noise = self.tile_noise.to(device=device, dtype=encoded.dtype)
            return self.scheduler.scale_noise(encoded, timestep, noise)

    return CanvasNoiseImg2Img


def tile_pipeline(engine):
    """The engine's img2img view with canvas noise, sharing the loaded components (built once)."""
    pipe = getattr(engine, "_detail_pipe", None)
    if pipe is None:
        pipe = _tile_pipeline_class()(**engine.pipe.components)
        pipe.set_progress_bar_config(disable=True)
        engine._detail_pipe = pipe
    return pipe


def canvas_noise(seed: int, width: int, height: int, channels: int = 16, factor: int = 8) -> torch.Tensor:
    """(1, channels, height/factor, width/factor) float32 noise for the whole canvas, drawn on the CPU."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, channels, height // factor, width // factor), generator=generator, dtype=torch.float32)


def add_detail(engine, image: Image.Image, job, *, batch: int = 1,
               progress: Callable[[int, int], None] | None = None, blend: float = 1.0) -> Image.Image:
    """``image`` (the super-resolved picture, at the job's output size) re-drawn over tiles; RGB out.
    ``blend``: the share of each shared band that is cross-faded (1, the default; 0 cuts, for comparison)."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    full_w, full_h = padded(width), padded(height)
    if (full_w, full_h) != (width, height):
        rgb = np.pad(rgb, ((0, full_h - height), (0, full_w - width), (0, 0)), mode="edge")
    tiles = detail_tiles(full_w, full_h, job.tile, job.overlap)
    pipe = tile_pipeline(engine)
    factor = pipe.vae_scale_factor
    noise = canvas_noise(job.seed, full_w, full_h, pipe.transformer.config.in_channels, factor)
    canvas = np.zeros((full_h, full_w, 3), np.float32)
    weight_sum = np.zeros((full_h, full_w), np.float32)
    _, _, tile_w, tile_h = tiles[0]
    # what the engine's render loop reads, for one tile (the tile's size; the rest is the picture's job)
    render = RenderJob(model=job.model, prompt=job.prompt, negative=job.negative, width=tile_w, height=tile_h,
                       steps=job.steps, guidance=job.guidance, seed=job.seed, dtype=job.dtype,
                       variance=job.variance, loras=job.loras)
    for first in range(0, len(tiles), batch):
        chunk = tiles[first:first + batch]
        pipe.tile_noise = torch.cat([noise[:, :, y // factor:(y + h) // factor, x // factor:(x + w) // factor]
                                     for x, y, w, h in chunk])
        crops = [Image.fromarray(rgb[y:y + h, x:x + w]) for x, y, w, h in chunk]
        hook = _step_progress(pipe, progress, first, len(chunk), len(tiles), steps_run(job.steps, job.strength))
        try:
            outputs = engine.render_with(pipe, [render] * len(chunk), image=crops, strength=job.strength)
        finally:
            pipe.tile_noise = None
            if hook is not None:
                hook.remove()
        for rect, out in zip(chunk, outputs):
            x, y, w, h = rect
            weights = detail_weights(rect, full_w, full_h, tiles, blend)
            canvas[y:y + h, x:x + w] += np.asarray(out.convert("RGB"), np.float32) * weights[..., None]
            weight_sum[y:y + h, x:x + w] += weights
        if progress is not None:
            progress(min(first + batch, len(tiles)), len(tiles))
    canvas /= np.maximum(weight_sum, 1e-8)[..., None]
    result = np.clip(np.rint(canvas[:height, :width]), 0, 255).astype(np.uint8)
    return Image.fromarray(result)



def _step_progress(pipe, progress, first: int, count: int, total: int, steps: int):
    """A hook on the transformer that calls ``progress(first + count * fraction, total)`` after each of its
    calls for this batch of tiles (so Stop, raised from ``progress``, is honoured between model calls, and a
    long tile shows progress); None without ``progress``."""
    transformer = getattr(pipe, "transformer", None)
    if progress is None or transformer is None or steps <= 0:
        return None
    calls = [0]

    def after_call(module, args, output):
        calls[0] += 1
        progress(first + count * min(calls[0] / (steps + 1), 0.99), total)  # the VAE decode is still to come

    return transformer.register_forward_hook(after_call)


def steps_run(steps: int, strength: float) -> int:
    """Denoising steps img2img runs at ``strength`` (diffusers' ``get_timesteps``)."""
    return steps - int(max(steps - min(steps * strength, steps), 0))


PROBE = 256  # px: the side of the probe tile for estimates


def tile_cost(engine) -> tuple[float, float]:
    """(seconds per output pixel per tile, seconds per output pixel per denoising step) of a detail tile here:
    a PROBE² tile timed at 1 and at 2 steps after a warm-up (the first part is the VAE's and the call's, the
    second the transformer's). Tokens grow with pixels and attention faster, so large tiles on a big model
    run somewhat slower than this says."""
    cached = getattr(engine, "_detail_tile_cost", None)
    if cached is not None:
        return cached
    import time

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (PROBE, PROBE, 3), dtype=np.uint8))
    render = RenderJob(model="probe", prompt="a photograph", negative="", width=PROBE, height=PROBE, steps=8,
                       guidance=0.0, seed=0, dtype=engine.dtype_name)
    pipe = tile_pipeline(engine)
    factor = pipe.vae_scale_factor
    pipe.tile_noise = canvas_noise(0, PROBE, PROBE, pipe.transformer.config.in_channels, factor)
    seconds = {}
    try:
        for steps in (1, 1, 2):  # the first is a warm-up
            started = time.perf_counter()
            engine.render_with(pipe, [render], image=[image], strength=steps / 8)
            seconds[steps] = time.perf_counter() - started
    finally:
        pipe.tile_noise = None
    per_step = max(seconds[2] - seconds[1], 0.0)
    fixed = max(seconds[1] - per_step, 0.0)
    engine._detail_tile_cost = (fixed / (PROBE * PROBE), per_step / (PROBE * PROBE))
    return engine._detail_tile_cost
