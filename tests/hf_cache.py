"""Test fixtures holding the tiny-random weights in the layouts users' tools leave on disk.

- ``make_hub_cache``: a Hugging Face cache exactly as ``hf download Tongyi-MAI/Z-Image-Turbo`` leaves it:
  ``models--Tongyi-MAI--Z-Image-Turbo/{blobs/<sha256>, refs/main, snapshots/<commit>/...}`` with relative
  symlinks into ``blobs/``, the real ``model_index.json`` classes, the real scheduler config, the real
  tokenizer's file names and class (``Qwen2Tokenizer``: tokenizer.json, tokenizer_config.json,
  vocab.json, merges.txt), and ``text_encoder/`` and ``transformer/`` sharded with index files.
- ``make_comfy_install``: a ComfyUI install with the tiny weights saved under ComfyUI's key names
  (``models/diffusion_models/z_image_turbo_bf16.safetensors``, ``models/text_encoders/qwen_3_4b.safetensors``,
  ``models/vae/ae.safetensors``) and the tokenizer where ComfyUI ships it
  (``comfy/text_encoders/qwen25_tokenizer/``).

Weights are saved in float32: loading them in any dtype rounds exactly as tiny-random does.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

REPO = "Tongyi-MAI/Z-Image-Turbo"
PACKAGE_CONFIGS = Path(__file__).resolve().parents[1] / "pipeline" / "models" / "zimage_configs"


def _tokenizer_files(folder: Path) -> None:
    """The tiny tokenizer under the real repo's file names: tokenizer.json, vocab.json, merges.txt and a
    tokenizer_config.json naming ``Qwen2Tokenizer`` (its special tokens live in tokenizer.json)."""
    from pipeline.models import tiny

    folder.mkdir(parents=True, exist_ok=True)
    text = tiny._tokenizer_json()
    (folder / "tokenizer.json").write_text(text)
    model = json.loads(text)["model"]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": tiny.TOKENIZER_MAX_LENGTH,
              "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>", "bos_token": None, "unk_token": None,
              "errors": "replace", "add_prefix_space": False, "clean_up_tokenization_spaces": False,
              "split_special_tokens": False, "chat_template": tiny.CHAT_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def save_tiny_diffusers(folder: Path) -> Path:
    """tiny-random saved as a diffusers folder laid out like Z-Image-Turbo's repo (sharded, real configs)."""
    import torch

    from pipeline.models import tiny

    components = tiny.build_tiny_components(torch.float32)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PACKAGE_CONFIGS / "model_index.json", folder / "model_index.json")
    (folder / "scheduler").mkdir()
    shutil.copy(PACKAGE_CONFIGS / "scheduler" / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json")
    components["transformer"].save_pretrained(folder / "transformer", max_shard_size="1MB")
    components["vae"].save_pretrained(folder / "vae")
    components["text_encoder"].save_pretrained(folder / "text_encoder", max_shard_size="64KB")
    _tokenizer_files(folder / "tokenizer")
    return folder


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(cache: Path, source: Path, commit: str, repo: str = REPO, ref: str | None = "main") -> Path:
    """Lay ``source`` out as snapshot ``commit`` of ``repo`` in the hub cache ``cache`` (as hf download does)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    blobs, snapshot = root / "blobs", root / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        data = path.read_bytes()
        # LFS files (weights) are stored under their sha256, small git files under their git blob id
        blob = hashlib.sha256(data).hexdigest() if path.suffix == ".safetensors" else _git_blob_id(data)
        if not (blobs / blob).exists():
            (blobs / blob).write_bytes(data)
        link = snapshot / path.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blobs / blob, link.parent), link)
    if ref:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snapshot


def make_hub_cache(hf_home: Path, commit: str = "a" * 40, source: Path | None = None) -> Path:
    """``$HF_HOME`` holding Z-Image-Turbo (tiny weights) at ``commit``; returns the snapshot folder."""
    source = source or save_tiny_diffusers(hf_home.parent / "tiny-diffusers-source")
    return add_snapshot(hf_home / "hub", source, commit)


# ---------------------------------------------------------------- ComfyUI


def _comfy_transformer_state(transformer) -> dict:
    """diffusers' names -> ComfyUI's (NextDiT): the inverse of diffusers'
    ``convert_z_image_transformer_checkpoint_to_diffusers``, written out from ComfyUI's key names."""
    import torch

    state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    out = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q.weight" in key:
            base = key.replace(".attention.to_q.weight", "")
            out[f"{base}.attention.qkv.weight"] = torch.cat(
                [value, state[f"{base}.attention.to_k.weight"], state[f"{base}.attention.to_v.weight"]], dim=0)
            continue
        new = (key.replace("all_final_layer.2-1.", "final_layer.").replace("all_x_embedder.2-1.", "x_embedder.")
               .replace(".attention.to_out.0.", ".attention.out.").replace(".attention.norm_q.", ".attention.q_norm.")
               .replace(".attention.norm_k.", ".attention.k_norm."))
        out[new] = value
    return out


_RESNET = {"conv_shortcut": "nin_shortcut"}


def _ldm_vae_key(key: str, up_blocks: int) -> str:
    """diffusers' AutoencoderKL names -> the original (LDM) Flux ``ae.safetensors`` names."""
    parts = key.split(".")
    coder, rest = parts[0], parts[1:]
    if rest[0] == "conv_norm_out":
        return ".".join([coder, "norm_out"] + rest[1:])
    if rest[0] in ("down_blocks", "up_blocks"):
        index = int(rest[1]) if rest[0] == "down_blocks" else up_blocks - 1 - int(rest[1])
        level = ["down" if rest[0] == "down_blocks" else "up", str(index)]
        if rest[2] == "resnets":
            return ".".join([coder, *level, "block", rest[3], _RESNET.get(rest[4], rest[4])] + rest[5:])
        if rest[2] in ("downsamplers", "upsamplers"):
            return ".".join([coder, *level, "downsample" if rest[2] == "downsamplers" else "upsample"] + rest[4:])
    if rest[0] == "mid_block" and rest[1] == "resnets":
        return ".".join([coder, "mid", f"block_{int(rest[2]) + 1}", _RESNET.get(rest[3], rest[3])] + rest[4:])
    return key


def save_comfy_files(models: Path) -> dict[str, Path]:
    """tiny-random's three weights files under ComfyUI's names and key layouts."""
    import torch
    from safetensors.torch import save_file

    from pipeline.models import tiny

    components = tiny.build_tiny_components(torch.float32)
    files = {"transformer": models / "diffusion_models" / "z_image_turbo_bf16.safetensors",
             "text_encoder": models / "text_encoders" / "qwen_3_4b.safetensors",
             "vae": models / "vae" / "ae.safetensors"}
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    save_file(_comfy_transformer_state(components["transformer"]), str(files["transformer"]))
    text = {f"model.{k}": v.contiguous() for k, v in components["text_encoder"].state_dict().items()}
    save_file(text, str(files["text_encoder"]))
    vae = components["vae"]
    up = len(vae.config.up_block_types)
    save_file({_ldm_vae_key(k, up): v.contiguous() for k, v in vae.state_dict().items()}, str(files["vae"]))
    return files


def make_comfy_install(root: Path) -> Path:
    """A ComfyUI install (``models/`` and the tokenizer ComfyUI ships in ``comfy/text_encoders``)."""
    save_comfy_files(root / "models")
    _tokenizer_files(root / "comfy" / "text_encoders" / "qwen25_tokenizer")
    (root / "models" / "checkpoints").mkdir(parents=True, exist_ok=True)
    return root
