"""Z-Image-Turbo as ComfyUI users have it: single files in a ComfyUI install's ``models/`` folder.

Found here (names as ComfyUI's own Z-Image workflow downloads them; older folder names too)::

    models/diffusion_models/ (or unet/)      *z_image*.safetensors, an fp8 variant, or a .gguf
    models/text_encoders/ (or clip/)         qwen_3_4b*.safetensors
    models/vae/                              ae.safetensors (the Flux VAE)
    comfy/text_encoders/qwen25_tokenizer/    the Qwen tokenizer ComfyUI ships with its code

Finding imports nothing heavy; the files are converted to diffusers' layout on load
(``models/single_file.py``). The fingerprint is the files' identities (name, size, mtime), as
for a local diffusers folder.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

TRANSFORMER_FOLDERS = ("diffusion_models", "unet")
TEXT_ENCODER_FOLDERS = ("text_encoders", "clip")
VAE_FOLDERS = ("vae",)
TOKENIZER_FOLDER = Path("comfy", "text_encoders", "qwen25_tokenizer")
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


@dataclass(frozen=True)
class ComfyFiles:
    root: Path  # the models/ folder
    transformer: Path
    text_encoder: Path
    vae: Path
    tokenizer: Path  # a folder holding tokenizer.json, or vocab.json + merges.txt


def models_folder(path: Path) -> Path | None:
    """``path`` itself or its ``models/`` child, whichever holds ComfyUI's model folders."""
    for candidate in (Path(path) / "models", Path(path)):
        if any((candidate / name).is_dir() for name in TRANSFORMER_FOLDERS + TEXT_ENCODER_FOLDERS + VAE_FOLDERS):
            return candidate
    return None


def _rank_transformer(path: Path) -> tuple:
    name = path.name.lower()
    return (path.suffix.lower() == ".gguf", "fp8" in name, "turbo" not in name, name)


def _find(root: Path, folders: tuple[str, ...], match, rank, what: str) -> Path:
    found = [p for folder in folders if (root / folder).is_dir() for p in (root / folder).rglob("*")
             if p.is_file() and match(p.name.lower())]
    if not found:
        looked = " and ".join(str(root / f) for f in folders)
        raise UserError(f"no {what} found in {looked}")
    return sorted(found, key=rank)[0]


def is_transformer_name(name: str) -> bool:
    return any(tag in name for tag in ("z_image", "z-image", "zimage")) and name.endswith((".safetensors", ".gguf"))


def is_text_encoder_name(name: str) -> bool:
    return name.startswith(("qwen_3_4b", "qwen3_4b", "qwen3-4b")) and name.endswith(".safetensors")


def is_vae_name(name: str) -> bool:
    return name == "ae.safetensors" or (name.endswith(".safetensors") and "z_image" in name and "vae" in name)


def find_tokenizer(root: Path) -> Path:
    """The Qwen tokenizer ComfyUI ships in its code (``comfy/text_encoders/qwen25_tokenizer``)."""
    looked = []
    for base in (root.parent, root):
        folder = base / TOKENIZER_FOLDER
        looked.append(str(folder))
        if any(all((folder / f).is_file() for f in files) for files in TOKENIZER_FILES):
            return folder
    raise UserError(f"no Qwen tokenizer (tokenizer.json, or vocab.json and merges.txt) found in {' or '.join(looked)}: "
                    f"give --model the ComfyUI install folder rather than a copy of its models/ folder")


def find(path: Path) -> ComfyFiles:
    """The four pieces in a ComfyUI install (or its models/ folder); one sentence names a missing one."""
    root = models_folder(path)
    if root is None:
        raise UserError(f"{path} is not a ComfyUI install or models folder (it has no diffusion_models/ or unet/ folder)")
    root = root.resolve()
    return ComfyFiles(
        root=root,
        transformer=_find(root, TRANSFORMER_FOLDERS, is_transformer_name, _rank_transformer,
                          "Z-Image transformer (*z_image*.safetensors or .gguf)"),
        text_encoder=_find(root, TEXT_ENCODER_FOLDERS, is_text_encoder_name, lambda p: (len(p.name), p.name),
                           "Qwen3-4B text encoder (qwen_3_4b*.safetensors)"),
        vae=_find(root, VAE_FOLDERS, is_vae_name, lambda p: (p.name != "ae.safetensors", p.name),
                  "VAE (ae.safetensors)"),
        tokenizer=find_tokenizer(root),
    )


def file_identity(path: Path) -> str:
    """A file's identity as models.py's local-folder fingerprints take it: name, size, mtime."""
    stat = Path(path).stat()
    return f"{Path(path).name}\0{stat.st_size}\0{stat.st_mtime_ns}"


def fingerprint(files: ComfyFiles) -> str:
    digest = hashlib.sha256()
    tokenizer_files = sorted(p for p in files.tokenizer.iterdir() if p.is_file())
    for role, path in [("transformer", files.transformer), ("text_encoder", files.text_encoder), ("vae", files.vae)] + \
            [("tokenizer", p) for p in tokenizer_files]:
        digest.update(f"{role}\0{file_identity(path)}\n".encode())
    return f"comfy:{files.transformer.stem}:{digest.hexdigest()[:16]}"
