"""An inpaint picture (a drawn mask, an outpaint, or the face pass) as ComfyUI's core nodes make it.

    LoadImage(parent) [ImagePadForOutpaint]     LoadImageMask(the mask kept beside the picture, red)
                                                GrowMask(blur): what the model re-draws (our weight > 0)
                                                GrowMask(blur/2) → ImageBlur → the feathered paste weight
    for each region our pass rendered (record["renders"]: its box and the size it ran at):
        ImageCrop(box) → ImageScale(lanczos, size)    CropMask(box)
        InpaintModelConditioning(noise_mask on) → KSampler(seed + i, the last steps at our strength)
        VAEDecode → ImageScale(box) → ImageCompositeMasked(into the picture at the box, the weight's crop)

``InpaintModelConditioning`` and not ``VAEEncodeForInpaint``: ours is img2img inside the mask (diffusers'
``ZImageInpaintPipeline`` noises the parent's own latent at the strength and keeps the parent's latent
outside the mask each step). InpaintModelConditioning's latent is the parent's pixels encoded with the mask as
its noise mask, which KSampler treats the same way; VAEEncodeForInpaint greys the masked pixels out before
encoding (made for inpaint models at denoise 1), so at 0.75 it would start from grey, not from the picture.
Its concat latent and mask are read only by inpaint models (Z-Image-Turbo has no concat channels).

What ComfyUI's core cannot say exactly: our feather is a smoothstep over the distance to the mask, the graph's
a Gaussian of the mask grown by half the band (same width, 1 on the mask, 0 beyond the band); the support is
grown with a 3×3 kernel per pixel (a diamond), ours by Euclidean distance; an outpaint's new border starts
grey (ImagePadForOutpaint) where ours repeats the edge pixels. Imports nothing heavy.
"""
from __future__ import annotations

from .comfy_graph import Chain, Ref, conditioning, image_for, sample
from .images import img2img_steps_run

BLUR_RADIUS_MAX, SIGMA_MAX = 31, 10.0  # ComfyUI's ImageBlur: blur_radius 1..31, sigma 0.1..10
OUTPAINT_STEP = 8  # ImagePadForOutpaint's sides are multiples of 8
GREY = 0x7F7F7F  # the colour of a new border when it is not (EmptyImage, then the picture composited)


def inpaint_files(record: dict) -> tuple[str, str]:
    """(parent, mask): the file names LoadImage and LoadImageMask read (put both in ComfyUI's input folder):
    the names our run gives them (``seed-42.png``, ``seed-42i1-mask.png``), or a fixed file's stem."""
    ident = str(record.get("inpaint") or "fix")
    parent = str(record.get("parent_name") or "parent")
    if record.get("parent_stage") == "file":
        return f"{parent}.png", f"{ident}-mask.png"
    return f"seed-{parent}.png", f"seed-{ident}-mask.png"


def extend_sides(text) -> dict[str, int]:
    """``left:256,bottom:128`` (the record's canonical ``extend``) as {side: px}."""
    sides = {}
    for item in str(text or "").split(","):
        side, _, px = item.partition(":")
        if side.strip() in ("left", "top", "right", "bottom") and px.strip().isdigit():
            sides[side.strip()] = int(px)
    return sides


def _canvas(chain: Chain, parent: Ref, record: dict) -> Ref:
    sides = extend_sides(record.get("extend"))
    if not sides:
        return parent
    pad = {side: sides.get(side, 0) for side in ("left", "top", "right", "bottom")}
    if all(px % OUTPAINT_STEP == 0 for px in pad.values()):
        return chain.graph.add("ImagePadForOutpaint", image=parent, **pad, feathering=0)
    empty = chain.graph.add("EmptyImage", width=int(record["width"]), height=int(record["height"]), batch_size=1,
                            color=GREY)
    return chain.graph.add("ImageCompositeMasked", destination=empty, source=parent, x=pad["left"], y=pad["top"],
                           resize_source=False)


def _masks(chain: Chain, mask: Ref, blur: int) -> tuple[Ref, Ref]:
    """(support, weight): what the model may re-draw (the mask grown by the blur band) and the paste weight."""
    if blur <= 0:
        return mask, mask
    graph = chain.graph
    support = graph.add("GrowMask", mask=mask, expand=blur, tapered_corners=True)
    grown = blur // 2
    inner = graph.add("GrowMask", mask=mask, expand=grown, tapered_corners=True) if grown else mask
    radius = max(1, min(BLUR_RADIUS_MAX, blur - grown))
    blurred = graph.add("ImageBlur", image=graph.add("MaskToImage", mask=inner), blur_radius=radius,
                        sigma=round(max(0.1, min(SIGMA_MAX, radius / 2)), 2))
    return support, graph.add("ImageToMask", image=blurred, channel="red")


@image_for("inpaint")
def inpaint_image(chain: Chain) -> Ref:
    r, graph = chain.record, chain.graph
    parent_file, mask_file = inpaint_files(r)
    canvas = _canvas(chain, graph.add("LoadImage", image=parent_file), r)
    mask = graph.add("LoadImageMask", image=mask_file, channel="red")
    support, weight = _masks(chain, mask, int(r.get("blur") or 0))
    steps = int(r.get("steps") or 8)
    ran = img2img_steps_run(steps, float(r.get("strength") or 0.0))
    guidance = float(r.get("guidance") or 0.0)
    positive, negative = conditioning(chain, r["prompt"], r.get("negative", ""), guidance)
    width, height = int(r["width"]), int(r["height"])
    renders = [x for x in r.get("renders") or () if isinstance(x, dict)] or \
        [{"box": [0, 0, width, height], "size": [width, height]}]
    whole = r.get("area") == "whole"
    image = canvas
    for index, render in enumerate(renders):
        x0, y0, x1, y1 = (int(v) for v in render["box"])
        box_w, box_h = x1 - x0, y1 - y0
        size_w, size_h = (int(v) for v in render["size"])
        scaled = not whole and (size_w, size_h) != (box_w, box_h)
        pixels, region, region_weight = canvas, support, weight
        if (box_w, box_h) != (width, height):
            pixels = graph.add("ImageCrop", image=canvas, width=box_w, height=box_h, x=x0, y=y0)
            region = graph.add("CropMask", mask=support, x=x0, y=y0, width=box_w, height=box_h)
            region_weight = graph.add("CropMask", mask=weight, x=x0, y=y0, width=box_w, height=box_h) \
                if weight != support else region
        if scaled:
            pixels = graph.add("ImageScale", image=pixels, upscale_method="lanczos", width=size_w, height=size_h,
                               crop="disabled")
        encoded = graph.add("InpaintModelConditioning", positive=positive, negative=negative, vae=chain.vae,
                            pixels=pixels, mask=region, noise_mask=True)
        latent = sample(chain, Ref(encoded.node, 2), seed=int(r.get("seed") or 0) + index, steps=steps,
                        guidance=guidance, positive=Ref(encoded.node, 0), negative=Ref(encoded.node, 1), ran=ran)
        drawn = graph.add("VAEDecode", samples=latent, vae=chain.vae)
        if scaled:
            drawn = graph.add("ImageScale", image=drawn, upscale_method="lanczos", width=box_w, height=box_h,
                              crop="disabled")
        image = graph.add("ImageCompositeMasked", destination=image, source=drawn, x=x0, y=y0, resize_source=False,
                          mask=region_weight)
    return image
