"""The ComfyUI graph that makes a picture, built from our record: ``prompt`` (API format, what ComfyUI runs)
and ``workflow`` (the UI graph it loads when a PNG is dropped on it), as ComfyUI's SaveImage writes them.

Shape: the official Z-Image-Turbo template (comfyui-workflow-templates: UNETLoader, CLIPLoader ``lumina2``,
VAELoader, ModelSamplingAuraFlow shift 3, CLIPTextEncode, EmptySD3LatentImage, KSampler, VAEDecode,
SaveImage), with our sampler (euler/simple, as diffusers' FlowMatchEuler runs Z-Image) and our settings.

Extension points (no switch to edit): a record kind registers how its latent is made
(``@latent_for("explore")``), or the whole decoded image when it is more than one sampled latent
(``@image_for("inpaint")``: each region sampled, decoded and pasted back); an optional record field registers a patch on the model chain
(``@model_patch("loras")``), on the conditioning (``@conditioning_patch(...)``: ControlNet) or on the
decoded image (``@image_step("upscale")``). Each is a pure function of the record. Imports nothing heavy.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SHIFT = 3.0  # Z-Image-Turbo's scheduler shift (diffusers' scheduler config; the template's ModelSamplingAuraFlow)
TEMPLATE_FILES = {"unet": "z_image_turbo_bf16.safetensors", "clip": "qwen_3_4b.safetensors", "vae": "ae.safetensors"}
UPSCALER_FILES = {"realesrgan-x4plus": "RealESRGAN_x4plus.pth", "realesrgan-x4plus-anime": "RealESRGAN_x4plus_anime_6B.pth",
                  "realesr-animevideov3": "realesr-animevideov3.pth"}
MAX_JS_INT = 2**53 - 1  # ComfyUI's JSON numbers pass through JavaScript


@dataclass(frozen=True)
class Ref:
    """An output of a node: [node id, output slot] in the API format."""

    node: str
    slot: int = 0

    def link(self) -> list:
        return [self.node, self.slot]


@dataclass
class Graph:
    """An API-format graph being built: node id -> {"class_type", "inputs"}; ids in order of creation."""

    nodes: dict[str, dict] = field(default_factory=dict)

    def add(self, class_type: str, **inputs) -> Ref:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type,
                               "inputs": {k: v.link() if isinstance(v, Ref) else v for k, v in inputs.items()},
                               "_meta": {"title": class_type}}
        return Ref(node_id)


@dataclass
class Chain:
    """What a picture's graph passes along: the model, text encoder, VAE and conditioning."""

    graph: Graph
    record: dict
    model: Ref
    clip: Ref
    vae: Ref
    positive: Ref | None = None
    negative: Ref | None = None
    before_control: Ref | None = None  # the model before the record's ControlNet patch (a pass made without it)
    _uncontrolled: Ref | None = None

    def uncontrolled(self) -> Ref:
        """The sampling model without the record's own control (its first pass, its detail pass): the same
        model when there is none."""
        if self.before_control is None:
            return self.model
        if self._uncontrolled is None:
            self._uncontrolled = self.graph.add("ModelSamplingAuraFlow", model=self.before_control, shift=SHIFT)
        return self._uncontrolled


# ---------------------------------------------------------------- registries

LATENT_FOR: dict[str, Callable[[Chain], Ref]] = {}  # record kind -> the sampled latent (before VAEDecode)
IMAGE_FOR: dict[str, Callable[[Chain], Ref]] = {}  # record kind -> the finished image (it decodes its own latents)
MODEL_PATCHES: list[tuple[str, Callable[[Chain, object], Ref]]] = []  # (field, fn(chain, value) -> model)
CONDITIONING_PATCHES: list[tuple[str, Callable[[Chain, object], tuple[Ref, Ref]]]] = []
IMAGE_STEPS: list[tuple[str, Callable[[Chain, Ref, object], Ref]]] = []  # (field, fn(chain, image, value) -> image)


def _by_kind(table: dict):
    """A decorator factory: ``@name("refine", "hires")`` files the function under each record kind in ``table``."""
    def decorator(*kinds: str):
        def register(fn):
            for kind in kinds:
                table[kind] = fn
            return fn
        return register
    return decorator


def _by_field(table: list):
    """A decorator factory: ``@name("control")`` adds (field, function) to ``table``, applied in that order."""
    def decorator(field_name: str):
        def register(fn):
            table.append((field_name, fn))
            return fn
        return register
    return decorator


latent_for = _by_kind(LATENT_FOR)
image_for = _by_kind(IMAGE_FOR)
model_patch = _by_field(MODEL_PATCHES)
conditioning_patch = _by_field(CONDITIONING_PATCHES)
image_step = _by_field(IMAGE_STEPS)


# ---------------------------------------------------------------- the graph

def comfy_prompt(record: dict) -> dict | None:
    """The API-format graph that makes the picture ``record`` describes; None when the record is not one of
    ours (no prompt) or of a kind no builder is registered for (``comfy_kinds`` registers ours: the writer,
    ``metadata``, imports it; this module does not, so the two do not import each other)."""

    if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
        return None
    kind = record.get("kind", "explore")
    build, build_image = LATENT_FOR.get(kind), IMAGE_FOR.get(kind)
    if build is None and build_image is None:
        return None
    chain = _loaders(Graph(), record)
    if build_image is not None:
        image = build_image(chain)
    else:
        image = chain.graph.add("VAEDecode", samples=build(chain), vae=chain.vae)
    for name, step in IMAGE_STEPS:
        if record.get(name):
            image = step(chain, image, record[name])
    chain.graph.add("SaveImage", images=image, filename_prefix=f"pipeline/{record.get('kind', 'explore')}")
    return chain.graph.nodes


