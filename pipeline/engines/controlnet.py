"""ControlNet in the Z-Image engine: loading, placing, and the ``controlnet`` render task.

    request = RenderRequest.from_jobs(jobs, control=ControlInput(entry, maps, strength, start, end)
                                      [, init_images=pictures, strength=s])
    images  = engine.render(request, "controlnet")

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
from dataclasses import dataclass

import torch

from ..core.errors import UserError
from ..models import controlnets as files
from ..models.single_file import _first_line, _folder
from . import tasks
from .request import RenderRequest

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


@dataclass(frozen=True)
class ControlInput:
    """What the ``controlnet`` task conditions on (a ``RenderRequest``'s ``control``): the ControlNet, one map per
    picture (PIL, at the request's size), the strength and the fraction of the steps it applies over.
    ``sample``: image-to-image starts from the picture's sampled VAE latent (as ``ZImageImg2ImgPipeline``) or,
    False, from its mode (the detail pass's tiles, whose noise is the request's ``noise``)."""

    entry: object  # models.controlnets.ControlNetFile
    maps: tuple
    strength: float
    start: float = 0.0
    end: float = 1.0
    sample: bool = True


class ControlNetTask:
    """The ``controlnet`` task's pipeline: diffusers' ``ZImageControlNetPipeline`` over the engine's loaded
    components plus the request's ControlNet (loaded on first use, kept while the same one is asked for);
    image-to-image when the request has init images (``start_latents``)."""

    def __init__(self, base):
        self.base = base  # the engine's ZImagePipeline: its components are shared, never changed
        self._pipes: dict[str, object] = {}
        self._progress: dict = {"disable": True}

    def set_progress_bar_config(self, **kwargs) -> None:
        self._progress = kwargs

    def _device(self):
        vae = self.base.vae
        return vae.device if vae.device.type != "cpu" else self.base._execution_device

    def pipeline(self, entry):
        pipe = self._pipes.get(entry.fingerprint)
        if pipe is not None:
            return pipe
        from diffusers import ZImageControlNetPipeline

        from .quantize import is_quantized, quantize_int8_

        started = time.perf_counter()
        dtype = self.base.vae.dtype
        model = load_controlnet(entry, dtype, self.base.transformer.config.dim)
        if is_quantized(self.base.transformer):  # --weights-dtype int8 covers the ControlNet's own blocks too
            for name in OWN_MODULES:  # (the shared embedders and refiners are the transformer's, quantized there)
                if getattr(model, name, None) is not None:
                    quantize_int8_(getattr(model, name), dtype, skip=())
        pipe = ZImageControlNetPipeline(**self.base.components, controlnet=model)
        pipe.set_progress_bar_config(**self._progress)
        self._pipes = {entry.fingerprint: pipe}  # one ControlNet at a time: another one replaces it
        log.info("loaded the ControlNet %s in %.1f s", entry.name, time.perf_counter() - started)
        return pipe

    def __call__(self, *, control: ControlInput, init_images=None, strength=None, noise=None, generator,
                 num_inference_steps: int, width: int, height: int, callback_on_step_end=None, **kwargs):
        pipe = self.pipeline(control.entry)
        device = self._device()
        for name in OWN_MODULES:  # beside the transformer; the shared blocks are placed with it
            module = getattr(pipe.controlnet, name, None)
            if module is not None:
                module.to(device)
        steps = num_inference_steps
        if init_images is not None:
            latents, sigmas = start_latents(pipe, list(init_images), generator, width=width, height=height,
                                            steps=num_inference_steps, strength=strength, noise=noise,
                                            sample=control.sample)
            kwargs.update(latents=latents, sigmas=sigmas)
            steps = len(sigmas)
        window = StepWindow(control.strength, control.start, control.end, steps)
        if not window.whole:
            callback_on_step_end = chain_callbacks(window.callback, callback_on_step_end)
        return pipe(control_image=list(control.maps), generator=generator, num_inference_steps=steps, width=width,
                    height=height, controlnet_conditioning_scale=control.strength if window.whole else window.scale,
                    callback_on_step_end=callback_on_step_end, **kwargs)


TASK = tasks.register(tasks.Task("controlnet", build=ControlNetTask,
                                 call_args=lambda request: {"control": request.control,
                                                            "init_images": request.init_images,
                                                            "strength": request.strength, "noise": request.noise},
                                 needs=("control",)))


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
    dtype = pipe.vae.dtype  # the compute dtype (an int8 transformer's parameters are not)
    if noise is None:
        noise = randn_tensor(encoded.shape, generator=list(generators), device=device, dtype=dtype)
    latents = pipe.scheduler.scale_noise(encoded.to(dtype), timesteps[first:first + 1].repeat(encoded.shape[0]),
                                         noise.to(device=device, dtype=dtype))
    return latents.float(), sigmas[first:]


def render(engine, entry, jobs, maps, *, images=None, strength: float | None = None, noise=None,
           sample: bool = True, width: int | None = None, height: int | None = None):
    """Render ``jobs`` (one batch, equal control settings) with their maps (PIL, at the jobs' size) through the
    engine's one door: text-to-image, or image-to-image from ``images`` at ``strength``."""
    control = jobs[0].control
    request = RenderRequest.from_jobs(jobs, width=width, height=height, init_images=images, strength=strength,
                                      noise=noise,
                                      control=ControlInput(entry, tuple(maps), control.strength, control.start,
                                                           control.end, sample))
    return engine.render(request, TASK.name)
