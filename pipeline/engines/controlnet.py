"""ControlNet in the Z-Image engine: loading, placing, and rendering with a control map.

- Text-to-image is diffusers' ``ZImageControlNetPipeline`` built from the engine's loaded components plus the
  ControlNet (no second load of the transformer or VAE).
- Image-to-image with control (refine, ``upscale --detail`` tiles), which diffusers does not ship, is the same
  pipeline started where ``ZImageImg2ImgPipeline`` starts: the picture's latent noised to the first timestep
  that strength leaves, and the tail of the same schedule (``start_latents``). At strength 0 the ControlNet adds
  exactly nothing, so this reproduces ``ZImageImg2ImgPipeline``'s pixels (tested).
- ``--control-start/--control-end``: the conditioning scale is a 0-d tensor the pipeline multiplies the hints by;
  a step-end callback sets it for the next step (the strength inside the window, 0 outside).

The ControlNet's own blocks are placed on the device beside the transformer (it shares the transformer's
embedders and refiners, as diffusers' ``from_transformer`` wires them); ``--weights-dtype int8`` quantizes them too.
"""
from __future__ import annotations

import logging
import time

import torch

from ..core.errors import UserError
from ..models import controlnets as files
from ..models.single_file import _first_line, _folder

log = logging.getLogger("pipeline")
OWN_MODULES = ("control_layers", "control_noise_refiner", "control_all_x_embedder")


