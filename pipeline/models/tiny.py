"""The offline ``tiny-random`` Z-Image, built in code from the real classes.

Every component is the class the real Z-Image-Turbo uses (``ZImageTransformer2DModel``,
``Qwen3Model``, a Flux-like ``AutoencoderKL``, ``FlowMatchEulerDiscreteScheduler`` with
Turbo's scheduler config, a Qwen-style fast tokenizer), only tiny. Weights are random
but seeded, so two builds in any two processes are bit-identical. The one exception
is the VAE: random VAE weights turn any latent into pixel noise, which would make it
impossible to test that a refine keeps a picture's composition, so a small VAE trained
by ``scripts/train_tiny_vae.py`` ships next to this file and is loaded when present.

``tiny_fingerprint()`` imports no torch: it names what determines the weights.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import ZImagePipeline

TINY_MODEL_ID = "tiny-random"
# Bump whenever the built weights change (configs, seeds, init, tokenizer corpus).
# v2: the text encoder's rotary frequencies stay float32 in any dtype, as from_pretrained keeps them,
# so tiny-random saved to disk and loaded back renders the same pixels.
TINY_BUILD_VERSION = 2

VAE_WEIGHTS_PATH = Path(__file__).with_name("tiny_vae.safetensors")

# Flux-like: 16 latent channels, 4 block levels (x8 downsampling), no quant convs.
# Channels are as thin as round-tripping allows: decoding dominates the tiny model's
# cost (convolutions at full resolution). No mid-block attention: at 1024^2 it would
# attend over 16384 tokens, too slow on CPU.
TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [4, 8, 16, 32],
    "layers_per_block": 1,
    "act_fn": "silu",
    "latent_channels": 16,
    "norm_num_groups": 4,
    "sample_size": 512,
    "use_quant_conv": False,
    "use_post_quant_conv": False,
    "mid_block_add_attention": False,
}
# The Flux VAE's values; used only when no trained VAE ships (the trained file's
# metadata carries the factors measured on its own latents).
DEFAULT_SCALING_FACTOR = 0.3611
DEFAULT_SHIFT_FACTOR = 0.1159

TEXT_HIDDEN_SIZE = 32
TINY_TRANSFORMER_CONFIG: dict[str, Any] = {
    "all_patch_size": (2,),
    "all_f_patch_size": (1,),
    "in_channels": 16,
    "dim": 64,
    "n_layers": 2,
    "n_refiner_layers": 1,
    "n_heads": 2,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "qk_norm": True,
    "cap_feat_dim": TEXT_HIDDEN_SIZE,
    "rope_theta": 256.0,
    "t_scale": 1000.0,
    "axes_dims": [8, 12, 12],  # sums to head_dim = dim / n_heads = 32
    # axis 0: caption positions (max_sequence_length 512, padded) + the image's frame;
    # axes 1, 2: latent patches, 256 * 16 px = 4096 px per side.
    "axes_lens": [1024, 256, 256],
}

# Z-Image-Turbo's scheduler/scheduler_config.json.
TURBO_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": False,
}

SEEDS = {"transformer": 1001, "text_encoder": 1002, "vae": 1003}

# The transformer is random, so its velocity is noise. The real model learns to
# predict velocities of the latents' scale; a default-init final layer outputs
# O(1) noise that washes out the image during img2img. Scale it down so the random
# model perturbs rather than replaces (like DiT's zero-init of the final layer).
FINAL_LAYER_INIT_SCALE = 0.1

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
TOKENIZER_VOCAB_SIZE = 1024
TOKENIZER_MAX_LENGTH = 1024

# Qwen3's template, reduced to what matters here: roles, generation prompt, and the
# empty think block Qwen3 emits when thinking is off.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)

_CORPUS = """\
a photo of a cat sitting on a wooden table next to a cup of coffee in the morning light
a portrait of an astronaut in a white space suit holding a flag, high detail, studio lighting
a red rocket on the launch pad under a clear blue sky, smoke and fire, cinematic
a mountain lake at sunset with pine trees, reflections in calm water, golden hour
a city street at night in the rain, neon signs, people with umbrellas, wet asphalt
a bowl of fresh fruit: apples, oranges, bananas and grapes on a kitchen counter
an old lighthouse on a rocky coast, stormy sea, waves crashing, dramatic clouds
a watercolor painting of a small village with red roofs and a church tower
a close-up of a flower with dew drops, macro photography, shallow depth of field
a dog running on the beach, sand and waves, bright summer day, motion blur
a cozy library with tall bookshelves, a leather armchair and a warm lamp
a futuristic robot walking through a forest, moss and ferns, soft fog
a bridge over a river in autumn, orange and yellow leaves, overcast sky
a plate of pasta with tomato sauce and basil, restaurant, top view
a black and white photograph of a man reading a newspaper on a bench
a snowy village street in winter, lights in the windows, children playing
a poster with the words hello world in bold letters, minimal design
a girl with long hair wearing a blue dress, standing in a field of wheat
an aerial view of green hills, a winding road and a small farm house
a glass of water on a window sill, sunlight, shadows, simple still life
"""


def tiny_fingerprint() -> str:
    """What determines the tiny model's weights, without importing torch.

    The build version, the digest of the shipped VAE file, and the versions of the
    libraries whose module initialisers draw the random weights.
    """
    return _fingerprint(_vae_digest())


def _vae_digest() -> str:
    if not VAE_WEIGHTS_PATH.exists():
        return "random"
    return hashlib.sha256(VAE_WEIGHTS_PATH.read_bytes()).hexdigest()[:12]


@functools.lru_cache(maxsize=4)
def _fingerprint(vae_digest: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for name in ("torch", "diffusers", "transformers", "tokenizers"):
        try:
            libs.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            libs.append(f"{name}=none")
    lib_digest = hashlib.sha256(",".join(libs).encode()).hexdigest()[:8]
    return f"{TINY_MODEL_ID}@v{TINY_BUILD_VERSION}+vae:{vae_digest}+lib:{lib_digest}"


# ---------------------------------------------------------------- tokenizer


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    """Train a byte-level BPE (Qwen-style) on the built-in corpus; deterministic."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    return tokenizer.to_str()


