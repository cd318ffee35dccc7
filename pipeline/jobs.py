"""Jobs: frozen values that fully determine an output picture, and their keys.

Also the parsers for the user's seed specs and sizes. Imports no torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass

from .errors import UserError

MAX_SEED = 2**64 - 1
JS_SAFE_SEEDS = 2**53  # seeds below this are exact in a JavaScript number (A1111's and ComfyUI's seed boxes)
MAX_SEEDS_PER_SPEC = 100_000
MIN_SIDE, MAX_SIDE = 64, 4096
SIZE_MULTIPLE = 16  # Z-Image: VAE downsamples ×8, the transformer patches 2×2

SIZE_PRESETS = {
    "square": (512, 512),
    "portrait": (512, 768),
    "landscape": (768, 512),
    "tall": (512, 912),
    "wide": (912, 512),
}


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Job:
    """Base of all jobs. Subclasses list every field that changes the output pixels."""

    kind = "job"
    version = 1  # bump in a subclass when its computation changes

    def fields(self) -> dict:
        return dataclasses.asdict(self)

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
    variance: Variance | None = None  # None: no noise on the embedding, and no field in the key
    loras: tuple[LoraUse, ...] | None = None  # None: no LoRA, and no field in the key

    def fields(self) -> dict:
        data = super().fields()
        if data.get("variance") is None:
            data.pop("variance", None)  # variance 0 keeps the keys pictures were stored under before it existed
        if not data.get("loras"):
            data.pop("loras", None)  # so does "no LoRA"
        else:
            data["loras"] = [dict(use) for use in data["loras"]]
        return data

    def batch_group(self) -> tuple:
        """Jobs with equal groups can be denoised together in one batch."""
        return (self.model, self.width, self.height, self.steps, self.guidance, self.dtype, self.loras)


@dataclass(frozen=True)
class RefineJob(RenderJob):
    """Re-render of a picked candidate at a larger size."""

    kind = "refine"
    mode: str = "hires"  # "hires" (img2img from the parent) or "rerender" (txt2img)
    strength: float = 0.0
    parent: str = ""  # digest of the parent image (hires only)
    enlarge: str = "lanczos"  # how the parent is enlarged before img2img
    crop: str = ""  # "WxH+X+Y": enlarged to WxH, then the target cut out at X,Y (A1111's hires fix); "": resized

    def fields(self) -> dict:
        data = super().fields()
        if not data.get("crop"):
            data.pop("crop", None)  # no crop keeps the keys refines were stored under before it existed
        return data

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
class DetailJob(Job):
    """``upscale --detail``: the super-resolved picture (``sr``: its UpscaleJob key) re-drawn by the diffusion
    model image-to-image at ``strength``, over tiles of at most ``tile`` output pixels sharing ``overlap``."""

    kind = "detail"
    sr: str  # key of the UpscaleJob whose output is the canvas
    model: str  # diffusion model fingerprint
    prompt: str
    negative: str
    width: int  # output size
    height: int
    steps: int
    guidance: float
    seed: int
    dtype: str
    strength: float
    tile: int
    overlap: int
    variance: Variance | None = None  # as in refine: the picture's own, None: no field in the key
    loras: tuple[LoraUse, ...] | None = None  # the picture's LoRAs; None: no field in the key

    def fields(self) -> dict:
        data = super().fields()
        if data.get("variance") is None:
            data.pop("variance", None)
        if not data.get("loras"):
            data.pop("loras", None)
        else:
            data["loras"] = [dict(use) for use in data["loras"]]
        return data


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


# ---------------------------------------------------------------- seed specs

_SEED_ITEM = re.compile(r"^\s*(\d+)((?:\s*v\s*\d+)*)\s*(?:-\s*(\d+)\s*)?$", re.IGNORECASE)

# A picture of a run is named by its seed (42) or, for a variation made by `pipeline vary`, by its
# parent's name, "v" and the variation's number from 1 (42v3; a variation of that one: 42v3v1).
# In a seed spec "42v1-4" is 42v1, 42v2, 42v3, 42v4 (the range runs over the last number).


def parse_seeds(spec: str | int | list, *, variations: bool = False) -> list:
    """Parse '1,2,10-20' (ranges inclusive) into a list of distinct seeds, in order.

    With ``variations`` the items may also be variation ids ('42v3', '42v1-4'), returned as
    canonical strings next to the int seeds; without, such an item is refused in one sentence.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        items = [str(spec)]
    elif isinstance(spec, (list, tuple, range)):
        items = [str(s) for s in spec]
    elif isinstance(spec, str):
        items = spec.split(",")
    else:
        raise UserError(f"seeds must be a list like 1,2,10-20, not {type(spec).__name__}")
    seeds: list = []
    seen: set = set()
    for item in items:
        text = item.strip()
        if not text:
            raise UserError(f"empty item in seed list {spec!r}: use a form like 1,2,10-20")
        if text.startswith("-") or text.startswith("−"):
            raise UserError(f"seed {text!r} is negative: seeds are whole numbers from 0 to {MAX_SEED}")
        match = _SEED_ITEM.match(text)
        if not match:
            hint = " or variation ids like 42v3" if variations else ""
            raise UserError(f"cannot read seed {text!r}: use whole numbers and ranges like 1,2,10-20{hint}")
        first = int(match.group(1))
        if first > MAX_SEED:
            raise UserError(f"seed {first} is too large: seeds go from 0 to {MAX_SEED}")
        path = [int(n) for n in re.findall(r"\d+", match.group(2))]
        if path and not variations:
            raise UserError(f"{text!r} names a variation (made by `pipeline vary`); here only plain seeds "
                            f"like 1,2,10-20 can be given")
        if any(n < 1 for n in path):
            raise UserError(f"cannot read {text!r}: variations are numbered from 1, as in 42v1")
        last_given = int(match.group(3)) if match.group(3) is not None else None
        if path:
            low = path[-1]
            high = low if last_given is None else last_given
            names = [variation_id(first, *path[:-1], n) for n in range(low, high + 1)]
        else:
            high = first if last_given is None else last_given
            low = first
            if high > MAX_SEED:
                raise UserError(f"seed {high} is too large: seeds go from 0 to {MAX_SEED}")
            names = None
        if high < low:
            raise UserError(f"seed range {text!r} runs backwards: write it as {high}-{low}" if not path else
                            f"variation range {text!r} runs backwards")
        if high - low + 1 + len(seeds) > MAX_SEEDS_PER_SPEC:
            raise UserError(f"seed list {spec!r} has more than {MAX_SEEDS_PER_SPEC} seeds")
        for seed in names if names is not None else range(low, high + 1):
            if seed not in seen:
                seen.add(seed)
                seeds.append(seed)
    if not seeds:
        raise UserError("no seeds given: use a form like 1,2,10-20")
    return seeds


