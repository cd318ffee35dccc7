"""What a config names, resolved before anything runs: LoRAs, upscaler weights, the model and its
single files. Each is a *resolver*, a function ``(config) -> [(key path, sentence)]``, in one list:
a new kind of file a config can name (a ControlNet, a mask) adds its own with ``@resolver``, and
its problems are listed with the others, each with its ``file:line: key:`` prefix.

    problems = resolve_problems(config)     # [] when everything the config names is there

Reads the file system and the local Hugging Face cache only: downloads nothing, loads no model,
imports no torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from ..core.errors import UserError

Problem = tuple[tuple, str]  # (key path, sentence)
Resolver = Callable[[object], Iterable[Problem]]
RESOLVERS: list[Resolver] = []


def resolver(func: Resolver) -> Resolver:
    """Add ``func`` to the resolvers every config check runs (in the order they are added)."""
    RESOLVERS.append(func)
    return func


def resolve_problems(config) -> list[Problem]:
    """Every resolver's problems, in the resolvers' order."""
    problems: list[Problem] = []
    for func in RESOLVERS:
        problems.extend(func(config))
    return problems


def _sentence(call, *args, **kwargs) -> str | None:
    try:
        call(*args, **kwargs)
    except UserError as err:
        return str(err)
    return None


# ---------------------------------------------------------------- the built-in resolvers


LORA_SECTIONS = ((), ("explore",), ("vary",), ("refine",))  # the top-level loras, then each stage's


@resolver
def loras(config) -> list[Problem]:
    """Each LoRA a config names, top-level and per stage, is a file found now."""
    from ..models.loras import check_file, find_lora

    problems = []
    for section in LORA_SECTIONS:
        owner = config
        for part in section:
            owner = getattr(owner, part, None)
        for index, (name, _weight) in enumerate(getattr(owner, "loras", None) or ()):
            def check(name=name):
                check_file(find_lora(name, config.model))
            sentence = _sentence(check)
            if sentence:
                problems.append(((*section, "loras", index), sentence))
    return problems


@resolver
def upscaler_weights(config) -> list[Problem]:
    """The Real-ESRGAN weights of upscale and of refine's hires mode can be found, converted or downloaded."""
    from ..models.upscaler_weights import check_weights

    problems = []
    for section in ("refine", "upscale"):
        part = getattr(config, section, None)
        name = getattr(part, "upscaler", None)
        if part is None or name in (None, "lanczos"):
            continue
        sentence = _sentence(check_weights, name)
        if sentence:
            problems.append(((section, "upscaler"), sentence))
    return problems


@resolver
def model(config) -> list[Problem]:
    """The Hugging Face model the config names is in the local cache, or can be downloaded (not offline)."""
    from ..models import hub
    from ..models.upscaler_weights import is_offline
    from ..models.names import is_hub_id

    name = config.model  # the default model is not named by the config: its load says what is missing
    if not name or not is_hub_id(name) or not is_offline() or hub.find_snapshot(name) is not None:
        return []
    why = "downloads are off: PIPELINE_OFFLINE or HF_HUB_OFFLINE is set"
    return [(("model",), str(hub.not_cached_error(name, why, config=True)))]


@resolver
def model_files(config) -> list[Problem]:
    """The single files a config names instead of the model's (transformer, text_encoder, vae) exist."""
    problems = []
    for key in ("transformer", "text_encoder", "vae"):
        value = getattr(config, key, None)
        if value and not Path(value).expanduser().is_file():
            problems.append(((key,), f"{value} is not a file" if Path(value).expanduser().exists()
                             else f"file {value} does not exist"))
    return problems


@resolver
def out_folder(config) -> list[Problem]:
    """``out`` (or $PIPELINE_OUT) is a folder, or does not exist yet."""
    out = config.out_dir()
    if out.exists() and not out.is_dir():
        return [(("out",), f"{out} is a file: give a folder (it is created if missing)")]
    return []
