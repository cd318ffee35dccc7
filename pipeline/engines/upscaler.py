"""Real-ESRGAN (or any spandrel super-resolution model) upscaling engine.

    upscaler = load_upscaler("realesrgan-x4plus", device="auto", precision="auto")
    image = load_image("in.png")                               # engines/upscale_images.py
    big = upscaler.upscale(image, tile=None, overlap=None)   # x4, default tiling
    twice = resize_to(big, 2, base_size=image.size)           # --scale 2 with an x4 model
    upscaler.digest                                           # sha256 of the weights, for store keys

Tiling (see ``pipeline.engines.tiling``).  The image is cut into windows of
``tile + overlap`` input pixels; each keeps only the inner part of the bands it
shares with its neighbours, so every kept pixel has context on all sides and
no seam is visible.  ``tile=0`` runs the whole image at once.  Windows all have
one shape, so several run in one batch.

Progress inside a window.  On a CPU one window of x4plus takes minutes on a loaded machine, so
``progress(done, total)`` is also called after each block of the model's trunk (RRDBNet's 23
RRDBs, SRVGGNet's convolutions) with a fractional ``done``: a caller that raises from it (Stop)
is honoured between model calls, not after a whole window.

Image modes.  RGB in, RGB out.  RGBA/LA/PA: the colour goes through the model
and so does the alpha, as a 3-channel gray image (as Real-ESRGAN does); a
constant alpha is just stretched.  L: run as gray RGB, returned as L.  16-bit
gray (I;16, I): returned as 16-bit (I;16).  Other modes are converted to RGB.

Precision ``auto``: bf16 on CPUs with native bf16 (AMX / AVX512-BF16), fp16 on
CUDA, else fp32.  An fp16 batch whose output is NaN/Inf, or black where the
input is not, is redone in fp32 with a warning.  On CUDA out-of-memory the
tile is halved and the image restarted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.models import upscaler_weights as weights_mod
from pipeline.engines.upscale_images import from_planes, to_planes
from pipeline.engines.tiling import DEFAULT_OVERLAP, axis_plan, default_overlap, tile_starts  # noqa: F401
from pipeline.core.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_TILE = 256
MIN_TILE = 16
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Progress = Callable[[float, int], None]


# ---------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None picks CUDA when available, else CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}: use auto, cpu or cuda") from None


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16) and oneDNN may use it."""
    from pipeline.core.hardware import onednn_limits_bf16

    if onednn_limits_bf16():
        return False
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"amx_bf16", "avx512_bf16"}) and torch.backends.mkldnn.is_available()