def _loaders(graph: Graph, record: dict) -> Chain:
    files = model_files(record.get("model"))
    model = graph.add("UNETLoader", unet_name=files["unet"], weight_dtype="default")
    clip = graph.add("CLIPLoader", clip_name=files["clip"], type="lumina2", device="default")
    vae = graph.add("VAELoader", vae_name=files["vae"])
    chain = Chain(graph, record, model, clip, vae)
    for name, patch in MODEL_PATCHES:
        if record.get(name):
            chain.model = patch(chain, record[name])
    chain.model = graph.add("ModelSamplingAuraFlow", model=chain.model, shift=SHIFT)
    return chain


def model_files(fingerprint) -> dict:
    """The model's files as ComfyUI names them: the template's, or the user's own transformer file when
    the model came from a ComfyUI folder (``comfy:<transformer stem>:<digest>``)."""
    files = dict(TEMPLATE_FILES)
    if isinstance(fingerprint, str) and fingerprint.startswith("comfy:"):
        stem = fingerprint.split(":")[1]
        if stem:
            files["unet"] = stem if stem.endswith((".safetensors", ".gguf")) else f"{stem}.safetensors"
    return files


def conditioning(chain: Chain, prompt: str, negative: str, guidance: float) -> tuple[Ref, Ref]:
    """Positive and negative as the template makes them: without CFG (guidance 0) the negative is the
    zeroed positive (ConditioningZeroOut); with CFG, the negative prompt encoded."""
    graph = chain.graph
    positive = graph.add("CLIPTextEncode", text=prompt, clip=chain.clip)
    if guidance > 0:
        negative_ref = graph.add("CLIPTextEncode", text=negative or "", clip=chain.clip)
    else:
        negative_ref = graph.add("ConditioningZeroOut", conditioning=positive)
    chain.positive, chain.negative = positive, negative_ref
    for name, patch in CONDITIONING_PATCHES:
        if chain.record.get(name):
            chain.positive, chain.negative = patch(chain, chain.record[name])
    return chain.positive, chain.negative


def comfy_cfg(guidance) -> float:
    """Our guidance as KSampler's ``cfg`` (uncond + cfg·(cond − uncond)): g + 1; no CFG is 1."""
    return round(float(guidance or 0.0) + 1.0, 6)


def comfy_seed(seed) -> int:
    return int(seed or 0)


def denoise_for(steps: int, ran: int) -> float:
    """KSampler's ``denoise`` that makes it run the last ``ran`` steps of a ``steps``-step schedule: it
    computes ``int(steps_asked / denoise)`` steps and runs the last ``steps_asked`` (comfy/samplers.py)."""
    if ran >= steps:
        return 1.0
    denoise = ran / steps
    while int(ran / denoise) < steps:  # a float that lands just under: nudge it down
        denoise = math.nextafter(denoise, 0.0)
    return denoise


def sample(chain: Chain, latent: Ref, *, seed, steps: int, guidance, positive: Ref, negative: Ref,
           ran: int | None = None, model: Ref | None = None) -> Ref:
    ran = steps if ran is None else ran
    return chain.graph.add("KSampler", model=model or chain.model, seed=comfy_seed(seed), steps=ran, cfg=comfy_cfg(guidance),
                           sampler_name="euler", scheduler="simple", positive=positive, negative=negative,
                           latent_image=latent, denoise=denoise_for(steps, ran))


def resize(chain: Chain, image: Ref, width: int, height: int, crop: str = "") -> Ref:
    """Lanczos to ``width``×``height``; ``crop`` ``WxH+X+Y``: to WxH, then the target cut out at X,Y."""
    if crop:
        size, x, y = crop.split("+")
        cover_w, cover_h = (int(v) for v in size.split("x"))
        image = chain.graph.add("ImageScale", image=image, upscale_method="lanczos", width=cover_w, height=cover_h,
                                crop="disabled")
        return chain.graph.add("ImageCrop", image=image, width=width, height=height, x=int(x), y=int(y))
    return chain.graph.add("ImageScale", image=image, upscale_method="lanczos", width=width, height=height,
                           crop="disabled")


def upscaler_file(name: str) -> str:
    base = str(name).split("@", 1)[0]
    return UPSCALER_FILES.get(base.lower(), base if base.endswith((".pth", ".safetensors")) else f"{base}.pth")


def enlarge(chain: Chain, image: Ref, how: str, width: int, height: int, crop: str = "") -> Ref:
    """The parent enlarged as refine enlarged it: Lanczos, or an upscaler model and then Lanczos to size."""
    if how and str(how).split("@", 1)[0].lower() != "lanczos":
        model = chain.graph.add("UpscaleModelLoader", model_name=upscaler_file(how))
        image = chain.graph.add("ImageUpscaleWithModel", upscale_model=model, image=image)
    return resize(chain, image, width, height, crop)


def parent_image_name(record: dict) -> str:
    """The file a LoadImage node names (put the parent picture in ComfyUI's input folder): the parent as
    our run directory names it (``seed-42.png``), else its key."""
    from .seeds import pick_parent

    variation = record.get("variation")
    if record.get("kind") == "vary" and isinstance(variation, str):
        return f"seed-{pick_parent(variation)}.png"
    if isinstance(record.get("parent_key"), str):
        return f"{record['parent_key'][:12]}.png"
    return "parent.png"
