"""The Z-Image engine: loads the diffusers pipeline once and renders jobs in batches.

Heavy imports (torch, diffusers) happen here and only here, when a job misses the store.
"""
from __future__ import annotations

import logging
import time

import torch

from ..errors import UserError
from ..jobs import RenderJob
from ..models import TINY, display_name, model_fingerprint

log = logging.getLogger("pipeline")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def pick_device(requested: str | None = None) -> str:
    """CUDA if present, else MPS, else CPU — or what the user asked for."""
    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {requested!r} was asked for but CUDA is not available here")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _load_diffusers_pipeline(model: str, dtype):
    from diffusers import ZImagePipeline

    if model == TINY:
        from .tiny import build_tiny_pipeline

        return build_tiny_pipeline(dtype)
    try:
        return ZImagePipeline.from_pretrained(model, torch_dtype=dtype)
    except (OSError, ValueError) as err:
        text = str(err)
        if "offline" in text.lower() or "connect" in text.lower() or "cannot find" in text.lower() \
                or "not find" in text.lower() or "local_files_only" in text or "not cached" in text.lower():
            raise UserError(
                f"model {model} is not in the local Hugging Face cache and cannot be downloaded here: "
                f"download it on a connected machine (`hf download {model}`) and point HF_HOME at that cache, "
                f"or pass --model /path/to/a/local/diffusers/folder"
            ) from err
        raise UserError(f"cannot load model {model}: {text.splitlines()[0] if text else err.__class__.__name__}") from err


class ZImageEngine:
    """One loaded Z-Image pipeline (text-to-image plus an img2img view of the same weights)."""

    def __init__(self, model: str, device: str | None = None, dtype: str = "bf16", memory: str = "auto"):
        self.model = model
        self.device = pick_device(device)
        self.dtype_name = dtype
        self.dtype = DTYPES[dtype]
        self.memory = memory
        started = time.perf_counter()
        self.pipe = _load_diffusers_pipeline(model, self.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.profile = self._place()
        self.fingerprint = model_fingerprint(model)
        self._img2img = None
        self._embeds: dict[str, list] = {}
        log.info("loaded %s on %s (%s) in %.1f s", display_name(model), self.device, dtype, time.perf_counter() - started)

    def _place(self) -> str:
        """Put the components on the device for the memory profile; return the profile used."""
        if self.device == "cpu":
            if self.memory not in ("auto", "full"):
                log.warning("memory profile %r needs an accelerator; running everything on the CPU", self.memory)
            return "cpu"
        self.pipe.to(self.device)
        return "full"

    # ------------------------------------------------------------ prompts

    def encode(self, prompts: list[str]) -> dict[str, object]:
        """Prompt embeddings, computed once per distinct prompt text."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._embeds]
        if todo:
            with torch.inference_mode():
                # copy: the Z-Image pipeline rewrites the caller's prompt list in place
                embeds, _ = self.pipe.encode_prompt(prompt=list(todo), device=self.pipe._execution_device,
                                                    do_classifier_free_guidance=False)
            self._embeds.update(zip(todo, embeds))
        return {p: self._embeds[p] for p in prompts}

    def _embeddings(self, jobs: list[RenderJob]):
        cfg = jobs[0].guidance > 0
        texts = [j.prompt for j in jobs] + ([j.negative for j in jobs] if cfg else [])
        table = self.encode(texts)
        positive = [table[j.prompt] for j in jobs]
        negative = [table[j.negative] for j in jobs] if cfg else None
        return positive, negative

    @staticmethod
    def _generators(jobs: list[RenderJob]):
        # Noise is drawn on the CPU so a seed means the same picture on any device.
        return [torch.Generator("cpu").manual_seed(j.seed) for j in jobs]

    # ------------------------------------------------------------ rendering

    def txt2img(self, jobs: list[RenderJob]):
        """Render a batch of compatible jobs (same size, steps, guidance); returns PIL images."""
        first = jobs[0]
        positive, negative = self._embeddings(jobs)
        with torch.inference_mode():
            result = self.pipe(
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                width=first.width,
                height=first.height,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                generator=self._generators(jobs),
                output_type="pil",
            )
        return list(result.images)

    @property
    def img2img_pipe(self):
        """``ZImageImg2ImgPipeline`` sharing the already-loaded components (no second load)."""
        if self._img2img is None:
            from diffusers import ZImageImg2ImgPipeline

            self._img2img = ZImageImg2ImgPipeline(**self.pipe.components)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img

    def img2img(self, jobs: list[RenderJob], images: list, strength: float):
        first = jobs[0]
        positive, negative = self._embeddings(jobs)
        with torch.inference_mode():
            result = self.img2img_pipe(
                image=images,
                strength=strength,
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                width=first.width,
                height=first.height,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                generator=self._generators(jobs),
                output_type="pil",
            )
        return list(result.images)

    def peak_memory_bytes(self) -> int | None:
        if self.device.startswith("cuda"):
            return int(torch.cuda.max_memory_allocated())
        return None

    def reset_peak_memory(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
