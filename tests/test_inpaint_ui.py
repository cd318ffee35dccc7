"""The app's Inpaint panel (a real `pipeline ui` server on the tiny model, driven by gradio_client): load a
candidate into the brush editor, paint a corner, Inpaint; the fix joins the run as 1i1 and comes back beside
its parent; nothing painted or no face is one sentence on the page."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ui_server import module_server

gradio_client = pytest.importorskip("gradio_client", reason="the browser app's extra is not installed: pip install '.[ui]'")
pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")


server = module_server("ui-inpaint")


def test_brush_inpaint_and_the_fix_beside_its_parent(server, tmp_path):
    from gradio_client import handle_file

    client = server.client()
    explored = client.predict("a red fox in snow", "", 64, 64, 1, "1", 2, 0, api_name="/explore")[-1]
    run_dir = Path(explored["run_dir"])
    loaded = client.predict(run_dir.name, "1", "explore", api_name="/inpaint_load")
    assert loaded["background"] is not None
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[0:16, 48:64] = (255, 255, 255, 255)  # a stroke over the top right corner
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    parent = run_dir / "explore" / "seed-1.png"
    editor = {"background": handle_file(str(parent)), "layers": [handle_file(str(tmp_path / "layer.png"))],
              "composite": handle_file(str(parent))}
    slider, ident, status, result = client.predict(run_dir.name, "1", "explore", editor, "", 0.75, 128,
                                                   api_name="/inpaint")
    assert ident == "1i1" and result["computed"] == 1 and "1i1: 1 re-drawn" in status
    fix = run_dir / "inpaint" / "seed-1i1.png"
    assert result["files"] == [str(fix)] and len(slider) == 2
    with Image.open(fix) as image:
        after = np.asarray(image.convert("RGB"))
    with Image.open(parent) as image:
        before = np.asarray(image.convert("RGB"))
    changed = (after != before).any(axis=2)
    assert changed[0:16, 48:64].any() and not changed[24:, :40].any()  # the corner, not the rest
    entries = json.loads((run_dir / "run.json").read_text())["inpaint"]["pictures"]
    assert [(e["seed"], e["parent"]) for e in entries] == [("1i1", "1")]


def test_nothing_painted_and_no_face_are_one_sentence(server):
    from gradio_client import handle_file

    client = server.client()
    explored = client.predict("a red fox in snow", "", 64, 64, 1, "2", 2, 0, api_name="/explore")[-1]
    run_dir = Path(explored["run_dir"])
    parent = str(run_dir / "explore" / "seed-2.png")
    editor = {"background": handle_file(parent), "layers": [], "composite": handle_file(parent)}
    with pytest.raises(Exception, match="nothing is painted: paint over what to re-draw with the brush"):
        client.predict(run_dir.name, "2", "explore", editor, "", 0.75, 128, api_name="/inpaint")
    # no face is found while the job runs: the job fails with its sentence (status line and result), Stop off
    outputs = client.predict(run_dir.name, "2", "explore", "", 128, api_name="/fix_faces")
    said = [value for value in outputs if isinstance(value, str) and value.startswith("failed: ")]
    assert len(said) == 1 and "no face was found at confidence 0.3" in said[0], outputs
    assert "no face was found at confidence 0.3" in outputs[-1]["error"]
    assert not (run_dir / "inpaint").exists()
