"""Jobs: frozen values that fully determine an output picture, and their keys. Imports no torch.
(The user's seed specs are parsed in seeds.py, sizes in sizes.py.)

Contract of a job (the seam new capabilities plug into):
- a job is a frozen dataclass; every field that changes the output pixels is a field, and the key is the
  sha256 of ``{"kind", "version", **fields()}`` as canonical JSON;
- one rule for optional parts: a field declared with ``optional(off)`` whose value equals ``off`` is left
  out of the key (and of the record), so adding an optional part never changes an existing key;
- optional parts are fields of the render job, not new classes: ``variance``, ``loras``, ``control``
  (a ControlNet: ``ControlUse``), ``mask`` (an inpaint mask's digest); a stage's job adds only what is its
  own (refine's mode and parent, vary's strength and parent, detail's canvas key and tiles).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from .seeds import MAX_SEED


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def optional(off=None):
    """A job field that is left out of the key while it equals ``off`` (its default)."""
    return dataclasses.field(default=off, metadata={"off": off})


@dataclass(frozen=True)
class Job:
    """Base of all jobs. Subclasses list every field that changes the output pixels."""

    kind = "job"
    version = 1  # bump in a subclass when its computation changes

    def fields(self) -> dict:
        """The fields that enter the key: all of them, less the optional ones that are off."""
        data = {}
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if "off" in spec.metadata and value == spec.metadata["off"]:
                continue
            value = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
            if isinstance(value, tuple):
                value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
            data[spec.name] = value
        return data

    @property
    def key(self) -> str:
        payload = {"kind": self.kind, "version": self.version, **self.fields()}
        return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()

    def describe(self) -> dict:
        return {"kind": self.kind, "version": self.version, **self.fields()}


@dataclass(frozen=True)
class Variance:
    """Seeded noise on the prompt embedding for the first steps (``--variance``), as in ComfyUI's
    SeedVarianceEnhancer: uniform in [-1, 1] × ``strength`` × std(embedding), on a random ``share``
    of its elements, for the first ceil(``steps`` × the job's steps) steps of the full schedule.
    ``seed`` seeds the noise: the picture's own seed (a variation keeps its parent's).
    """

    strength: float
    share: float
    steps: float
    seed: int

    def noisy_steps(self, total: int) -> int:
        """How many steps, from the start of a ``total``-step schedule, see the noisy embedding."""
        return max(1, min(total, math.ceil(self.steps * total - 1e-9)))


def make_variance(strength, share, steps, seed) -> Variance | None:
    """The job's variance, or None when the strength is 0 (the field then stays out of the key)."""
    strength = float(strength or 0.0)
    if strength == 0.0:
        return None
    return Variance(strength=strength, share=float(share), steps=float(steps), seed=int(seed))


@dataclass(frozen=True)
class LoraUse:
    """A LoRA as it enters a job's key: the file's sha256 and its weight (never its name or path)."""

    sha256: str
    weight: float


def make_loras(loras) -> tuple[LoraUse, ...] | None:
    """The job's LoRAs (``engines.lora.Lora`` or LoraUse), weight-0 ones dropped; None when there are none
    (the field then stays out of the key)."""
    uses = tuple(lora.use() if hasattr(lora, "use") else lora for lora in loras or ())
    uses = tuple(use for use in uses if use.weight != 0)
    return uses or None


@dataclass(frozen=True)
class ControlUse:
    """A ControlNet as it enters a job's key: the control map's digest (after preprocessing, at the job's size),
    its type, strength, the fraction of the steps it applies over, and the ControlNet's fingerprint."""

    map: str
    type: str
    strength: float
    start: float
    end: float
    model: str


def make_control(map_digest: str, type: str, strength, start, end, model: str) -> ControlUse | None:
    """The job's control, or None at strength 0 (the field then stays out of the key: same key, same pixels)."""
    strength = float(strength or 0.0)
    if strength == 0.0 or not map_digest:
        return None
    return ControlUse(map=map_digest, type=type, strength=strength, start=float(start), end=float(end), model=model)



@dataclass(frozen=True)
class RenderJob(Job):
    """Text-to-image with Z-Image: everything that determines the picture."""

    kind = "explore"
    model: str  # model fingerprint
    prompt: str
    negative: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    dtype: str
    variance: Variance | None = optional(None)  # None: no noise on the embedding (keys from before it stay)
    loras: tuple[LoraUse, ...] | None = optional(None)  # None (or none given): no LoRA
    control: ControlUse | None = optional(None)  # None: no ControlNet
    mask: str | None = optional(None)  # sha256 of an inpaint mask; None: no mask

    def __post_init__(self):
        if self.loras is not None and not self.loras:
            object.__setattr__(self, "loras", None)  # "no LoRA" is one value

    def batch_group(self) -> tuple:
        """Jobs with equal groups can be denoised together in one batch."""
        control = (self.control.model, self.control.type, self.control.strength, self.control.start,
                   self.control.end) if self.control else None
        return (self.model, self.width, self.height, self.steps, self.guidance, self.dtype, self.loras, control,
                self.mask is not None)


