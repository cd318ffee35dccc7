"""Single-file components (ComfyUI's files) loaded as diffusers/transformers models.

Key layouts, and how each becomes the diffusers/transformers one:

- transformer (``z_image_turbo_bf16.safetensors``): ComfyUI's Lumina/NextDiT names (``x_embedder``,
  ``final_layer``, fused ``attention.qkv``, ``attention.out``, ``q_norm``/``k_norm``), converted by
  diffusers' ``convert_z_image_transformer_checkpoint_to_diffusers`` (via ``from_single_file``);
  ``.gguf`` files load quantized through diffusers' GGUF support.
- VAE (``ae.safetensors``): the original Flux autoencoder's LDM names (``encoder.down.0.block.0``,
  ``decoder.up.3.upsample``, ``mid.attn_1``), converted by diffusers' ``convert_ldm_vae_checkpoint``
  (``AutoencoderKL.from_single_file``).
- text encoder (``qwen_3_4b.safetensors``): ComfyUI's Qwen3-4B uses transformers' own
  ``Qwen3ForCausalLM`` names (``model.layers.N.self_attn.q_proj`` ...; see ComfyUI's
  ``comfy/sd.py: detect_te_model``), so it loads as a ``Qwen3Model`` after the ``model.`` prefix.

The files carry no configs. They come from the package: the real Z-Image-Turbo configs in
``zimage_configs/``, or tiny-random's (``models/tiny.py``), whichever the file's tensor shapes
match (read from the safetensors header, without loading the weights).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import UserError

CONFIGS = Path(__file__).with_name("zimage_configs")
_TRANSFORMER_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")


def tensor_shapes(path: str | os.PathLike) -> dict[str, list[int]]:
    """Tensor name -> shape, from a safetensors header (no torch, no weights read)."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 200_000_000:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
    except (OSError, ValueError, struct.error) as err:
        raise UserError(f"{path} is not a readable .safetensors file ({err.__class__.__name__})") from None
    return {k: v.get("shape", []) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def _shipped(component: str) -> dict:
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((CONFIGS / component / name).read_text())


def _lookup(shapes: dict, names: tuple[str, ...]) -> list[int] | None:
    for name in names:
        if name in shapes:
            return shapes[name]
    return None


def transformer_config(path: str, flag: str = "--transformer") -> dict:
    """Z-Image-Turbo's transformer config, or tiny-random's, by the width of the file's patch embedder."""
    from .tiny import TINY_TRANSFORMER_CONFIG

    if str(path).lower().endswith(".gguf"):
        return _shipped("transformer")
    shapes = tensor_shapes(path)
    if any(k.endswith(".scale_weight") or k.endswith("scaled_fp8") for k in shapes):
        raise UserError(f"{flag} {path} is a scaled-fp8 file, which is not supported here: use the bf16 file, "
                        "a plain fp8 (e4m3fn) file, or a .gguf")
    embed = _lookup(shapes, tuple(p + "x_embedder.weight" for p in _TRANSFORMER_PREFIXES) + ("all_x_embedder.2-1.weight",))
    if embed is None:
        raise UserError(f"{flag} {path} is not a Z-Image transformer (it has no x_embedder weight)")
    for config in (_shipped("transformer"), dict(TINY_TRANSFORMER_CONFIG)):
        if embed[0] == config["dim"]:
            return config
    raise UserError(f"{flag} {path} has width {embed[0]}, which is neither Z-Image-Turbo's (3840) nor tiny-random's")


def vae_config(path: str, flag: str = "--vae") -> dict:
    """The Flux VAE's config as Z-Image-Turbo ships it, or tiny-random's, by the decoder's input width."""
    from . import tiny

    shapes = tensor_shapes(path)
    conv_in = _lookup(shapes, ("decoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight", "vae.decoder.conv_in.weight"))
    if conv_in is None:
        raise UserError(f"{flag} {path} is not a VAE (it has no decoder.conv_in weight)")
    real = _shipped("vae")
    small = dict(tiny.TINY_VAE_CONFIG)
    meta = tiny.read_vae_metadata() if tiny.VAE_WEIGHTS_PATH.exists() else {}
    small["scaling_factor"] = float(meta.get("scaling_factor", tiny.DEFAULT_SCALING_FACTOR))
    small["shift_factor"] = float(meta.get("shift_factor", tiny.DEFAULT_SHIFT_FACTOR))
    for config in (real, small):
        if conv_in[0] == config["block_out_channels"][-1] and conv_in[1] == config["latent_channels"]:
            return config
    raise UserError(f"{flag} {path} has a decoder of width {conv_in[0]}, which is neither the Flux VAE's (512) "
                    "nor tiny-random's")


def text_encoder_config(path: str, flag: str = "--text-encoder"):
    """Qwen3-4B's config as Z-Image-Turbo ships it, or tiny-random's, by the embedding's shape."""
    from transformers import Qwen3Config

    from .tiny import tiny_text_encoder_config

    shapes = tensor_shapes(path)
    embed = _lookup(shapes, ("model.embed_tokens.weight", "embed_tokens.weight"))
    if embed is None:
        raise UserError(f"{flag} {path} is not a Qwen3 text encoder (it has no embed_tokens weight)")
    vocab, hidden = embed
    real = Qwen3Config.from_dict(_shipped("text_encoder"))
    if hidden == real.hidden_size:
        real.vocab_size = vocab
        return real
    small = tiny_text_encoder_config(vocab)
    if hidden == small.hidden_size:
        return small
    raise UserError(f"{flag} {path} has hidden size {hidden}, which is neither Qwen3-4B's (2560) nor tiny-random's")


@contextmanager
def _folder(config: dict | None = None, links: dict[str, Path] | None = None, config_name: str = "config.json"):
    """A temporary folder holding a config and symlinks: what ``from_pretrained``/``from_single_file`` read."""
    with tempfile.TemporaryDirectory(prefix="pipeline-config-") as tmp:
        if config is not None:
            Path(tmp, config_name).write_text(json.dumps(config))
        for name, target in (links or {}).items():
            os.symlink(Path(target).resolve(), Path(tmp, name))
        yield tmp


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else err.__class__.__name__


def load_transformer(path: str, dtype, flag: str = "--transformer", tiny: bool = False):
    from diffusers import ZImageTransformer2DModel

    if tiny and str(path).lower().endswith(".gguf"):
        from .tiny import TINY_TRANSFORMER_CONFIG

        config = dict(TINY_TRANSFORMER_CONFIG)
    else:
        config = transformer_config(path, flag)
    kwargs = {"dtype": dtype}
    if str(path).lower().endswith(".gguf"):
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise UserError(f"a .gguf {flag} needs the gguf package: pip install gguf") from None
        from diffusers import GGUFQuantizationConfig

        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=dtype)
    config = {"_class_name": "ZImageTransformer2DModel", **config}
    try:
        with _folder(config) as folder:
            return ZImageTransformer2DModel.from_single_file(str(path), config=folder, **kwargs).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load {flag} {path} as a Z-Image transformer: {_first_line(err)}") from err


