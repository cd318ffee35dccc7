"""The Control accordion of the explore form: drop a control image, pick its type and strength, and see the
control map every candidate will follow — made here as the explore stage makes it (fitted to the form's size
by a center crop, then canny/gray/tile/map: ``core/control.py``; no torch).

One API parameter, ``control`` ({image, type, strength}), kept up to date by the accordion; the image is
accepted only as an upload to this page (``disk_panel.checked``: Gradio's upload folder, PNG/JPEG/WebP, capped),
never as a path on the server.
"""
from __future__ import annotations

import gradio as gr

from ...core.control import DEFAULT_STRENGTH, TYPES

TYPE_INFO = "canny: its edges · gray: its tones · tile: the picture itself · map: already a control map (pose, depth)"


def build(app, ui) -> None:
    with gr.Accordion("Control", open=False, elem_id="control-panel"):
        ui.control_image = gr.Image(type="filepath", label="Control image", sources=["upload"], image_mode=None,
                                    elem_id="control-image", height=160)
        with gr.Row():
            ui.control_type = gr.Dropdown(list(TYPES), value="canny", label="Type", info=TYPE_INFO,
                                          elem_id="control-type", scale=2)
            ui.control_strength = gr.Slider(0, 1.5, value=DEFAULT_STRENGTH["canny"], step=0.05, label="Strength",
                                            info="0: off; Union 0.6–0.8, Tile 0.85", elem_id="control-strength",
                                            scale=2)
        ui.control_preview = gr.Image(label="Control map (what the ControlNet sees)", interactive=False,
                                      elem_id="control-preview", height=160)
    ui.control = gr.JSON(None, visible=False, elem_id="control", label="control")


def preview(path, kind: str, width, height):
    """The control map of the dropped image at the form's size (PIL), as the stage will make it."""
    from ...core.control import check_type, control_map, load_image
    from .disk_panel import checked

    return control_map(load_image(checked(path)), check_type(kind), int(width), int(height)).image


def control_of(value) -> dict | None:
    """The page's ``control`` as the API takes it: None when no image was dropped or strength is 0."""
    from ...core.errors import UserError
    from .disk_panel import checked

    if not value:
        return None
    if not isinstance(value, dict) or not value.get("image"):
        raise UserError("give control as {image, type, strength}, the image dropped on the Control accordion")
    control = {"image": checked(value["image"]), "type": str(value.get("type") or "canny")}
    if value.get("strength") is not None:
        control["strength"] = float(value["strength"])
    return control if control.get("strength", 1.0) != 0 else None


def wire(app, ui) -> None:
    inputs = [ui.control_image, ui.control_type, ui.control_strength, ui.width, ui.height]

    def changed(path, kind, strength, width, height):
        if not path:
            return None, None
        from ...core.errors import UserError

        try:
            return {"image": path, "type": kind, "strength": float(strength)}, preview(path, kind, width, height)
        except UserError as err:
            raise gr.Error(str(err), print_exception=False) from None

    gr.on([c.change for c in inputs], changed, inputs, [ui.control, ui.control_preview], api_visibility="private",
          queue=False)
    ui.control_type.change(lambda kind: DEFAULT_STRENGTH.get(kind, gr.skip()), ui.control_type, ui.control_strength,
                           api_visibility="private", queue=False)
