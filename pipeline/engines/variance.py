"""Seed variance: the noisy prompt embeddings of ``--variance`` and the step callback that switches
back to the clean ones (see ``jobs.Variance``).

Z-Image-Turbo gives nearly the same composition for different seeds. Adding seeded noise to the
prompt embedding for the first steps, where the composition is decided, spreads the seeds out; the
clean embedding for the remaining steps brings back prompt adherence and text rendering. This
follows ComfyUI's SeedVarianceEnhancer node (noise on the beginning steps, switch at 20 % of them,
50 % of the values randomized) with InvokeAI's scaling of the strength by the embedding's
standard deviation (invoke-ai/InvokeAI PR #8753), so one strength suits every prompt.
"""
from __future__ import annotations

import torch

from ..core.jobs import Variance

# A generator of its own, seeded from the picture's seed but not replaying the random numbers
# that drew the picture's starting noise (the seed itself seeds that generator).
_SEED_OFFSET = 0x5EED_0F_7A81A7CE


def noisy_embedding(embedding: torch.Tensor, variance: Variance) -> torch.Tensor:
    """``embedding`` + uniform noise in [-1, 1] × strength × std(embedding) on a random share of
    its elements. Drawn on the CPU in float32, so a seed gives the same noise on any device."""
    generator = torch.Generator("cpu").manual_seed((variance.seed + _SEED_OFFSET) % 2**64)
    clean = embedding.detach().to("cpu", torch.float32)
    noise = torch.rand(clean.shape, generator=generator, dtype=torch.float32) * 2 - 1
    chosen = torch.rand(clean.shape, generator=generator, dtype=torch.float32) < variance.share
    noisy = clean + noise * chosen * (variance.strength * clean.std())
    return noisy.to(embedding.device, embedding.dtype)


def start_step(steps: int, strength: float | None) -> int:
    """The index in the full schedule of the first step an img2img pass at ``strength`` runs
    (as diffusers' Z-Image img2img pipeline computes it); 0 for text-to-image."""
    if strength is None:
        return 0
    return int(max(steps - min(steps * strength, steps), 0))


class VarianceSchedule:
    """Per picture of a batch: the noisy embedding for the first steps, then the clean one.

    ``embeddings()`` is what the pipeline starts with; ``callback`` (for ``callback_on_step_end``)
    returns the list for the next step. Steps count in the job's full schedule, so an img2img
    pass (refine, vary) that starts part-way sees the noisy embedding only where its candidate did.
    """

    def __init__(self, jobs, clean: list, steps: int, img2img_strength: float | None = None):
        self.clean = list(clean)
        self.offset = start_step(steps, img2img_strength)
        self.steps = steps
        variances = [getattr(j, "variance", None) for j in jobs]
        self.noisy_until = [v.noisy_steps(steps) if v is not None else 0 for v in variances]
        self.noisy = [noisy_embedding(e, v) if v is not None and n > self.offset else e
                      for v, e, n in zip(variances, self.clean, self.noisy_until)]

    @property
    def needed(self) -> bool:
        return any(n > self.offset for n in self.noisy_until)

    def embeddings_at(self, step: int) -> list:
        """The embeddings for step ``step`` of the full schedule."""
        return [noisy if step < until else clean
                for noisy, clean, until in zip(self.noisy, self.clean, self.noisy_until)]

    def embeddings(self) -> list:
        return self.embeddings_at(self.offset)

    def callback(self, pipe, index: int, timestep, callback_kwargs: dict) -> dict:
        ran = getattr(pipe, "num_timesteps", None)
        if ran is not None and self.offset + ran != self.steps:
            raise RuntimeError(f"seed variance expected {self.steps - self.offset} steps, the pipeline runs {ran}")
        return {"prompt_embeds": self.embeddings_at(self.offset + index + 1)}
