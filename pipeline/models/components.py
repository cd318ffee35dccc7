"""Where each component of a model is loaded from, for every kind of model a user can name.

- ``tiny-random``: built in code (``models/tiny.py``);
- a Hugging Face repo id (``org/name[@revision]``): its snapshot in the local cache, resolved once
  (``models/hub.py``), then loaded from that folder like a local one: nothing asks the network
  for a file the folder lacks;
- a local diffusers folder: ``from_pretrained`` on it and its ``tokenizer/``, ``text_encoder/``;
- a ComfyUI install or models folder: its single files (``models/comfy.py``), converted on load
  (``models/single_file.py``).

``--transformer``, ``--vae`` and ``--text-encoder`` replace one component of any of these.
"""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from .names import TINY, is_hub_id
from . import single_file


def _is_offline() -> bool:
    from .upscaler_weights import is_offline

    return is_offline()


def local_folder(model: str) -> Path | None:
    """The diffusers folder ``model`` loads from (a hub id's snapshot, downloaded when allowed); None otherwise."""
    if model == TINY:
        return None
    if is_hub_id(model):
        from . import hub

        return hub.resolve(model, offline=_is_offline()).folder
    path = Path(model)
    return path if (path / "model_index.json").is_file() else None


def comfy_files(model: str):
    from . import comfy

    if model == TINY or is_hub_id(model) or (Path(model) / "model_index.json").is_file():
        return None
    return comfy.find(Path(model))


def _load_error(model: str, err: Exception) -> UserError:
    text = str(err).splitlines()[0] if str(err) else err.__class__.__name__
    return UserError(f"cannot load model {model}: {text}")


def pipeline_without_text_encoder(model: str, dtype, *, transformer: str | None = None, vae: str | None = None,
                                  transformer_module=None):
    """The ``ZImagePipeline`` with ``text_encoder=None, tokenizer=None``, on the CPU.
    ``transformer_module``: a transformer already loaded (the int8 one), used as it is."""
    from diffusers import ZImagePipeline

    tiny = model == TINY
    parts = {"transformer": transformer_module} if transformer_module is not None else {}
    if transformer:
        parts["transformer"] = single_file.load_transformer(transformer, dtype, tiny=tiny)
    if vae:
        parts["vae"] = single_file.load_vae(vae, dtype)
    if tiny:
        from . import tiny as tiny_model

        with tiny_model._quiet_diffusers():
            parts.setdefault("transformer", tiny_model.build_tiny_transformer().to(dtype))
            parts.setdefault("vae", tiny_model.build_tiny_vae().to(dtype))
        parts["scheduler"] = tiny_model.build_tiny_scheduler()
        return ZImagePipeline(**parts, text_encoder=None, tokenizer=None)
    files = comfy_files(model)
    if files is not None:
        parts.setdefault("transformer", single_file.load_transformer(str(files.transformer), dtype, flag="transformer"))
        parts.setdefault("vae", single_file.load_vae(str(files.vae), dtype, flag="VAE"))
        return ZImagePipeline(**parts, scheduler=single_file.load_scheduler(), text_encoder=None, tokenizer=None)
    folder = local_folder(model)
    try:
        return ZImagePipeline.from_pretrained(str(folder), dtype=dtype, text_encoder=None, tokenizer=None, **parts)
    except (OSError, ValueError) as err:
        raise _load_error(model, err) from err


def text_encoder(model: str, dtype, *, text_encoder_file: str | None = None):
    """(tokenizer, text encoder) on the CPU; called only when a prompt's embedding is not stored."""
    encoder = single_file.load_text_encoder(text_encoder_file, dtype) if text_encoder_file else None
    if model == TINY:
        from . import tiny

        tokenizer = tiny.build_tiny_tokenizer()
        return tokenizer, encoder or tiny.cast_text_encoder(tiny.build_tiny_text_encoder(len(tokenizer)), dtype)
    files = comfy_files(model)
    if files is not None:
        tokenizer = single_file.load_tokenizer(files.tokenizer)
        return tokenizer, encoder or single_file.load_text_encoder(str(files.text_encoder), dtype, flag="text encoder")
    from transformers import AutoModel, AutoTokenizer

    folder = local_folder(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
        encoder = encoder or AutoModel.from_pretrained(str(folder / "text_encoder"), dtype=dtype)
    except (OSError, ValueError) as err:
        raise _load_error(model, err) from err
    return tokenizer, encoder.eval()