@dataclass(frozen=True)
class RefineJob(RenderJob):
    """Re-render of a picked candidate at a larger size."""

    kind = "refine"
    mode: str = "hires"  # "hires" (img2img from the parent) or "rerender" (txt2img)
    strength: float = 0.0
    parent: str = ""  # digest of the parent image (hires only)
    enlarge: str = "lanczos"  # how the parent is enlarged before img2img
    crop: str = optional("")  # "WxH+X+Y": enlarged to WxH, then the target cut out at X,Y (A1111's hires fix)

    def batch_group(self) -> tuple:
        return super().batch_group() + (self.mode, self.strength)


@dataclass(frozen=True)
class VaryJob(RenderJob):
    """A variation of a candidate (`pipeline vary`): image-to-image from the candidate at its own size,
    with the variation's own noise seed (``seed``) at ``strength``."""

    kind = "vary"
    strength: float = 0.5
    parent: str = ""  # sha256 of the parent picture's file

    def batch_group(self) -> tuple:
        return super().batch_group() + (self.strength,)


def variation_seed(variation: str) -> int:
    """The noise seed of variation ``42v3``: fixed by its id, so making it again finds it in the store.

    53 bits (the top 53 of the first 8 bytes of a sha256), so the seed written into the picture is exact
    in a JavaScript number. Variations made before this took all 64 bits; run.json records each one's
    ``noise_seed`` and vary reuses it for an id already made, so those keep their keys and pictures."""
    digest = hashlib.sha256(f"pipeline vary {variation}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 11


@dataclass(frozen=True)
class UpscaleJob(Job):
    """Super-resolution of one input image."""

    kind = "upscale"
    version = 2  # 2: windows keep only the inner part of shared bands; A1111 postprocessing/extras chunks
    input: str  # sha256 of the input image file
    weights: str  # sha256 of the upscaler weights file
    scale: float  # output size / input size
    tile: int  # input tile size; 0 = whole image, -1 = chosen from free memory
    overlap: int  # -1 = default
    precision: str  # concrete: fp32, bf16 or fp16

    def batch_group(self) -> tuple:
        return (self.weights, self.tile, self.overlap, self.precision)


@dataclass(frozen=True)
class DetailJob(RenderJob):
    """``upscale --detail``: the super-resolved picture (``sr``: its UpscaleJob key) re-drawn by the diffusion
    model image-to-image at ``strength``, over tiles of at most ``tile`` output pixels sharing ``overlap``.
    The render fields are the picture's (its prompt, seed, variance, LoRAs) at the output size."""

    kind = "detail"
    sr: str = ""  # key of the UpscaleJob whose output is the canvas
    strength: float = 0.0
    tile: int = 0
    overlap: int = 0


def render_fields(*, model, prompt, negative, width, height, steps, guidance, seed, dtype,
                  variance: Variance | None = None, loras=None) -> dict:
    """Normalise render parameters so equal pictures get equal keys.

    The negative prompt only matters when classifier-free guidance is on (guidance > 0),
    so it is dropped from the key otherwise. ``variance`` is added only when there is one.
    """
    guidance = float(guidance)
    extra = {"variance": variance} if variance is not None else {}
    uses = make_loras(loras)
    if uses:
        extra["loras"] = uses
    return dict(
        **extra,
        model=model,
        prompt=prompt,
        negative=negative if guidance > 0 else "",
        width=int(width),
        height=int(height),
        steps=int(steps),
        guidance=guidance,
        seed=int(seed),
        dtype=dtype,
    )


def variance_from_record(value) -> Variance | None:
    """A job record's ``variance`` back as a Variance; None when absent or not one of ours."""
    if not isinstance(value, dict):
        return None
    try:
        variance = Variance(strength=float(value["strength"]), share=float(value["share"]),
                            steps=float(value["steps"]), seed=int(value["seed"]))
    except (KeyError, TypeError, ValueError):
        return None
    ok = 0 < variance.strength <= 2 and 0 < variance.share <= 1 and 0 < variance.steps <= 1
    return variance if ok and 0 <= variance.seed <= MAX_SEED else None
