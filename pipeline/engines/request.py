"""One render request: everything the diffusion engine draws in one call, as one typed value.

The engine has one door, ``ZImageEngine.render(request, task)``:

    request = RenderRequest.from_jobs(jobs, init_images=parents, strength=0.5)
    images  = engine.render(request, "img2img")

``task`` names the diffusers pipeline to run (``engines.tasks``: txt2img, img2img, detail; inpaint and
controlnet register their own). A request is plain data; a task reads only the parts it needs:

    pictures     one ``Picture`` per output: prompt, negative, seed (CPU-drawn noise), variance
    width/height/steps/guidance, loras (one set per call)
    init_images  one PIL image per picture (img2img, inpaint, detail), with ``strength``
    control      what a ControlNet task conditions on (issue 31: its own typed value)
    mask         what an inpaint task keeps and repaints (issue 32: its own typed value)
    noise        starting noise (a tensor) for a task that takes it: the detail pass's canvas slice

Contract: the engine never keeps a request and never sets state on objects it did not make; a request
built from jobs renders exactly what those jobs' keys promise. Imports no torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..core.jobs import LoraUse, Variance


@dataclass(frozen=True)
class Picture:
    """One output of a request: what differs from picture to picture in a batch."""

    prompt: str
    negative: str
    seed: int
    variance: Variance | None = None


@dataclass(frozen=True)
class RenderRequest:
    pictures: tuple[Picture, ...]
    width: int
    height: int
    steps: int
    guidance: float
    loras: tuple[LoraUse, ...] | None = None
    init_images: tuple | None = None  # PIL images, one per picture
    strength: float | None = None  # how much of an init image is redrawn (img2img's strength)
    control: object = None  # a ControlNet task's input
    mask: object = None  # an inpaint task's input
    noise: object = None  # a torch tensor of starting noise, for tasks that take it

    def __post_init__(self):
        if not self.pictures:
            raise ValueError("a render request needs at least one picture")
        if self.init_images is not None and len(self.init_images) != len(self.pictures):
            raise ValueError(f"{len(self.init_images)} init images for {len(self.pictures)} pictures")

    @property
    def batch(self) -> int:
        return len(self.pictures)

    @classmethod
    def from_jobs(cls, jobs, *, width: int | None = None, height: int | None = None, init_images=None,
                  strength: float | None = None, **parts) -> "RenderRequest":
        """The request for a batch of compatible jobs (equal ``batch_group()``): the first job's shared
        settings, each job's prompt, negative, seed and variance; ``width``/``height`` override the size
        (the detail pass renders tiles of a larger picture)."""
        first = jobs[0]
        pictures = tuple(Picture(job.prompt, job.negative, job.seed, getattr(job, "variance", None)) for job in jobs)
        return cls(pictures, width=int(width or first.width), height=int(height or first.height), steps=first.steps,
                   guidance=first.guidance, loras=getattr(first, "loras", None),
                   init_images=tuple(init_images) if init_images is not None else None,
                   strength=None if strength is None else float(strength), **parts)
