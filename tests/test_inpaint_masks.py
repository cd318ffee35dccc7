"""Masks and the paste-back of inpaint, without a model: which pixels a fix may touch and where its crop goes."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.core import masks
from pipeline.core.errors import UserError
from pipeline.engines.inpaint import inpaint_pixels, plan_crops


def picture(width=96, height=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def red(crop, index):
    """A stand-in for the model: every crop comes back pure red, at the size it was given."""
    return Image.new("RGB", crop.size, (255, 0, 0))


def square_mask(size, box):
    return masks.box_mask(size, box)


def changed(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    return masks.bbox((before != after).any(axis=2))


def test_white_is_redrawn_and_alpha_transparent_is_redrawn(tmp_path):
    white = np.zeros((64, 96), np.uint8)
    white[10:20, 30:40] = 255
    Image.fromarray(white).save(tmp_path / "white.png")
    mask, notes = masks.read_mask(tmp_path / "white.png", (96, 64))
    assert notes == [] and masks.bbox(mask) == (30, 10, 40, 20)
    rgba = np.full((64, 96, 4), 255, np.uint8)
    rgba[40:50, 5:15, 3] = 0  # transparent: re-draw, whatever the colour
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    mask, _ = masks.read_mask(tmp_path / "alpha.png", (96, 64))
    assert masks.bbox(mask) == (5, 40, 15, 50) and mask.sum() == 100


def test_a_mask_of_another_size_is_resized_and_said(tmp_path):
    small = np.zeros((32, 48), np.uint8)
    small[0:8, 0:8] = 255
    Image.fromarray(small).save(tmp_path / "half.png")
    mask, notes = masks.read_mask(tmp_path / "half.png", (96, 64))
    assert mask.shape == (64, 96) and masks.bbox(mask) == (0, 0, 16, 16)
    assert notes == ["the mask (48x32) was resized to the picture's 96x64"]


@pytest.mark.parametrize("make, sentence", [
    (lambda p: p.write_bytes(b"not a picture"), "is not an image"),
    (lambda p: Image.new("L", (64, 64), 255).save(p), "is 64x64 but the picture is 96x64: a mask must have the "
                                                      "picture's shape"),
    (lambda p: Image.new("L", (96, 64), 0).save(p), "has no white (or transparent) pixel: nothing to re-draw"),
])
def test_bad_masks_are_refused_in_one_sentence(tmp_path, make, sentence):
    path = tmp_path / "mask.png"
    make(path)
    with pytest.raises(UserError) as err:
        masks.read_mask(path, (96, 64))
    assert sentence in str(err.value) and "\n" not in str(err.value)


def test_feather_is_one_on_the_mask_and_zero_beyond_the_band():
    mask = square_mask((96, 64), (40, 20, 50, 30))
    weight = masks.feather(mask, 6)
    assert (weight[mask] == 1).all()
    support = masks.bbox(weight > 0)
    assert support == (35, 15, 55, 35)  # the band is under 6 px wide on every side
    assert masks.feather(mask, 0).sum() == mask.sum()


def test_outside_the_blurred_mask_the_parent_stays_byte_for_byte():
    parent = picture()
    mask = square_mask((96, 64), (40, 20, 50, 30))
    for area in ("masked", "whole"):
        result, _ = inpaint_pixels(parent, [masks.Region(mask, 8)], red, area=area, work=64, blur=4)
        weight = masks.feather(mask, 4)
        assert np.array_equal(result[weight == 0], parent[weight == 0]), area
        assert (result[mask] == (255, 0, 0)).all(), area  # inside, the pass decides


def test_only_masked_renders_the_crop_at_the_working_size_and_pastes_it_where_it_came_from():
    parent = picture(256, 256)
    mask = square_mask((256, 256), (200, 8, 240, 40))  # top right corner
    crops = plan_crops(parent, [masks.Region(mask, 16)], area="masked", work=128, blur=4)
    (crop,) = crops
    assert crop.box == (181, 0, 256, 59)  # the support (the mask and the 3 px where its fade is above 0) and
    # 16 px of padding, inside the picture
    width, height = crop.size
    assert width % 16 == 0 and height % 16 == 0 and abs(width * height - 128 * 128) < 128 * 128 * 0.2
    assert crop.image.size == crop.size and crop.mask.size == crop.size
    result, _ = inpaint_pixels(parent, [masks.Region(mask, 16)], red, area="masked", work=128, blur=4)
    x0, y0, x1, y1 = changed(parent, result)
    assert x0 >= 181 and y1 <= 59  # only that corner changed
    whole = plan_crops(parent, [masks.Region(mask, 16)], area="whole", work=128, blur=4)[0]
    assert whole.box == (0, 0, 256, 256) and whole.size == (256, 256)


def test_padding_grows_the_crop_and_blur_grows_the_changed_region():
    parent = picture(256, 256)
    mask = square_mask((256, 256), (100, 100, 120, 120))
    boxes = [plan_crops(parent, [masks.Region(mask, pad)], area="masked", work=64, blur=4)[0].box for pad in (0, 40)]
    assert boxes == [(97, 97, 123, 123), (57, 57, 163, 163)]
    regions = []
    for blur in (0, 10):
        result, _ = inpaint_pixels(parent, [masks.Region(mask, 8)], red, area="masked", work=64, blur=blur)
        regions.append(changed(parent, result))
    assert regions[0] == (100, 100, 120, 120)
    assert regions[1][0] < 100 and regions[1][2] > 120 and regions[1][0] >= 90


def test_each_region_is_rendered_on_its_own():
    parent = picture(256, 128)
    left, right = square_mask((256, 128), (10, 10, 30, 30)), square_mask((256, 128), (200, 80, 230, 110))
    seen = []
    result, crops = inpaint_pixels(parent, [masks.Region(left, 8), masks.Region(right, 8)],
                                   lambda crop, i: seen.append(i) or red(crop, i), area="masked", work=64, blur=2)
    assert seen == [0, 1] and crops[0].box[2] < 60 and crops[1].box[0] > 150
    between = (slice(0, 128), slice(60, 180))
    assert np.array_equal(result[between], parent[between])


def test_extend_keeps_the_parent_in_place_and_masks_only_the_border():
    parent = picture(64, 48)
    sides = masks.parse_extend("bottom:32, left:16")
    assert sides == {"left": 16, "bottom": 32} and masks.extend_text(sides) == "left:16,bottom:32"
    canvas, border = masks.extend_canvas(parent, sides)
    assert canvas.shape == (80, 80, 3)
    assert np.array_equal(canvas[0:48, 16:80], parent)
    assert not border[0:48, 16:80].any() and border[48:].all() and border[:, :16].all()
    result, _ = inpaint_pixels(canvas, [masks.Region(border, 0)], red, area="whole", work=64, blur=4)
    assert np.array_equal(result[0:44, 20:80], parent[0:44, 4:64])  # the original, less the feather band


@pytest.mark.parametrize("text, sentence", [
    ("up:20", "cannot read --extend item 'up:20'"),
    ("left:0", "--extend adds nothing"),
    ("left:-5", "cannot read --extend item 'left:-5'"),
    ("left:8,left:16", "--extend names left twice"),
])
def test_bad_extend_is_one_sentence(text, sentence):
    with pytest.raises(UserError) as err:
        masks.parse_extend(text)
    assert str(err.value).startswith(sentence)


def test_the_mask_digest_is_of_its_bits_not_its_file():
    mask = square_mask((96, 64), (1, 2, 3, 4))
    assert masks.mask_digest(mask) == masks.mask_digest(mask.copy())
    moved = square_mask((96, 64), (1, 2, 3, 5))
    assert masks.mask_digest(mask) != masks.mask_digest(moved)
