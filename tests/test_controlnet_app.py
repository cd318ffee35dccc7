"""The app's Control accordion: an uploaded control image, its type and strength, the map's preview, and an
explore from the page that follows it (the library's explore, as the CLI's)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")

UNION = "Z-Image-Turbo-Fun-Controlnet-Union-2.1-2602-8steps"


@pytest.fixture
def upload(tmp_path, monkeypatch):
    """A picture where Gradio puts uploads (its upload folder, here a temporary one)."""
    folder = tmp_path / "gradio-uploads"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    path = folder / "abc123" / "pose.png"
    path.parent.mkdir(parents=True)
    image = np.zeros((120, 200, 3), np.uint8)
    image[20:100, 60:140] = 255
    Image.fromarray(image).save(path)
    return path


def test_the_accordion_previews_the_map_and_an_explore_follows_it(tmp_path, upload, monkeypatch):
    from pipeline import Pipeline
    from pipeline.models.tiny_controlnet import save_tiny_controlnet_file
    from pipeline.web.app import build_app, control_panel, explore_job
    from pipeline.web.app.state import AppState

    weights = tmp_path / "weights"
    save_tiny_controlnet_file(weights / "controlnet" / f"{UNION}.safetensors", dtype="fp32")
    monkeypatch.setenv("PIPELINE_WEIGHTS", str(weights))
    out = tmp_path / "outputs"
    with Pipeline(model="tiny-random", out=out, dtype="fp32", progress=False) as p:
        app = AppState(p, out)
        demo = build_app(app)
        assert demo.ui.control_type.choices and demo.ui.control_preview is not None  # the accordion is there
        shown = control_panel.preview(str(upload), "canny", 128, 96)
        assert shown.size == (128, 96) and set(np.unique(np.asarray(shown))) <= {0, 255}  # the edges, fitted
        request = explore_job.request_of(app, "a dancer", "", 128, 96, 1, "4", 2, 0.0,
                                         control={"image": str(upload), "type": "canny", "strength": 0.7})
        assert request["control"] == {"image": str(upload.resolve()), "type": "canny", "strength": 0.7}
        updates = list(explore_job.events(app, "tab", request))
    result = updates[-1].result
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["control"]["type"] == "canny" and run["control"]["strength"] == 0.7
    assert (result.run_dir / run["control"]["path"]).is_file()


def test_a_path_on_the_server_is_not_a_control_image(tmp_path, upload):
    from pipeline.core.errors import UserError
    from pipeline.web.app import control_panel

    elsewhere = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(elsewhere)
    with pytest.raises(UserError, match="only a picture dropped on the page"):
        control_panel.control_of({"image": str(elsewhere), "type": "canny"})
    assert control_panel.control_of({"image": str(upload), "strength": 0}) is None  # strength 0: no control
