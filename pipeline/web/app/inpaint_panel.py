"""Inpaint (the CLI's `pipeline inpaint`): load a picture of the open run, paint over what to re-draw with the
brush (Gradio's ImageEditor), say what to draw there and how much, and Inpaint — or Fix faces without painting.
The fix joins the run (42i1, next to its parent in the gallery) and shows against its parent in a before/after
slider. Only ``Pipeline.inpaint`` does the work; the brush's strokes become the mask file it is given."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import numpy as np

from ...core.errors import UserError
from ...core.runs import load_run, stage_pictures
from . import flow
from .errors import on_page
from .fields import Number, Slider, in_status

SOURCES = ["explore", "refine", "upscale", "inpaint"]


def build(app, ui) -> None:
    with gr.Accordion("Inpaint", open=False, elem_id="inpaint-panel"):
        with gr.Row(equal_height=True):
            ui.inpaint_pick = gr.Textbox(label="Picture", placeholder="42, 42v1, 42i1", elem_id="inpaint-pick",
                                         scale=2)
            ui.inpaint_from = gr.Dropdown(SOURCES, value="explore", label="From", elem_id="inpaint-from", scale=1)
            ui.inpaint_load = gr.Button("Load", size="sm", elem_id="inpaint-load", scale=0)
        ui.inpaint_editor = gr.ImageEditor(label="Paint over what to re-draw", type="numpy", image_mode="RGBA",
                                           sources=(), transforms=(), layers=False, elem_id="inpaint-editor",
                                           brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24))
        ui.inpaint_prompt = gr.Textbox(label="Prompt", placeholder="empty: the picture's own prompt",
                                       elem_id="inpaint-prompt")
        with gr.Row():
            ui.inpaint_strength = Slider(0.05, 1, value=0.75, step=0.05, label="Strength", scale=3,
                                            elem_id="inpaint-strength",
                                            info="how much is re-drawn under the brush (Fix faces: 0.35)")
            ui.inpaint_work = Number(value=1024, precision=0, minimum=64, maximum=4096, label="Working size",
                                        elem_id="inpaint-work", scale=1,
                                        info="the painted part renders at about this²")
        with gr.Row():
            ui.inpaint_btn = gr.Button("Inpaint", variant="primary", elem_id="inpaint")
            ui.faces_btn = gr.Button("Fix faces", elem_id="fix-faces")
        ui.inpaint_result = gr.ImageSlider(label="Before / after", type="filepath", interactive=False,
                                           elem_id="inpaint-result")
        ui.inpaint_id = gr.Textbox(label="The fix", interactive=False, elem_id="inpaint-id",
                                   info="a picture of the run: refine, upscale or fix it again by this id")


def wire(app, ui) -> None:
    def load(run, pick, source):
        """The picture PICK (of the run's SOURCE stage) in the editor, ready for the brush."""
        with on_page():
            path = picture_path(app.run_dir(run), pick, source)
        return {"background": str(path), "layers": [], "composite": str(path)}

    ui.inpaint_load.click(load, [ui.run, ui.inpaint_pick, ui.inpaint_from], ui.inpaint_editor, api_name="inpaint_load",
                          show_progress="hidden")
    outputs = [ui.inpaint_result, ui.inpaint_id, ui.status, ui.stop_btn, ui.result]

    def inpaint(run, pick, source, editor, prompt, strength, work, request: gr.Request):
        """Re-draw what the brush covered on picture PICK of RUN at STRENGTH, with PROMPT (or its own); the
        painted part renders at about WORK² pixels."""
        with on_page():
            mask = brush_mask(editor)
        yield from _fix(app, flow.tab_of(request), run, pick, source, mask=mask, prompt=prompt or None,
                        strength=float(strength), work=int(work or 1024))

    def faces(run, pick, source, prompt, work, request: gr.Request):
        """Re-draw each face found on picture PICK of RUN (strength 0.35), with PROMPT (or its own)."""
        yield from _fix(app, flow.tab_of(request), run, pick, source, faces=True, face_prompt=prompt or None,
                        work=int(work or 1024))

    ui.inpaint_btn.click(in_status(inpaint, outputs, ui.status),
                         [ui.run, ui.inpaint_pick, ui.inpaint_from, ui.inpaint_editor, ui.inpaint_prompt,
                          ui.inpaint_strength, ui.inpaint_work], outputs, api_name="inpaint",
                         concurrency_limit=None, show_progress="hidden")
    ui.faces_btn.click(in_status(faces, outputs, ui.status),
                       [ui.run, ui.inpaint_pick, ui.inpaint_from, ui.inpaint_prompt, ui.inpaint_work],
                       outputs, api_name="fix_faces", concurrency_limit=None, show_progress="hidden")


def picture_path(run_dir: Path, pick, source: str) -> Path:
    """The file of picture ``pick`` among the run's ``source`` pictures (one sentence when it is not there)."""
    pick = str(pick or "").strip().lower()
    if not pick:
        raise UserError("say which picture: its seed or id, e.g. 42, 42v1 or 42i1")
    if source not in SOURCES:
        raise UserError(f"From must be one of {', '.join(SOURCES)}")
    for entry in stage_pictures(load_run(run_dir), source):
        if str(entry.get("seed")).lower() == pick and isinstance(entry.get("path"), str):
            path = (run_dir / entry["path"]).resolve()
            if run_dir.resolve() in path.parents and path.is_file():
                return path
    raise UserError(f"{pick} is not among this run's {source} pictures")


def brush_mask(editor) -> np.ndarray:
    """Where the brush painted (any stroke on a layer, whatever its colour): the mask, True = re-draw."""
    if not isinstance(editor, dict) or editor.get("background") is None:
        raise UserError("load a picture first, then paint over what to re-draw")
    background = np.asarray(editor["background"])
    painted = np.zeros(background.shape[:2], bool)
    for layer in editor.get("layers") or []:
        layer = np.asarray(layer)
        if layer.ndim == 3 and layer.shape[2] == 4 and layer.shape[:2] == painted.shape:
            painted |= layer[..., 3] > 0
    if not painted.any() and editor.get("composite") is not None:  # no layers: what differs from the picture
        composite = np.asarray(editor["composite"])
        if composite.shape[:2] == painted.shape:
            painted = (composite[..., :3] != background[..., :3]).any(axis=2)
    if not painted.any():
        raise UserError("nothing is painted: paint over what to re-draw with the brush")
    return painted


def _fix(app, tab, run, pick, source, *, mask=None, **options):
    from PIL import Image

    with on_page():
        run_dir = app.run_dir(run)
        parent = picture_path(run_dir, pick, source)

    def work(ticket, report):
        with tempfile.TemporaryDirectory(prefix="pipeline-brush-") as scratch:
            mask_file = None
            if mask is not None:
                mask_file = Path(scratch) / "mask.png"
                Image.fromarray(mask.astype(np.uint8) * 255).save(mask_file)
            with app.device() as pipeline:
                return pipeline.inpaint(run=str(run_dir), seeds=[str(pick).strip().lower()], source=source,
                                        mask=mask_file, **options)

    result = None
    for event in flow.run(app, tab, "inpaint", work):
        if event.kind == "failed":  # the job's error ends it: one sentence in the status line, Stop off
            yield gr.skip(), gr.skip(), f"failed: {event.result}", flow.stop_button(False), {"error": event.result}
            return
        if event.kind == "waiting":
            yield gr.skip(), gr.skip(), flow.waiting_text(event.ahead), flow.stop_button(True), gr.skip()
        elif event.kind == "progress" and not event.reports:
            yield gr.skip(), gr.skip(), f"re-drawing {'the faces of ' if options.get('faces') else ''}{pick}…", \
                flow.stop_button(False), gr.skip()
        elif event.kind == "done":
            result = event.result
    if result is None:
        yield gr.skip(), gr.skip(), "stopped while waiting: nothing was re-drawn", flow.stop_button(False), gr.skip()
        return
    item = result.items[0]
    made = "from the store" if item.cached else f"computed in {item.seconds:.1f} s"
    yield (str(parent), str(item.path)), item.seed, f"{item.seed}: {pick} re-drawn ({made})", \
        flow.stop_button(False), {"stage": "inpaint", "run_dir": str(run_dir), "seeds": [item.seed],
                                  "parent": str(pick), "from": source, "computed": result.computed,
                                  "stored": result.stored, "files": [str(item.path)]}
