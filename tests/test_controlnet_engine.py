"""The engine with a ControlNet, on the tiny model (CPU, fp32), against diffusers' own pipelines.

Tolerance: the engine's text-to-image with control is diffusers' ``ZImageControlNetPipeline`` over the same
components, fed prompt embeddings from the engine's store instead of its own encoder; on the same inputs the
pictures agree to within 1/255 on any pixel channel (measured here: identical). Image-to-image with control at
scale 0 reproduces ``ZImageImg2ImgPipeline`` to within the same 1/255 (measured: identical).
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.core import jobs as J
from pipeline.core.control import control_map

PROMPT = "a red fox in the snow"
SIZE = 128
MAX_PIXEL = 1.0
CHANGED = 0.3  # mean |difference| (of 255) that counts as "control changed the picture" on the random models


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.float64)


@pytest.fixture(scope="module")
def parts():
    from pipeline.models import tiny

    return tiny.build_tiny_components()


@pytest.fixture(scope="module")
def entry(tmp_path_factory):
    from pipeline.models import controlnets
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file

    path = save_tiny_controlnet_file(tmp_path_factory.mktemp("cn") / "Z-Image-Turbo-Fun-Controlnet-Union-tiny.safetensors",
                                     dtype="fp32")
    return controlnets.resolve(str(path), "gray")


@pytest.fixture(scope="module")
def engine(parts):
    from diffusers import ZImagePipeline

    from pipeline.engines.zimage import ZImageEngine

    pipe = ZImagePipeline(transformer=parts["transformer"], vae=parts["vae"], scheduler=parts["scheduler"],
                          text_encoder=None, tokenizer=None)
    return ZImageEngine.from_pipeline(pipe, device="cpu", dtype="fp32", memory="auto", fingerprint="tiny",
                                      text_encoder_loader=lambda: (parts["tokenizer"], parts["text_encoder"]))


@pytest.fixture(scope="module")
def source():
    """A picture whose quadrants differ (what a control map is made from)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:SIZE // 2, :SIZE // 2] = (230, 40, 40)
    image[:SIZE // 2, SIZE // 2:] = (40, 230, 40)
    image[SIZE // 2:, :SIZE // 2] = (40, 40, 230)
    image[SIZE // 2:, SIZE // 2:] = (240, 240, 240)
    return Image.fromarray(image)


def _job(control=None, seed=3, steps=4):
    return J.RenderJob(**J.render_fields(model="tiny", prompt=PROMPT, negative="", width=SIZE, height=SIZE,
                                         steps=steps, guidance=0.0, seed=seed, dtype="fp32"), control=control)


def _control(cmap, entry, strength=0.9, start=0.0, end=1.0):
    return J.ControlUse(map=cmap.digest, type=cmap.type, strength=strength, start=start, end=end,
                        model=entry.fingerprint)


def test_text_to_image_with_control_equals_diffusers_controlnet_pipeline(engine, parts, entry, source):
    import torch
    from diffusers import ZImageControlNetPipeline

    from pipeline.engines import controlnet
    from pipeline.models import tiny

    cmap = control_map(source, "gray", SIZE, SIZE)
    ours = controlnet.render(engine, entry, [_job(_control(cmap, entry))], [cmap.image])[0]
    theirs_pipe = ZImageControlNetPipeline(transformer=parts["transformer"], vae=parts["vae"],
                                           scheduler=tiny.build_tiny_scheduler(), text_encoder=parts["text_encoder"],
                                           tokenizer=parts["tokenizer"],
                                           controlnet=controlnet.load_controlnet(entry, torch.float32))
    theirs_pipe.set_progress_bar_config(disable=True)
    theirs = theirs_pipe(prompt=PROMPT, control_image=cmap.image, controlnet_conditioning_scale=0.9, height=SIZE,
                         width=SIZE, num_inference_steps=4, guidance_scale=0.0,
                         generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert np.abs(_pixels(ours) - _pixels(theirs)).max() <= MAX_PIXEL
    plain = engine.txt2img([_job()])[0]
    # and control changed the picture (a random ControlNet on a random model: 0.73/255 on average here)
    assert np.abs(_pixels(ours) - _pixels(plain)).mean() > CHANGED


def test_image_to_image_with_control_starts_where_diffusers_img2img_starts(engine, entry, source):
    """At scale 0 the ControlNet adds nothing: our img2img with control is ZImageImg2ImgPipeline's picture."""
    from pipeline.engines import controlnet

    cmap = control_map(source, "tile", SIZE, SIZE)
    parent = engine.txt2img([_job(seed=5)])[0]
    at_zero = controlnet.render(engine, entry, [_job(_control(cmap, entry, 0.0), seed=9, steps=8)], [cmap.image],
                                images=[parent], strength=0.5)[0]
    img2img = engine.img2img([_job(seed=9, steps=8)], [parent], 0.5)[0]
    assert np.abs(_pixels(at_zero) - _pixels(img2img)).max() <= MAX_PIXEL
    controlled = controlnet.render(engine, entry, [_job(_control(cmap, entry, 0.9), seed=9, steps=8)], [cmap.image],
                                   images=[parent], strength=0.5)[0]
    assert np.abs(_pixels(controlled) - _pixels(img2img)).mean() > CHANGED


def test_start_and_end_limit_control_to_their_steps(engine, entry, source):
    from pipeline.engines import controlnet

    cmap = control_map(source, "gray", SIZE, SIZE)
    whole = _pixels(controlnet.render(engine, entry, [_job(_control(cmap, entry))], [cmap.image])[0])
    first_half = _pixels(controlnet.render(engine, entry, [_job(_control(cmap, entry, end=0.5))], [cmap.image])[0])
    plain = _pixels(engine.txt2img([_job()])[0])
    assert np.abs(first_half - whole).mean() > CHANGED / 4 and np.abs(first_half - plain).mean() > CHANGED / 4
    window = controlnet.StepWindow(0.8, 0.25, 0.75, 8)
    assert [window.value(step) for step in range(8)] == [0, 0, 0.8, 0.8, 0.8, 0.8, 0, 0]


def test_the_folder_and_the_single_file_load_the_same_weights(tmp_path, entry):
    import torch

    from pipeline.engines.controlnet import load_controlnet
    from pipeline.models import controlnets
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_folder

    folder = controlnets.resolve(str(save_tiny_controlnet_folder(tmp_path / "tiny-controlnet")), "canny")
    a = load_controlnet(folder, torch.float32, width=64).state_dict()
    b = load_controlnet(entry, torch.float32, width=64).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_controlnet_for_another_width_is_refused(entry):
    import torch

    from pipeline.core.errors import UserError
    from pipeline.engines.controlnet import load_controlnet

    with pytest.raises(UserError, match="made for tiny-random .* not for this model"):
        load_controlnet(entry, torch.float32, width=3840)
