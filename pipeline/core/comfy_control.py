"""A picture made with ``--control`` as ComfyUI's core runs the Z-Image Fun ControlNet (Union / Tile 2.1).

ComfyUI does not load these files as a ControlNet: they are a *model patch* (comfy_extras/nodes_model_patch.py).
``ModelPatchLoader`` reads the file from ``models/model_patches/`` (it knows alibaba-pai's Z-Image Fun files by
their ``control_all_x_embedder`` keys) and ``ZImageFunControlnet`` patches the MODEL with it, the VAE that encodes
the control image, the image and a strength:

    ModelPatchLoader(NAME.safetensors)   LoadImage(the map kept in the run's control/ folder)
    ZImageFunControlnet(model, model_patch, vae, strength, image) → MODEL → ModelSamplingAuraFlow → KSampler

The map is loaded as we kept it (already the canny edges, the grey picture or the tile source, fitted to the
picture's size), so no preprocessor node is needed. ``ZImageFunControlnet`` has no start/end: a control over
part of the steps (``--control-start``/``--control-end``) applies over all of them there. Imports nothing heavy.
"""
from __future__ import annotations

from .comfy_graph import Chain, Ref, model_patch

MAP_FOLDER = "control"  # stages/control.py: the run keeps each map as control/<digest[:16]>.png


def control_files(control: dict, control_name=None) -> tuple[str, str]:
    """(ControlNet file, map file) as ModelPatchLoader and LoadImage name them."""
    name = str(control_name or "") or _model_name(str(control.get("model") or ""))
    model = name if name.endswith(".safetensors") else f"{name}.safetensors"
    return model, f"{str(control.get('map') or '')[:16]}.png"


def _model_name(fingerprint: str) -> str:
    """``controlnet:NAME:digest`` or ``hub:repo@commit/NAME.safetensors`` → NAME (as core.control names it)."""
    if fingerprint.startswith("controlnet:"):
        return fingerprint.split(":")[1]
    return fingerprint.rsplit("/", 1)[-1] or "controlnet"


def apply_control(chain: Chain, model: Ref, control: dict, control_name=None) -> Ref:
    """``model`` patched with the control ``control`` (a record's ``control``: map, type, strength, model)."""
    patch_file, map_file = control_files(control, control_name)
    patch = chain.graph.add("ModelPatchLoader", name=patch_file)
    image = chain.graph.add("LoadImage", image=map_file)
    return chain.graph.add("ZImageFunControlnet", model=model, model_patch=patch, vae=chain.vae,
                           strength=float(control.get("strength", 1.0)), image=image)


@model_patch("control")
def control_patch(chain: Chain, control) -> Ref:
    if not isinstance(control, dict) or not control.get("map") or not control.get("strength"):
        return chain.model
    chain.before_control = chain.model
    return apply_control(chain, chain.model, control, chain.record.get("control_name"))
