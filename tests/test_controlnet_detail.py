"""`upscale --detail` with a ControlNet: each tile is drawn with the matching crop of the control map.

(Ultimate SD Upscale fed every tile the whole control image, and drew N copies of the picture.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_detail_upscale import FAST, _line_steps, _smooth_picture, pixels  # noqa: E402

from pipeline import Pipeline  # noqa: E402
from pipeline.core.errors import UserError  # noqa: E402

UNION = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-2602-8steps"
TILE = "Z-Image-Turbo-Fun-Controlnet-Tile-2.1-2601-8steps"
PROMPT = "a lighthouse at dusk"


@pytest.fixture(autouse=True)
def weights(tmp_path_factory, monkeypatch):
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file

    folder = tmp_path_factory.getbasetemp() / "controlnet-weights"
    if not folder.exists():
        save_tiny_controlnet_file(folder / "controlnet" / f"{UNION}.safetensors", dtype="fp32")
        save_tiny_controlnet_file(folder / "controlnet" / f"{TILE}.safetensors", seed=1005, dtype="fp32")
    monkeypatch.setenv("PIPELINE_WEIGHTS", str(folder))
    return folder


def _quadrants(path: Path, size: int = 128) -> Path:
    image = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    image[:half, :half], image[:half, half:] = (230, 40, 40), (40, 230, 40)
    image[half:, :half], image[half:, half:] = (40, 40, 230), (240, 240, 240)
    Image.fromarray(image).save(path)
    return path


def test_each_tile_gets_its_own_crop_of_the_control_and_no_tile_edge_shows(tmp_path, monkeypatch):
    from pipeline.core.control import control_map
    from pipeline.engines import controlnet

    seen = []  # what reaches the ControlNet, per tile: (its control map, the tile's size)
    real_call = controlnet.ControlNetTask.__call__

    def spy(self, *, control, width, height, **kwargs):
        seen.extend((np.asarray(m).copy(), (width, height)) for m in control.maps)
        return real_call(self, control=control, width=width, height=height, **kwargs)

    monkeypatch.setattr(controlnet.ControlNetTask, "__call__", spy)
    picture, control = _smooth_picture(tmp_path / "smooth.png"), _quadrants(tmp_path / "layout.png")
    with Pipeline(model="tiny-random", out=tmp_path / "o", dtype="fp32") as p:
        result = p.upscale([picture], upscaler=FAST[1], detail=0.4, detail_tile=64, prompt=PROMPT,
                           control={"image": str(control), "type": "gray", "strength": 0.8})
    path = result.items[0].path
    with Image.open(path) as image:
        record = json.loads(image.text["pipeline"])["upscale"]
        assert 'ControlNet 0: "Module: recolor_luminance' in image.text["parameters"]
    tiles = record["detail"]["tiles"]
    assert len(tiles) == 9 and len(seen) == 9 and record["detail"]["control"]["type"] == "gray"
    whole = np.asarray(control_map(Image.open(control), "gray", 128, 128).image)
    for (x, y, w, h), (given, size) in zip(tiles, seen):
        assert size == (w, h) and given.shape[:2] == (h, w)
        assert np.array_equal(given, whole[y:y + h, x:x + w])  # the crop under the tile, not the whole map
    assert len({given.tobytes() for given, _ in seen}) > 1  # the quadrants differ, so do the tiles' crops
    steps, lines = _line_steps(pixels(path), tiles)
    assert np.mean(steps) <= 1.25 * float(np.median(lines)), (steps, float(np.median(lines)))
    kept = result.run_dir / "control" if result.run_dir else None
    assert kept is None or any(kept.glob("*.png"))


def test_tile_without_an_image_uses_the_picture_and_control_needs_detail(tmp_path):
    picture = _smooth_picture(tmp_path / "smooth.png")
    with Pipeline(model="tiny-random", out=tmp_path / "o", dtype="fp32") as p:
        plain = p.upscale([picture], upscaler=FAST[1], detail=0.3, detail_tile=64, prompt=PROMPT)
        tiled = p.upscale([picture], upscaler=FAST[1], detail=0.3, detail_tile=64, prompt=PROMPT,
                          control={"type": "tile"})
        with pytest.raises(UserError, match="--control on upscale needs --detail"):
            p.upscale([picture], upscaler=FAST[1], control={"type": "tile"})
    assert plain.items[0].key != tiled.items[0].key
    with Image.open(tiled.items[0].path) as image:
        detail = json.loads(image.text["pipeline"])["upscale"]["detail"]
    assert detail["control"]["model"] == TILE and detail["control"]["type"] == "tile"
