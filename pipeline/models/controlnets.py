"""ControlNet files: where they are found, which kind each is (Union or Tile), their config, their identity.
Imports no torch: a file is judged by its safetensors header.

A ControlNet resolves like the transformer: a name or file in ``weights/controlnet/`` (under the weights folder)
or the folders in ``$PIPELINE_CONTROLNETS``, a ComfyUI install's ``models/controlnet/`` (or ``model_patches/``,
where ComfyUI's own Z-Image workflow puts alibaba-pai's files), a Hugging Face repo id in the local cache
(``alibaba-pai/Z-Image-Turbo-Fun-Controlnet-Union-2.1``: the file in its snapshot that fits the type), or a path
to a ``.safetensors`` file or a diffusers folder. The fingerprint is the file's identity (name, size, mtime), as
for single-file transformers; a hub file's is its repo, commit and name.

The files carry no config. diffusers reads it from a Hub repo (``hlky/…``), which is not reachable offline, so
it is built here from the header: the width (``control_all_x_embedder``'s rows) says Z-Image-Turbo (3840) or
tiny-random; the number of control layers says which model: 15 (Union/Tile 2.x), 3 (the lite 2.1 files),
6 (Union 1.0); a ``control_noise_refiner`` with ``before_proj`` weights says 2.1.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError
from .single_file import tensor_shapes

UNION_REPO = "alibaba-pai/Z-Image-Turbo-Fun-Controlnet-Union-2.1"
UNION_FILE = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-2602-8steps.safetensors"
TILE_FILE = "Z-Image-Turbo-Fun-Controlnet-Tile-2.1-2601-8steps.safetensors"
EMBEDDER = "control_all_x_embedder.2-1.weight"
REAL_DIM = 3840
# control layers in the file -> the transformer layers they feed (as diffusers' configs for these models say)
PLACES = {15: list(range(0, 30, 2)), 6: [0, 5, 10, 15, 20, 25], 3: [0, 14, 28]}
REAL_BASE = {"all_patch_size": [2], "all_f_patch_size": [1], "dim": REAL_DIM, "n_heads": 30, "n_kv_heads": 30,
             "norm_eps": 1e-5, "qk_norm": True, "n_refiner_layers": 2}


@dataclass(frozen=True)
class ControlNetFile:
    """A ControlNet found or named: a ``.safetensors`` file or a diffusers folder."""

    name: str  # the file name without .safetensors (or the folder's name)
    path: Path
    role: str  # "tile" or "union" (by its name: alibaba-pai's files say which)
    fingerprint: str
    size: int = 0

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()


# ---------------------------------------------------------------- folders


def controlnet_folders(model: str | None = None) -> list[Path]:
    """Where ControlNet names are looked up, in order (folders that do not exist are listed too)."""
    from .upscaler_weights import weights_dir

    folders = [weights_dir() / "controlnet"]
    for part in os.environ.get("PIPELINE_CONTROLNETS", "").split(os.pathsep):
        if part.strip():
            folders.append(Path(part.strip()).expanduser())
    if model and model != "tiny-random" and Path(model).expanduser().is_dir():
        from .comfy import models_folder

        root = models_folder(Path(model).expanduser())
        if root is not None:
            folders += [root / "controlnet", root / "model_patches"]
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def role_of(name: str) -> str:
    return "tile" if "tile" in name.lower() else "union"


def _is_diffusers_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def list_controlnets(model: str | None = None) -> list[ControlNetFile]:
    """The ``.safetensors`` files and diffusers folders in the known folders, first folder first, by name."""
    found: list[ControlNetFile] = []
    for folder in controlnet_folders(model):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix == ".safetensors" or path.is_dir() and _is_diffusers_folder(path):
                found.append(_entry(path))
    return found


def _entry(path: Path, fingerprint: str | None = None) -> ControlNetFile:
    path = Path(os.path.abspath(path))  # not resolved: a Hugging Face cache's file is a link to a nameless blob
    name = path.stem if path.is_file() else path.name
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return ControlNetFile(name=name, path=path, role=role_of(name), fingerprint=fingerprint or _fingerprint(path),
                          size=size)


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        digest.update(f"{file.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"controlnet:{path.stem if path.is_file() else path.name}:{digest.hexdigest()[:16]}"


# ---------------------------------------------------------------- resolving --control-model


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[\w.-]{1,96}(@[\w.-]{1,100})?$")


def _rank(entry: ControlNetFile) -> tuple:
    name = entry.name.lower()
    return ("lite" in name, "8step" not in name, name)


def _missing_tile(union: ControlNetFile | None) -> UserError:
    have = f"only the Union model {union.name} is here, and it " if union else "no Tile ControlNet is here; Union "
    return UserError(f"--control-type tile needs the Tile ControlNet: {have}cannot do tile; get {TILE_FILE} "
                     f"(Hugging Face {UNION_REPO}) into weights/controlnet/")


def _pick(found: list[ControlNetFile], control_type: str, where: str) -> ControlNetFile:
    role = "tile" if control_type == "tile" else "union"
    fitting = sorted((e for e in found if e.role == role), key=_rank)
    if fitting:
        return fitting[0]
    if role == "tile":
        raise _missing_tile(sorted(found, key=_rank)[0] if found else None)
    raise UserError(f"no ControlNet found in {where}: get {UNION_FILE} (Hugging Face {UNION_REPO}) into "
                    f"weights/controlnet/, or name one with --control-model")


def resolve(name: str | None, control_type: str, model: str | None = None) -> ControlNetFile:
    """The ControlNet to use for ``control_type``: ``name`` (a name, file, folder or hub repo id) or, when None,
    the best fitting one found. One sentence when none fits (a Union file asked to do tile names the Tile file)."""
    if not name:
        folders = controlnet_folders(model)
        return _pick(list_controlnets(model), control_type, " and ".join(str(f) for f in folders))
    path = Path(str(name)).expanduser()
    if path.exists():
        if path.is_dir() and not _is_diffusers_folder(path):
            raise UserError(f"--control-model {name} is a folder without a config.json: give a ControlNet "
                            ".safetensors file or a diffusers ControlNet folder")
        entry = _entry(path)
    elif _REPO_ID.match(str(name)) and not str(name).endswith(".safetensors"):
        entry = _from_hub(str(name), control_type)
    else:
        entry = _by_name(str(name), model)
    if control_type == "tile" and entry.role != "tile":
        raise _missing_tile(entry)
    return entry


def _by_name(name: str, model: str | None) -> ControlNetFile:
    found = list_controlnets(model)
    wanted = name[:-len(".safetensors")] if name.endswith(".safetensors") else name
    for entry in found:
        if entry.name == wanted or entry.name.lower() == wanted.lower():
            return entry
    import difflib

    close = difflib.get_close_matches(wanted, [e.name for e in found], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    where = " and ".join(str(f) for f in controlnet_folders(model))
    raise UserError(f"no ControlNet named {name!r} in {where}{hint}")


def _from_hub(repo_id: str, control_type: str) -> ControlNetFile:
    from .hub import find_snapshot, hub_cache_dir, split_revision

    snapshot = find_snapshot(repo_id)
    if snapshot is None:
        repo = split_revision(repo_id)[0]
        raise UserError(f"ControlNet {repo_id} is not in the local Hugging Face cache ({hub_cache_dir()}): "
                        f"`hf download {repo} {TILE_FILE if control_type == 'tile' else UNION_FILE}` first")
    if _is_diffusers_folder(snapshot.folder):
        return _entry(snapshot.folder, f"hub:{snapshot.repo}@{snapshot.commit}")
    files = [p for p in sorted(snapshot.folder.rglob("*.safetensors")) if p.exists()]
    found = [_entry(p, f"hub:{snapshot.repo}@{snapshot.commit}/{p.relative_to(snapshot.folder).as_posix()}")
             for p in files]
    return _pick(found, control_type, f"the cached snapshot of {snapshot.repo} ({snapshot.folder})")


# ---------------------------------------------------------------- what a file is


def _foreign(shapes: dict[str, list[int]]) -> str | None:
    """What a file that is not a Z-Image ControlNet is, by its keys (None: cannot tell)."""
    keys = list(shapes)
    if any("lora_A" in k or "lora_down" in k or "lora_up" in k or "lora_B" in k for k in keys):
        return "a LoRA (give it to --lora)"
    if any(k.startswith(("controlnet_x_embedder", "controlnet_single_blocks")) or "double_blocks." in k
           or k.startswith("single_transformer_blocks") for k in keys):
        return "a ControlNet made for Flux"
    if "pos_embed_input.proj.weight" in shapes:
        return "a ControlNet made for Stable Diffusion 3"
    cross = [v for k, v in shapes.items() if k.endswith("attn2.to_k.weight") and len(v) == 2]
    unet = any("input_hint_block" in k or k.startswith("controlnet_cond_embedding") for k in keys)
    if unet or cross:
        sdxl = any(k.startswith(("add_embedding.", "label_emb.", "control_model.label_emb.")) for k in keys)
        width = max((v[1] for v in cross), default=0)
        if sdxl or width == 2048:
            return "a ControlNet made for SDXL"
        if width == 1024:
            return "a ControlNet made for SD 2.x"
        return "a ControlNet made for SD 1.5" if width in (0, 768) else "a ControlNet for a UNet model"
    if any(k.endswith(("x_embedder.weight", "all_x_embedder.2-1.weight")) for k in keys):
        return "a Z-Image transformer (give it to --transformer)"
    return None


def check_file(path: Path, flag: str = "--control-model") -> dict[str, list[int]]:
    """The header of a Z-Image ControlNet file; one sentence for anything else (saying what it is where it can)."""
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin", ".pkl"):
        raise UserError(f"{flag} {path} is a pickle file, which is not loaded here (it can run code): "
                        "use the .safetensors file")
    shapes = tensor_shapes(path)
    if EMBEDDER in shapes:
        return shapes
    what = _foreign(shapes)
    if what:
        raise UserError(f"{flag} {path.name} is {what}, not a Z-Image-Turbo ControlNet")
    raise UserError(f"{flag} {path.name} is not a Z-Image ControlNet (it has no {EMBEDDER})")


def check_folder(path: Path, flag: str = "--control-model") -> dict:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{flag} {path}: config.json cannot be read ({err.__class__.__name__})") from None
    kind = config.get("_class_name") if isinstance(config, dict) else None
    if kind != "ZImageControlNetModel":
        family = ("Flux" if "Flux" in str(kind) else "SD 3" if "SD3" in str(kind) else
                  "SDXL or SD 1.5" if kind == "ControlNetModel" else None)
        what = f"a ControlNet made for {family}" if family else f"a {kind or 'model without a _class_name'}"
        raise UserError(f"{flag} {path.name} is {what}, not a Z-Image-Turbo ControlNet")
    return config


def config_for(entry: ControlNetFile) -> dict:
    """The ``ZImageControlNetModel`` config of a file (built from its header) or a folder (its own)."""
    if entry.is_folder:
        return {k: v for k, v in check_folder(entry.path).items() if not k.startswith("_")}
    shapes = check_file(entry.path)
    dim, embed_in = shapes[EMBEDDER]
    layers = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("control_layers."))
    refiner = {int(k.split(".")[1]) for k in shapes if k.startswith("control_noise_refiner.")}
    if dim == REAL_DIM:
        if layers not in PLACES:
            raise UserError(f"--control-model {entry.name} has {layers} control layers, which is none of the known "
                            f"Z-Image ControlNets' ({', '.join(str(n) for n in sorted(PLACES))})")
        config = dict(REAL_BASE, control_layers_places=PLACES[layers])
    else:
        from .tiny_controlnet import TINY_CONTROLNET_CONFIG

        if dim != TINY_CONTROLNET_CONFIG["dim"]:
            raise UserError(f"--control-model {entry.name} has width {dim}, which is neither Z-Image-Turbo's "
                            f"({REAL_DIM}) nor tiny-random's")
        config = dict(TINY_CONTROLNET_CONFIG, control_layers_places=list(range(layers)))
    config["control_in_dim"] = embed_in // 4
    if layers == 6:  # Union 1.0: a plain refiner, no hints into the noise refiner
        config.update(add_control_noise_refiner=None, control_refiner_layers_places=None)
    else:
        twenty_one = "control_noise_refiner.0.before_proj.weight" in shapes
        config["add_control_noise_refiner"] = "control_noise_refiner" if twenty_one else "control_layers"
        config["n_refiner_layers"] = len(refiner) if refiner else config["n_refiner_layers"]
        config["control_refiner_layers_places"] = list(range(config["n_refiner_layers"]))
    return config


def width_of(entry: ControlNetFile) -> int:
    return int(config_for(entry)["dim"])


def describe(entry: ControlNetFile) -> str:
    """What ``pipeline weights`` says about one: its kind and size."""
    try:
        config = config_for(entry)
    except UserError as err:
        return f"not usable: {err}"
    layers = len(config["control_layers_places"])
    family = "tiny-random" if config["dim"] != REAL_DIM else ("lite" if layers == 3 else
                                                             "1.0" if layers == 6 else "2.x")
    return f"{entry.role} ({family}, {layers} control layers)"
