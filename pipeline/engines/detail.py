"""``upscale --detail``: the diffusion model re-draws a super-resolved canvas image-to-image, tile by tile.

    canvas = super-resolved picture, padded to the latent grid (edge pixels repeated)
    noise  = one latent-sized draw for the whole canvas from the seed (CPU generator)
    for each tile (tiling.detail_tiles):
        latent = VAE(tile)  ->  scale_noise(latent, first timestep, noise[tile])  ->  denoise  ->  decode
        accumulate the decoded tile with tiling.detail_weights (linear cross-fade over shared bands)

Tiles that overlap start from the same noise over the shared band, so they agree there up to what the
model saw beyond it; the cross-fade over the whole band hides what differs. The denoising itself is
``ZImageImg2ImgPipeline``'s, through the engine's one door (``engine.render(request, "detail")``: memory
profiles, int8 weights, --variance, CFG), with only its ``prepare_latents`` replaced so the noise is the canvas
slice (the request's ``noise``, passed as the call's ``latents``) and the VAE latent its mode.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from ..core.jobs import RenderJob
from . import tasks
from .request import RenderRequest
from .tiling import detail_tiles, detail_weights, padded


def _build_tile_pipeline(pipe):
    from diffusers import ZImageImg2ImgPipeline
    from diffusers.pipelines.z_image.pipeline_z_image_img2img import retrieve_latents

    class CanvasNoiseImg2Img(ZImageImg2ImgPipeline):
        """img2img whose ``latents`` argument is the starting noise (a slice of the canvas's noise), not
        the starting latents: the tile's VAE latent (its mode) is noised with it to the first timestep."""

        def prepare_latents(self, image, timestep, batch_size, num_channels_latents, height, width, dtype, device,
                            generator, latents=None):
            image = image.to(device=device, dtype=dtype)
            encoded = retrieve_latents(self.vae.encode(image), sample_mode="argmax")
            encoded = (encoded - self.vae.config.shift_factor) * self.vae.config.scaling_factor
            noise = latents.to(device=device, dtype=encoded.dtype)
            return self.scheduler.scale_noise(encoded, timestep, noise)

    return CanvasNoiseImg2Img(**pipe.components)


# the render task of a detail tile: img2img from the tile, starting from the request's noise
TASK = tasks.register(tasks.Task("detail", build=_build_tile_pipeline,
                                 call_args=lambda request: {"image": list(request.init_images),
                                                            "strength": request.strength,
                                                            "latents": request.noise},
                                 needs=("init_images", "strength", "noise")))
_TILE_COST: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # engine -> its measured tile cost


def _vae_factor(engine) -> tuple[int, int]:
    """(VAE scale factor, latent channels) of the engine's model."""
    pipe = engine.pipeline_for(TASK.name)
    return pipe.vae_scale_factor, pipe.transformer.config.in_channels


def canvas_noise(seed: int, width: int, height: int, channels: int = 16, factor: int = 8) -> torch.Tensor:
    """(1, channels, height/factor, width/factor) float32 noise for the whole canvas, drawn on the CPU."""
    generator = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn((1, channels, height // factor, width // factor), generator=generator, dtype=torch.float32)


class Stopped(Exception):
    """``add_detail``'s ``stop`` was set between two model calls: the picture is not finished."""


def add_detail(engine, image: Image.Image, job, *, batch: int = 1,
               progress: Callable[[int, int], None] | None = None, blend: float = 1.0, stop=None,
               control=None) -> Image.Image:
    """``image`` (the super-resolved picture, at the job's output size) re-drawn over tiles; RGB out.
    ``blend``: the share of each shared band that is cross-faded (1, the default; 0 cuts, for comparison).
    ``stop`` (a threading.Event), checked between model calls: raises ``Stopped`` when set.
    ``control``: (ControlNet file, ``core.control.ControlMap`` at the output size) for a job with control: each
    tile is rendered by the ``controlnet`` task with **the matching crop** of the map (not the whole map)."""
    rgb = np.asarray(image.convert("RGB"))
    height, width = rgb.shape[:2]
    full_w, full_h = padded(width), padded(height)
    if (full_w, full_h) != (width, height):
        rgb = np.pad(rgb, ((0, full_h - height), (0, full_w - width), (0, 0)), mode="edge")
    tiles = detail_tiles(full_w, full_h, job.tile, job.overlap)
    factor, channels = _vae_factor(engine)
    noise = canvas_noise(job.seed, full_w, full_h, channels, factor)
    canvas = np.zeros((full_h, full_w, 3), np.float32)
    weight_sum = np.zeros((full_h, full_w), np.float32)
    _, _, tile_w, tile_h = tiles[0]
    for first in range(0, len(tiles), batch):
        if stop is not None and stop.is_set():
            raise Stopped
        chunk = tiles[first:first + batch]
        tile_noise = torch.cat([noise[:, :, y // factor:(y + h) // factor, x // factor:(x + w) // factor]
                                for x, y, w, h in chunk])
        crops = [Image.fromarray(rgb[y:y + h, x:x + w]) for x, y, w, h in chunk]
        # progress (and a Stop raised from it) after each transformer call, not only after each tile
        hook = _step_progress(engine.pipeline_for(TASK.name), progress, first, len(chunk), len(tiles),
                              steps_run(job.steps, job.strength))
        try:
            if control is not None and job.control is not None:
                from .controlnet import render as render_controlled

                entry, made = control
                outputs = render_controlled(engine, entry, [job] * len(chunk), [made.crop(*rect) for rect in chunk],
                                            images=crops, strength=job.strength, noise=tile_noise, sample=False,
                                            width=tile_w, height=tile_h)
            else:
                # the picture's job at the tile's size, once per tile of the chunk
                request = RenderRequest.from_jobs([job] * len(chunk), width=tile_w, height=tile_h,
                                                  init_images=crops, strength=job.strength, noise=tile_noise)
                outputs = engine.render(request, TASK.name)
        finally:
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
    cached = _TILE_COST.get(engine)
    if cached is not None:
        return cached
    import time

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (PROBE, PROBE, 3), dtype=np.uint8))
    render = RenderJob(model="probe", prompt="a photograph", negative="", width=PROBE, height=PROBE, steps=8,
                       guidance=0.0, seed=0, dtype=engine.dtype_name)
    factor, channels = _vae_factor(engine)
    noise = canvas_noise(0, PROBE, PROBE, channels, factor)
    seconds = {}
    for steps in (1, 1, 2):  # the first is a warm-up
        started = time.perf_counter()
        engine.render(RenderRequest.from_jobs([render], init_images=[image], strength=steps / 8, noise=noise),
                      TASK.name)
        seconds[steps] = time.perf_counter() - started
    per_step = max(seconds[2] - seconds[1], 0.0)
    fixed = max(seconds[1] - per_step, 0.0)
    _TILE_COST[engine] = (fixed / (PROBE * PROBE), per_step / (PROBE * PROBE))
    return _TILE_COST[engine]