def load_controlnet(entry: files.ControlNetFile, dtype, width: int | None = None):
    """A ``ZImageControlNetModel`` from a file (config built from its header) or a diffusers folder, on the CPU.
    ``width``: the transformer's; a ControlNet made for another width is refused in one sentence."""
    from diffusers import ZImageControlNetModel

    config = files.config_for(entry)
    if width is not None and int(config["dim"]) != int(width):
        made = "Z-Image-Turbo" if config["dim"] == files.REAL_DIM else "tiny-random"
        raise UserError(f"--control-model {entry.name} is made for {made} (width {config['dim']}), "
                        f"not for this model (width {width})")
    try:
        if entry.is_folder:
            model = ZImageControlNetModel.from_pretrained(str(entry.path), torch_dtype=dtype)
        else:
            with _folder({"_class_name": "ZImageControlNetModel", **config}) as folder:
                model = ZImageControlNetModel.from_single_file(str(entry.path), config=folder, torch_dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load --control-model {entry.name} as a Z-Image ControlNet: {_first_line(err)}") from err
    return model.eval()


class StepWindow:
    """The conditioning scale over the steps: ``strength`` while start <= step/steps < end, else 0."""

    def __init__(self, strength: float, start: float, end: float, steps: int):
        self.strength, self.start, self.end, self.steps = float(strength), float(start), float(end), max(1, steps)
        self.scale = torch.tensor(self.value(0), dtype=torch.float32)

    def value(self, step: int) -> float:
        fraction = step / self.steps
        return self.strength if self.start <= fraction < self.end else 0.0

    @property
    def whole(self) -> bool:
        return self.start == 0.0 and self.end == 1.0

    def callback(self, pipe, step: int, timestep, kwargs: dict) -> dict:
        self.scale.fill_(self.value(step + 1))
        return kwargs


def chain_callbacks(first, second):
    """Two step-end callbacks as one (each sees what the other returned)."""
    if first is None or second is None:
        return first or second

    def both(pipe, step, timestep, kwargs):
        return second(pipe, step, timestep, first(pipe, step, timestep, kwargs) or kwargs)

    return both


class ControlNets:
    """The ControlNets an engine has loaded (by fingerprint), each with its pipeline over the engine's components."""

    def __init__(self, engine):
        self.engine = engine
        self._pipes: dict[str, object] = {}

    def pipeline(self, entry: files.ControlNetFile):
        pipe = self._pipes.get(entry.fingerprint)
        if pipe is not None:
            return pipe
        from diffusers import ZImageControlNetPipeline

        engine = self.engine
        started = time.perf_counter()
        model = load_controlnet(entry, engine.dtype, engine.pipe.transformer.config.dim)
        if engine.options.weights_dtype == "int8":
            from .quantize import quantize_int8_

            for name in OWN_MODULES:  # the shared embedders/refiners are the transformer's, quantized there
                if getattr(model, name, None) is not None:
                    quantize_int8_(getattr(model, name), engine.dtype, skip=())
        components = dict(engine.pipe.components)
        components.pop("controlnet", None)
        pipe = ZImageControlNetPipeline(**components, controlnet=model)
        pipe.set_progress_bar_config(disable=True)
        self._pipes = {entry.fingerprint: pipe}  # one ControlNet at a time: a second replaces the first
        log.info("loaded the ControlNet %s in %.1f s", entry.name, time.perf_counter() - started)
        return pipe

    def place(self, pipe) -> None:
        """The ControlNet's own blocks on the engine's device (the shared ones are the transformer's)."""
        for name in OWN_MODULES:
            module = getattr(pipe.controlnet, name, None)
            if module is not None:
                module.to(self.engine.device)


def start_latents(pipe, images, generators, *, width: int, height: int, steps: int, strength: float,
                  noise=None, sample: bool = True):
    """Where ``ZImageImg2ImgPipeline`` starts: (latents, the sigmas left to run).

    As there: the pictures preprocessed to width x height, their VAE latents (sampled with each job's generator,
    or the mode with ``sample=False``), noised to the first timestep that ``strength`` leaves with ``noise`` (drawn
    from the generators when None). Returned in float32, rounded through the prompt dtype as img2img rounds them."""
    from diffusers.pipelines.z_image.pipeline_z_image_img2img import (calculate_shift, get_default_z_image_sigmas,
                                                                     retrieve_latents, retrieve_timesteps)
    from diffusers.utils.torch_utils import randn_tensor

    device = pipe._execution_device
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(images, height=height, width=width).to(device=device, dtype=vae.dtype)
    encoded = torch.cat([retrieve_latents(vae.encode(pixels[i:i + 1]), generator=generators[i],
                                          sample_mode="sample" if sample else "argmax")
                         for i in range(pixels.shape[0])])
    encoded = (encoded - vae.config.shift_factor) * vae.config.scaling_factor
    sigmas = get_default_z_image_sigmas(steps)
    seq_len = (encoded.shape[2] // 2) * (encoded.shape[3] // 2)
    config = pipe.scheduler.config
    mu = calculate_shift(seq_len, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                         config.get("base_shift", 0.5), config.get("max_shift", 1.15))
    timesteps, _ = retrieve_timesteps(pipe.scheduler, steps, device, sigmas=sigmas, mu=mu)
    first = int(max(steps - min(steps * strength, steps), 0))
    if first >= steps:
        raise UserError(f"strength {strength} leaves no step of {steps} to run")
    pipe.scheduler.set_begin_index(first)
    dtype = pipe.transformer.dtype
    if noise is None:
        noise = randn_tensor(encoded.shape, generator=list(generators), device=device, dtype=dtype)
    latents = pipe.scheduler.scale_noise(encoded.to(dtype), timesteps[first:first + 1].repeat(encoded.shape[0]),
                                         noise.to(device=device, dtype=dtype))
    return latents.float(), sigmas[first:]


def render(engine, entry, jobs, maps, *, images=None, strength: float | None = None, noise=None,
           sample: bool = True):
    """Render ``jobs`` (one batch) with their control maps (PIL, at the jobs' size): text-to-image, or image-to-image
    from ``images`` at ``strength``. Every job of the batch shares the control settings (its batch group)."""
    control = jobs[0].control
    pipe = engine.controlnets.pipeline(entry)
    first = jobs[0]
    kwargs = {"control_image": list(maps)}
    steps = first.steps
    engine._ensure_placed(first.width, first.height, len(jobs))
    engine.controlnets.place(pipe)
    if images is not None:
        with torch.inference_mode():
            latents, sigmas = start_latents(pipe, images, engine._generators(jobs), width=first.width,
                                            height=first.height, steps=first.steps, strength=strength, noise=noise,
                                            sample=sample)
        kwargs.update(latents=latents, sigmas=sigmas)
        steps = len(sigmas)
    window = StepWindow(control.strength, control.start, control.end, steps)
    kwargs["controlnet_conditioning_scale"] = window.scale if not window.whole else control.strength
    if not window.whole:
        kwargs["callback_on_step_end"] = window.callback
    return engine.render_with(pipe, jobs, **kwargs)