def variation_id(seed: int, *numbers: int) -> str:
    """variation_id(42, 3) -> '42v3'; variation_id(42, 3, 1) -> '42v3v1'."""
    return str(int(seed)) + "".join(f"v{int(n)}" for n in numbers)


def pick_path(pick) -> tuple[int, ...]:
    """42 -> (42,); '42v3v1' -> (42, 3, 1): sorting by it puts variations right after their parent."""
    if isinstance(pick, int):
        return (pick,)
    return tuple(int(n) for n in str(pick).lower().split("v"))


def pick_parent(pick):
    """The picture a variation was made from ('42v3v1' -> '42v3', '42v3' -> 42); None for a seed."""
    path = pick_path(pick)
    if len(path) == 1:
        return None
    return path[0] if len(path) == 2 else variation_id(*path[:-1])


def pick_root(pick) -> int:
    """The seed a picture descends from: 42 for 42, 42v3 and 42v3v1."""
    return pick_path(pick)[0]


def seeds_from_count(count: int, base: int) -> list[int]:
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    if count > MAX_SEEDS_PER_SPEC:
        raise UserError(f"--count {count} is more than {MAX_SEEDS_PER_SPEC} candidates")
    if base < 0 or base + count - 1 > MAX_SEED:
        raise UserError(f"base seed {base} is out of range: seeds go from 0 to {MAX_SEED}")
    return list(range(base, base + count))


def seed_ranges(seeds: list, sep: str = ", ") -> str:
    """[1, 2, 3, 7] -> '1-3, 7'; variation ids are listed after the seeds, one by one."""
    parts: list[str] = []
    start = prev = None
    for seed in [s for s in seeds if isinstance(s, int)]:
        if start is not None and seed == prev + 1:
            prev = seed
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = seed
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    parts += [str(s) for s in sorted((s for s in seeds if not isinstance(s, int)), key=pick_path)]
    return sep.join(parts)


# ---------------------------------------------------------------- sizes


def _nearest_multiple(value: int) -> int:
    return max(SIZE_MULTIPLE, int(round(value / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def parse_size(text: str | int | tuple) -> tuple[int, int]:
    """'512' → (512, 512); '512x768' → (512, 768); presets by name. Returns (width, height)."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        width, height = (int(v) for v in text)
    else:
        raw = str(text).strip().lower()
        if raw in SIZE_PRESETS:
            return SIZE_PRESETS[raw]
        match = re.fullmatch(r"(\d{1,6})(?:\s*[x×*,]\s*(\d{1,6}))?", raw)
        if not match:
            presets = ", ".join(SIZE_PRESETS)
            raise UserError(f"cannot read size {text!r}: use 512, WIDTHxHEIGHT like 512x768, or one of {presets}")
        width = int(match.group(1))
        height = int(match.group(2)) if match.group(2) else width
    check_size(width, height)
    return width, height


def check_size(width: int, height: int) -> None:
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise UserError(f"size {width}x{height} is out of range: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")
    if width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        near = f"{_nearest_multiple(width)}x{_nearest_multiple(height)}"
        raise UserError(f"size {width}x{height} is not a multiple of {SIZE_MULTIPLE} on each side: try {near}")


def pick_order(value) -> tuple:
    """A sort key for recorded pictures by seed or variation id (42, 42v1, 42v1v1, 42v2, 43); anything
    else (None, a damaged entry) sorts last."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return (1, ())
        return (0, pick_path(value))
    except ValueError:
        return (1, ())


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