def build_tiny_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        model_max_length=TOKENIZER_MAX_LENGTH,
        padding_side="right",
        chat_template=CHAT_TEMPLATE,
    )


# ---------------------------------------------------------------- components


def tiny_text_encoder_config(vocab_size: int):
    """The tiny ``Qwen3Config`` (what a saved tiny text encoder's file lacks)."""
    from transformers import Qwen3Config

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN_SIZE,
        intermediate_size=2 * TEXT_HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=TOKENIZER_MAX_LENGTH,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=2,
    )
    config._attn_implementation = "sdpa"
    return config


def build_tiny_text_encoder(vocab_size: int):
    import torch
    from transformers import Qwen3Model

    config = tiny_text_encoder_config(vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEEDS["text_encoder"])
        model = Qwen3Model(config)
    return model.eval()


def cast_text_encoder(model, dtype):
    """``model.to(dtype)``, keeping its buffers (rotary frequencies) in float32 as ``from_pretrained`` does."""
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
    model.to(dtype)
    for name, buffer in buffers.items():
        owner, _, attr = name.rpartition(".")
        module = model.get_submodule(owner) if owner else model
        setattr(module, attr, buffer)
    return model


def build_tiny_transformer():
    import torch
    from diffusers import ZImageTransformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEEDS["transformer"])
        model = ZImageTransformer2DModel(**TINY_TRANSFORMER_CONFIG)
    with torch.no_grad():
        for final_layer in model.all_final_layer.values():
            final_layer.linear.weight.mul_(FINAL_LAYER_INIT_SCALE)
            final_layer.linear.bias.mul_(FINAL_LAYER_INIT_SCALE)
    return model.eval()


def read_vae_metadata(path: Path = VAE_WEIGHTS_PATH) -> dict[str, str]:
    """The safetensors header's metadata, read without torch."""
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
    return header.get("__metadata__", {}) or {}


def build_tiny_vae(weights: Path | None = VAE_WEIGHTS_PATH, **overrides):
    """The tiny ``AutoencoderKL``; trained weights when ``weights`` exists, else random."""
    import torch
    from diffusers import AutoencoderKL

    config = dict(TINY_VAE_CONFIG)
    config["scaling_factor"] = DEFAULT_SCALING_FACTOR
    config["shift_factor"] = DEFAULT_SHIFT_FACTOR
    if weights is not None and Path(weights).exists():
        meta = read_vae_metadata(Path(weights))
        config["scaling_factor"] = float(meta.get("scaling_factor", DEFAULT_SCALING_FACTOR))
        config["shift_factor"] = float(meta.get("shift_factor", DEFAULT_SHIFT_FACTOR))
    config.update(overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEEDS["vae"])
        vae = AutoencoderKL(**config)
    if weights is not None and Path(weights).exists():
        from safetensors.torch import load_file

        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        vae.load_state_dict(state, strict=True)
    return vae.eval()


def build_tiny_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**TURBO_SCHEDULER_CONFIG)


def build_tiny_components(dtype: "torch.dtype | None" = None) -> dict[str, Any]:
    """The kwargs of ``ZImagePipeline(**components)``, in ``dtype`` (float32 default).

    Weights are drawn in float32 and then cast, so every dtype rounds the same weights.
    """
    import torch

    dtype = dtype or torch.float32
    tokenizer = build_tiny_tokenizer()
    with _quiet_diffusers():
        transformer = build_tiny_transformer().to(dtype)
        vae = build_tiny_vae().to(dtype)
    if dtype != torch.float32:
        # Without native bf16/fp16 kernels (CPUs lacking AVX512-BF16/AMX), channels-first
        # half-precision convolutions fall back to a very slow path; channels-last doesn't.
        vae = vae.to(memory_format=torch.channels_last)
    return {
        "transformer": transformer,
        "text_encoder": cast_text_encoder(build_tiny_text_encoder(len(tokenizer)), dtype),
        "tokenizer": tokenizer,
        "vae": vae,
        "scheduler": build_tiny_scheduler(),
    }


@contextlib.contextmanager
def _quiet_diffusers():
    """Hide diffusers' warning about casting a model with ``.to(dtype)``: it is intended here."""
    from diffusers.utils import logging

    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(previous)


def build_tiny_pipeline(dtype: "torch.dtype | None" = None) -> "ZImagePipeline":
    from diffusers import ZImagePipeline

    pipe = ZImagePipeline(**build_tiny_components(dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe
