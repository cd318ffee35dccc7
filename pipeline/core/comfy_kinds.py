"""What each kind of picture and each optional part of a record adds to its ComfyUI graph (registered in
``comfy_graph``'s registries; a new stage or knob adds its own function here or in its own module)."""
from __future__ import annotations

from .comfy_graph import (Chain, Ref, conditioning, enlarge, image_step, latent_for, model_patch,
                          parent_image_name, resize, sample, upscaler_file)
from .images import img2img_steps_run


def _txt2img(chain: Chain, *, width, height, steps, guidance, negative, model: Ref | None = None) -> Ref:
    record = chain.record
    positive, negative_ref = conditioning(chain, record["prompt"], negative, float(guidance or 0.0))
    latent = chain.graph.add("EmptySD3LatentImage", width=int(width), height=int(height), batch_size=1)
    return sample(chain, latent, seed=record.get("seed"), steps=int(steps), guidance=guidance,
                  positive=positive, negative=negative_ref, model=model)


@latent_for("explore")
def explore_latent(chain: Chain) -> Ref:
    r = chain.record
    return _txt2img(chain, width=r.get("width"), height=r.get("height"), steps=r.get("steps") or 8,
                    guidance=r.get("guidance"), negative=r.get("negative", ""))


def _img2img(chain: Chain, image: Ref) -> Ref:
    """The second pass: ``image`` encoded, then the last steps of the schedule at our strength."""
    r = chain.record
    steps = int(r.get("steps") or 8)
    ran = img2img_steps_run(steps, float(r.get("strength") or 0.0))
    latent = chain.graph.add("VAEEncode", pixels=image, vae=chain.vae)
    positive, negative = conditioning(chain, r["prompt"], r.get("negative", ""), float(r.get("guidance") or 0.0))
    return sample(chain, latent, seed=r.get("seed"), steps=steps, guidance=r.get("guidance"), positive=positive,
                  negative=negative, ran=ran)


@latent_for("refine")
def refine_latent(chain: Chain) -> Ref:
    """rerender: text-to-image at the new size; hires: the parent (the first pass itself when the parent is
    our own txt2img candidate, else loaded from a file) enlarged as refine enlarged it, then img2img."""
    r = chain.record
    if r.get("mode") != "hires":
        return explore_latent(chain)
    first = r.get("first_pass")
    if isinstance(first, dict):  # the candidate's own pass: without the refine's control, with its own if recorded
        model = chain.uncontrolled()
        if isinstance(first.get("control"), dict) and first["control"].get("map"):
            from .comfy_control import apply_control

            model = apply_control(chain, model, first["control"], first.get("control_name"))
        latent = _txt2img(chain, width=first["width"], height=first["height"], steps=first["steps"],
                          guidance=first.get("guidance", 0.0), negative=first.get("negative", ""), model=model)
        parent = chain.graph.add("VAEDecode", samples=latent, vae=chain.vae)
    else:
        parent = chain.graph.add("LoadImage", image=parent_image_name(r))
    image = enlarge(chain, parent, r.get("enlarge") or "lanczos", int(r["width"]), int(r["height"]), r.get("crop", ""))
    return _img2img(chain, image)


@latent_for("vary")
def vary_latent(chain: Chain) -> Ref:
    """The parent candidate loaded at its own size, then img2img with the variation's seed."""
    r = chain.record
    image = chain.graph.add("LoadImage", image=parent_image_name(r))
    return _img2img(chain, image)


@model_patch("loras")
def lora_loaders(chain: Chain, loras) -> Ref:
    """Each LoRA as a LoraLoaderModelOnly at its weight (ours patch the transformer only)."""
    model = chain.model
    for lora in loras if isinstance(loras, list) else ():
        if isinstance(lora, dict) and lora.get("name") and lora.get("weight", 1.0) != 0:
            model = chain.graph.add("LoraLoaderModelOnly", model=model, lora_name=f"{lora['name']}.safetensors",
                                    strength_model=float(lora.get("weight", 1.0)))
    return model


@image_step("upscale")
def upscale_step(chain: Chain, image: Ref, step) -> Ref:
    """The upscaler model, then Lanczos to the size we wrote when the scale is not the model's own; with
    ``detail``, that image re-drawn img2img at the detail strength (ComfyUI has no tiled img2img in its core:
    the whole image in one pass)."""
    if not isinstance(step, dict) or not step.get("upscaler"):
        return image
    model = chain.graph.add("UpscaleModelLoader", model_name=upscaler_file(step["upscaler"]))
    image = chain.graph.add("ImageUpscaleWithModel", upscale_model=model, image=image)
    if isinstance(step.get("width"), int) and isinstance(step.get("height"), int):
        image = resize(chain, image, step["width"], step["height"])
    detail = step.get("detail")
    if not isinstance(detail, dict):
        return image
    steps = int(detail.get("steps") or 8)
    ran = img2img_steps_run(steps, float(detail.get("strength") or 0.0))
    latent = chain.graph.add("VAEEncode", pixels=image, vae=chain.vae)
    guidance = float(detail.get("guidance") or 0.0)
    positive, negative = conditioning(chain, str(detail.get("prompt") or chain.record.get("prompt", "")), "", guidance)
    model = chain.uncontrolled()  # the pass runs with its own control (the Tile model over the whole map), if any
    control = detail.get("control")
    if isinstance(control, dict) and control.get("map") and control.get("strength"):
        from .comfy_control import apply_control

        model = apply_control(chain, model, control)
    latent = sample(chain, latent, seed=detail.get("seed"), steps=steps, guidance=guidance, positive=positive,
                    negative=negative, ran=ran, model=model)
    return chain.graph.add("VAEDecode", samples=latent, vae=chain.vae)


from . import comfy_control, comfy_inpaint  # noqa: F401  (register the control patch and the inpaint graph)
