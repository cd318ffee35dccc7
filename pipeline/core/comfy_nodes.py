"""The ComfyUI node classes our graphs use, as ComfyUI declares them: each input in ComfyUI's order with
its type (a link type such as ``MODEL``, or a widget: ``INT``, ``FLOAT``, ``STRING``, ``COMBO``) and each
output's type. The workflow (UI) graph needs them: a node lists its link inputs and its outputs, and its
``widgets_values`` in widget order (KSampler's seed is followed by the UI-only ``control_after_generate``).

Written from ComfyUI's ``nodes.py`` and ``comfy_extras`` (``nodes_sd3.py``, ``nodes_model_advanced.py``,
``nodes_upscale_model.py``, ``nodes_images.py``, ``nodes_mask.py``, ``nodes_post_processing.py``,
``nodes_model_patch.py``) and checked in tests/test_comfy_graph.py against the
definitions in tests/data/comfyui_nodes.json. Imports nothing heavy.
"""
from __future__ import annotations

LINK_TYPES = {"MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "MASK", "UPSCALE_MODEL",
              "CONTROL_NET", "MODEL_PATCH"}

# class: (inputs [(name, type)], outputs [(name, type)])
NODES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "UNETLoader": ([("unet_name", "COMBO"), ("weight_dtype", "COMBO")], [("MODEL", "MODEL")]),
    "CLIPLoader": ([("clip_name", "COMBO"), ("type", "COMBO"), ("device", "COMBO")], [("CLIP", "CLIP")]),
    "VAELoader": ([("vae_name", "COMBO")], [("VAE", "VAE")]),
    "LoraLoaderModelOnly": ([("model", "MODEL"), ("lora_name", "COMBO"), ("strength_model", "FLOAT")],
                            [("MODEL", "MODEL")]),
    "ModelSamplingAuraFlow": ([("model", "MODEL"), ("shift", "FLOAT")], [("MODEL", "MODEL")]),
    "CLIPTextEncode": ([("text", "STRING"), ("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "ConditioningZeroOut": ([("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "EmptySD3LatentImage": ([("width", "INT"), ("height", "INT"), ("batch_size", "INT")], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("seed", "INT"), ("steps", "INT"), ("cfg", "FLOAT"), ("sampler_name", "COMBO"),
                  ("scheduler", "COMBO"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT"), ("denoise", "FLOAT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")]),
    "LoadImage": ([("image", "COMBO")], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "SaveImage": ([("images", "IMAGE"), ("filename_prefix", "STRING")], []),
    "ImageScale": ([("image", "IMAGE"), ("upscale_method", "COMBO"), ("width", "INT"), ("height", "INT"),
                    ("crop", "COMBO")], [("IMAGE", "IMAGE")]),
    "ImageCrop": ([("image", "IMAGE"), ("width", "INT"), ("height", "INT"), ("x", "INT"), ("y", "INT")],
                  [("IMAGE", "IMAGE")]),
    "UpscaleModelLoader": ([("model_name", "COMBO")], [("UPSCALE_MODEL", "UPSCALE_MODEL")]),
    "ImageUpscaleWithModel": ([("upscale_model", "UPSCALE_MODEL"), ("image", "IMAGE")], [("IMAGE", "IMAGE")]),
    # inpaint (comfy_inpaint)
    "LoadImageMask": ([("image", "COMBO"), ("channel", "COMBO")], [("MASK", "MASK")]),
    "GrowMask": ([("mask", "MASK"), ("expand", "INT"), ("tapered_corners", "BOOLEAN")], [("MASK", "MASK")]),
    "MaskToImage": ([("mask", "MASK")], [("IMAGE", "IMAGE")]),
    "ImageBlur": ([("image", "IMAGE"), ("blur_radius", "INT"), ("sigma", "FLOAT")], [("IMAGE", "IMAGE")]),
    "ImageToMask": ([("image", "IMAGE"), ("channel", "COMBO")], [("MASK", "MASK")]),
    "CropMask": ([("mask", "MASK"), ("x", "INT"), ("y", "INT"), ("width", "INT"), ("height", "INT")],
                 [("MASK", "MASK")]),
    "InpaintModelConditioning": ([("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("vae", "VAE"),
                                  ("pixels", "IMAGE"), ("mask", "MASK"), ("noise_mask", "BOOLEAN")],
                                 [("positive", "CONDITIONING"), ("negative", "CONDITIONING"), ("latent", "LATENT")]),
    "ImageCompositeMasked": ([("destination", "IMAGE"), ("source", "IMAGE"), ("x", "INT"), ("y", "INT"),
                              ("resize_source", "BOOLEAN"), ("mask", "MASK")], [("IMAGE", "IMAGE")]),
    "ImagePadForOutpaint": ([("image", "IMAGE"), ("left", "INT"), ("top", "INT"), ("right", "INT"), ("bottom", "INT"),
                             ("feathering", "INT")], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "EmptyImage": ([("width", "INT"), ("height", "INT"), ("batch_size", "INT"), ("color", "INT")],
                   [("IMAGE", "IMAGE")]),
    # ControlNet (comfy_control): the Z-Image Fun ControlNet is a model patch
    "ModelPatchLoader": ([("name", "COMBO")], [("MODEL_PATCH", "MODEL_PATCH")]),
    "ZImageFunControlnet": ([("model", "MODEL"), ("model_patch", "MODEL_PATCH"), ("vae", "VAE"), ("strength", "FLOAT"),
                             ("image", "IMAGE"), ("inpaint_image", "IMAGE"), ("mask", "MASK")], [("MODEL", "MODEL")]),
}

# widgets the frontend adds after an input (not sent to the server): (class, input) -> default value
UI_WIDGETS = {("KSampler", "seed"): "fixed", ("LoadImage", "image"): "image", ("LoadImageMask", "channel"): "image"}


def link_inputs(class_type: str) -> list[tuple[str, str]]:
    return [(name, kind) for name, kind in NODES[class_type][0] if kind in LINK_TYPES]


def widget_inputs(class_type: str) -> list[str]:
    return [name for name, kind in NODES[class_type][0] if kind not in LINK_TYPES]


def outputs(class_type: str) -> list[tuple[str, str]]:
    return NODES[class_type][1]