def resolve_precision(precision: str, device: torch.device) -> str:
    """Turn ``auto|fp32|bf16|fp16`` into a concrete precision for ``device``."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


# ------------------------------------------------------------------ memory
_BYTES_PER_PIXEL_FP32 = 14_000  # peak activations of RRDBNet x4 per input pixel (measured ~13 KB)
CPU_BUDGET_CAP = 4 * 1024**3  # bytes of activations an upscale may hold on a CPU...
CPU_BUDGET_SHARE = 0.25  # ...and at most this share of the memory available now


def cpu_budget_bytes() -> int:
    """Activation memory a CPU upscale may use: 4 GiB, or a quarter of MemAvailable when that is less
    (``PIPELINE_UPSCALE_CPU_BUDGET_MB`` overrides, e.g. for benchmarks)."""
    import os

    value = os.environ.get("PIPELINE_UPSCALE_CPU_BUDGET_MB", "").strip()
    if value:
        try:
            return max(1, int(float(value) * 1024**2))
        except ValueError:
            pass
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        available = None
    return CPU_BUDGET_CAP if available is None else int(min(CPU_BUDGET_CAP, CPU_BUDGET_SHARE * available))


def pixel_budget(device: torch.device, dtype: torch.dtype) -> int:
    """Input pixels one forward pass may hold: ``cpu_budget_bytes`` of activations on a CPU, half the
    free memory on CUDA."""
    per_pixel = _BYTES_PER_PIXEL_FP32 * torch.finfo(dtype).bits / 32
    if device.type != "cuda":
        return int(cpu_budget_bytes() / per_pixel)
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.5 * free / per_pixel)


def default_tile(device: torch.device, dtype: torch.dtype, size: tuple[int, int] | None = None) -> int:
    """Tile size when none is given.  CUDA: from free memory (multiple of 16).  CPU: 0 (the whole picture
    at once) when its working set fits ``pixel_budget``, else the largest tile that fits, shrunk to the
    fewest equal windows that cover the picture (1024² in bf16 under 4 GiB: 2 x 2 windows of 544²)."""
    budget = pixel_budget(device, dtype)
    if device.type == "cuda" or size is None:
        if device.type != "cuda" and size is None:
            budget = min(budget, (CPU_TILE + DEFAULT_OVERLAP) ** 2)
        side = math.isqrt(budget) - DEFAULT_OVERLAP
        return max(MIN_TILE, min(2048, side // 16 * 16))
    width, height = size
    if width * height <= budget:
        return 0
    longest = max(width, height)
    for count in range(2, longest // MIN_TILE + 2):
        tile = max(MIN_TILE, -(-(longest - DEFAULT_OVERLAP) // count // 16) * 16)
        window = tile + default_overlap(tile)
        if window * window <= budget or tile == MIN_TILE:
            return tile
    return MIN_TILE


class _OutOfMemory(Exception):
    pass


# ------------------------------------------------------------------ engine
@dataclass
class Upscaler:
    """A loaded super-resolution model.  Build it with ``load_upscaler``.

    ``name``/``path``/``source``: which weights; ``digest``: their sha256;
    ``scale``: native scale; ``precision``: the concrete one in use."""

    descriptor: object
    name: str
    path: Path
    source: str
    digest: str
    device: torch.device
    precision: str
    batch: int = 8
    _cost: tuple[float, float] | None = None  # (seconds per window, per input pixel)

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return self.descriptor.architecture.name

    @property
    def reach(self) -> int | None:
        """Input pixels on each side that can change an output pixel, where the network's layers say so:
        SRVGGNet (the compact models) is a chain of 3x3 convolutions, 1 px each, so its ``num_conv`` + 2.
        None for networks that see much further (RRDBNet's 23 blocks of dense convolutions)."""
        model = getattr(self.descriptor, "model", None)
        if type(model).__name__ == "SRVGGNetCompact" and isinstance(getattr(model, "num_conv", None), int):
            return model.num_conv + 2
        return None

    def default_overlap(self, tile: int) -> int:
        """The overlap when none is given: ``tiling.default_overlap``, cut to twice the network's reach where
        known, since more context cannot change a pixel (realesr-animevideov3: 36 px, tiles bit-identical to the
        whole picture at half the work of the 96 px that 32-px tiles get otherwise)."""
        reach = self.reach
        return default_overlap(tile) if reach is None else min(default_overlap(tile), 2 * reach)

    def settings(self, tile: int | None = None, overlap: int | None = None,
                 size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The concrete (tile, overlap) that ``upscale`` uses for these arguments on a picture of ``size``."""
        if tile is None:
            tile = default_tile(self.device, _DTYPES.get(self.precision, torch.float32), size)
        return tile, self.default_overlap(tile) if overlap is None else overlap

    def windows(self, width: int, height: int, tile: int | None = None, overlap: int | None = None) -> int:
        """How many windows (the progress callback's unit) one plane of this size is cut into."""
        from pipeline.engines.tiling import window_count

        return window_count(width, height, *self.settings(tile, overlap, (width, height)))

    def cost_model(self) -> tuple[float, float]:
        """(seconds per window, seconds per input pixel), measured once on this machine: probes of
        64² and 128² after a warm-up. A call's fixed cost (dispatch, kernel set-up per shape) weighs on a
        small probe: one 96² probe read as pure per-pixel cost over-estimated a 192² x4plus upscale 3.5×."""
        if self._cost is None:
            import time

            rng = np.random.default_rng(0)

            def timed(side: int) -> float:
                probe = [rng.random((side, side, 3), dtype=np.float32)]
                started = time.perf_counter()
                self.upscale_arrays(probe, tile=0)
                return time.perf_counter() - started

            timed(64)  # warm-up
            small, large = timed(64), timed(128)
            # a noisy machine can make the difference tiny or negative: never below a quarter of the
            # large probe's own per-pixel cost
            per_pixel = max((large - small) / (128 * 128 - 64 * 64), 0.25 * large / (128 * 128))
            self._cost = (max(small - per_pixel * 64 * 64, 0.0), per_pixel)
        return self._cost

    @property
    def known_cost(self) -> tuple[float, float] | None:
        """The cost model if measured or given (no probe runs to answer)."""
        return self._cost

    def use_cost_model(self, cost: tuple[float, float]) -> None:
        """A cost model measured before on this machine (``stages/upscale_time.py`` remembers them)."""
        self._cost = (max(float(cost[0]), 0.0), max(float(cost[1]), 0.0))

    def learn(self, sizes: list[tuple[int, int]], tile: int | None, overlap: int | None, seconds: float) -> None:
        """Correct the cost per pixel from a real upscale of pictures of these sizes that took ``seconds``
        (the probes ran on another load, or another shape): the next estimate of the same work is about
        ``seconds``.
        Nothing to correct before the cost model is known."""
        windows, pixels = self._work(sizes, tile, overlap)
        if self._cost is None or not pixels or seconds <= 0:
            return
        per_window = self._cost[0]
        self._cost = (per_window, max(seconds - windows * per_window, 0.25 * seconds) / pixels)

    def _work(self, sizes, tile, overlap) -> tuple[int, int]:
        """(windows, input pixels computed) of upscaling images of these (width, height)."""
        from pipeline.engines.tiling import window_count, window_pixels

        pixels = windows = 0
        for w, h in sizes:
            settings = self.settings(tile, overlap, (w, h))
            pixels += window_pixels(w, h, *settings)
            windows += window_count(w, h, *settings)
        return windows, pixels

    def estimate_seconds(self, sizes: list[tuple[int, int]], tile: int | None = None,
                         overlap: int | None = None) -> float:
        """Seconds to upscale images of these (width, height) here, from ``cost_model``."""
        windows, pixels = self._work(sizes, tile, overlap)
        if not pixels:
            return 0.0
        per_window, per_pixel = self.cost_model()
        return windows * per_window + pixels * per_pixel

    def upscale(self, image: Image.Image, *, tile: int | None = None, overlap: int | None = None,
                progress: Progress | None = None) -> Image.Image:
        """Upscale a PIL image by ``self.scale``; see the module doc for modes.

        ``tile``: core tile size in input pixels (None = default for the
        device, 0 = whole image).  ``overlap``: pixels shared by neighbouring tiles (None =
        ``default_overlap(tile)``: 64, 96 under 128-px tiles, at most twice the ``reach``).
        ``progress(done, total)`` counts windows and is called after each batch, and with fractions of a
        batch after each block of the model's trunk (an exception raised from it stops the upscale there)."""
        color, alpha, mode = to_planes(image)
        alpha_varies = alpha is not None and float(alpha.max() - alpha.min()) > 0
        planes = [color] + ([np.repeat(alpha[..., None], 3, axis=2)] if alpha_varies else [])
        outputs = self.upscale_arrays(planes, tile=tile, overlap=overlap, progress=progress)
        out_alpha = None
        if alpha is not None:
            out_alpha = (outputs[1].mean(axis=2) if alpha_varies
                         else np.full(outputs[0].shape[:2], float(alpha.flat[0]), np.float32))
        return from_planes(outputs[0], out_alpha, mode)

    def upscale_arrays(self, arrays: list[np.ndarray], *, tile: int | None = None,
                       overlap: int | None = None, progress: Progress | None = None) -> list[np.ndarray]:
        """Upscale float32 (H, W, 3) arrays in [0, 1] (all of one size)."""
        tile, overlap = self.settings(tile, overlap, (arrays[0].shape[1], arrays[0].shape[0]))
        if tile < 0 or overlap < 0:
            raise UserError("tile and overlap must not be negative")
        while True:
            try:
                return self._run(arrays, tile, overlap, progress)
            except _OutOfMemory:
                if tile == 0:
                    tile = max(MIN_TILE, max(arrays[0].shape[:2]) // 2 // 16 * 16)
                elif tile <= MIN_TILE:
                    raise UserError(f"the {self.device} device ran out of memory even with "
                                    f"{MIN_TILE}-px tiles; use --device cpu") from None
                else:
                    tile = max(MIN_TILE, tile // 2)
                overlap = min(overlap, tile)  # the window must shrink too (less context: a little seam risk)
                warnings.warn(f"out of memory on {self.device}: retrying with {tile}-px tiles "
                              f"sharing {overlap} px", stacklevel=2)

    def _run(self, arrays, tile, overlap, progress):
        height, width = arrays[0].shape[:2]
        s = self.scale
        if tile == 0:
            tile, overlap = max(height, width), 0
        rows = axis_plan(height, tile, overlap, s)
        cols = axis_plan(width, tile, overlap, s)
        win_h, win_w = min(height, tile + overlap), min(width, tile + overlap)
        jobs = [(k, y, wy, x, wx) for k in range(len(arrays)) for y, wy in rows for x, wx in cols]
        budget = pixel_budget(self.device, _DTYPES[self.precision])
        batch_size = max(1, min(self.batch, budget // (win_h * win_w)))
        sources = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in arrays]
        canvases = [np.zeros((height * s, width * s, 3), np.float32) for _ in arrays]
        weight_sum = np.zeros((height * s, width * s), np.float32)
        within = [None]  # the batch under way: (windows before it, its windows)
        with torch.inference_mode(), _trunk_hooks(self.descriptor.model, within, progress, len(jobs)):
            for first in range(0, len(jobs), batch_size):
                chunk = jobs[first : first + batch_size]
                within[0] = (first, len(chunk))
                batch = torch.stack([sources[k][:, y : y + win_h, x : x + win_w] for k, y, _, x, _ in chunk])
                out = self._forward(batch).float().cpu().numpy().transpose(0, 2, 3, 1)
                for (k, y, wy, x, wx), tile_out in zip(chunk, out):
                    w2 = np.outer(wy, wx).astype(np.float32)
                    region = (slice(y * s, (y + win_h) * s), slice(x * s, (x + win_w) * s))
                    canvases[k][region] += tile_out * w2[..., None]
                    if k == 0:
                        weight_sum[region] += w2
                if progress is not None:
                    progress(min(first + batch_size, len(jobs)), len(jobs))
        weight_sum = np.maximum(weight_sum, 1e-8)[..., None]
        for canvas in canvases:  # in place: a 4096² canvas is 200 MB
            np.divide(canvas, weight_sum, out=canvas)
            np.clip(canvas, 0, 1, out=canvas)
        return canvases

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        dtype = _DTYPES[self.precision]
        x = batch.to(self.device, dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            out = self.descriptor(x)
        except torch.OutOfMemoryError:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise _OutOfMemory() from None
        if self.precision == "fp16" and _looks_broken(x, out):
            warnings.warn("fp16 produced NaN/Inf or black output; redoing in fp32", stacklevel=3)
            self._set_precision("fp32")
            return self._forward(batch)
        return out

    def _set_precision(self, precision: str) -> None:
        self.precision = precision
        self.descriptor.model.to(dtype=_DTYPES[precision], memory_format=torch.channels_last)


def _trunk(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's longest list of blocks (RRDBNet's body of 23 RRDBs, SRVGGNet's body of convolutions),
    or none when no module has 4 children or more."""
    best: list[torch.nn.Module] = []
    for module in model.modules():
        children = list(module.children())
        if len(children) > len(best):
            best = children
    return best if len(best) >= 4 else []


class _trunk_hooks:
    """While active: after each trunk block of a forward pass, ``progress(before + windows * fraction,
    total)`` for the batch ``within[0]`` = (before, windows) under way; the fraction stops short of 1 (the
    upsampling layers after the trunk are still to run)."""

    def __init__(self, model, within: list, progress: Progress | None, total: int):
        self.model, self.within, self.progress, self.total = model, within, progress, total
        self.handles: list = []

    def __enter__(self):
        blocks = _trunk(self.model) if self.progress is not None else []
        for i, block in enumerate(blocks):
            self.handles.append(block.register_forward_hook(self._hook((i + 1) / (len(blocks) + 1))))
        return self

    def _hook(self, fraction: float):
        def after_block(module, args, output):
            if self.within[0] is not None:
                before, windows = self.within[0]
                self.progress(before + windows * fraction, self.total)
        return after_block

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        return False


def _looks_broken(x: torch.Tensor, out: torch.Tensor) -> bool:
    if not torch.isfinite(out).all():
        return True
    dims = tuple(range(1, out.dim()))
    return bool(((out.amax(dim=dims) == 0) & (x.amax(dim=dims) > 0.02)).any())


def load_upscaler(name_or_path: str | Path | None = None, device: str | torch.device | None = "auto",
                  precision: str = "auto", *, weights_dir: Path | None = None, batch: int = 8) -> Upscaler:
    """Resolve weights (see ``pipeline.models.upscaler_weights.resolve_weights``),
    load them with spandrel (strict) onto ``device`` in ``precision``.

    Raises ``UserError`` for unknown/unsafe/unsupported weights."""
    import spandrel

    resolved = weights_mod.resolve_weights(name_or_path, directory=weights_dir)
    state = weights_mod.load_state_dict(resolved.path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise UserError(f"{resolved.path} is not a model architecture spandrel knows") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor) or descriptor.purpose not in ("SR", "Restoration"):
        raise UserError(f"{resolved.path} is not an image upscaling model")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise UserError(f"{resolved.path} is not an RGB model ({descriptor.input_channels} input channels)")
    device = resolve_device(device)
    concrete = resolve_precision(precision, device)
    if (concrete == "fp16" and not descriptor.supports_half) or (concrete == "bf16" and not descriptor.supports_bfloat16):
        if precision != "auto":
            raise UserError(f"{descriptor.architecture.name} does not support {concrete}; use --precision fp32")
        concrete = "fp32"
    descriptor.model.eval().to(device)
    upscaler = Upscaler(descriptor, resolved.name, resolved.path, resolved.source,
                        weights_mod.weights_digest(resolved.path), device, concrete, batch=batch)
    upscaler._set_precision(concrete)
    return upscaler