def load_vae(path: str, dtype, flag: str = "--vae"):
    from diffusers import AutoencoderKL

    config = {"_class_name": "AutoencoderKL", **vae_config(path, flag)}
    try:
        with _folder(config) as folder:
            return AutoencoderKL.from_single_file(str(path), config=folder, dtype=dtype).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load {flag} {path} as a Flux VAE: {_first_line(err)}") from err


def load_text_encoder(path: str, dtype, flag: str = "--text-encoder"):
    from transformers import Qwen3Model

    config = text_encoder_config(path, flag)
    try:
        with _folder(config.to_dict(), {"model.safetensors": Path(path)}) as folder:
            return Qwen3Model.from_pretrained(folder, dtype=dtype).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise UserError(f"cannot load {flag} {path} as a Qwen3 text encoder: {_first_line(err)}") from err


def load_tokenizer(folder: Path):
    """The Qwen tokenizer from a folder holding tokenizer.json or vocab.json + merges.txt, with the
    package's Qwen3 ``tokenizer_config.json`` (ComfyUI's own config is Qwen2.5-VL's, whose chat
    template adds a system prompt that Z-Image never saw)."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    links = {name: folder / name for name in ("tokenizer.json", "vocab.json", "merges.txt") if (folder / name).is_file()}
    config = json.loads((CONFIGS / "tokenizer" / "tokenizer_config.json").read_text())
    if "tokenizer.json" in links:  # it carries its own special tokens, at its own ids
        config.pop("added_tokens_decoder", None)
    try:
        with _folder(config, links, "tokenizer_config.json") as tmp:
            return AutoTokenizer.from_pretrained(tmp)
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"cannot load the tokenizer in {folder}: {_first_line(err)}") from err


def load_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(_shipped("scheduler"))
