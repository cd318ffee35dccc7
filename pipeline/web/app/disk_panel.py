"""A picture from disk: drop an image to refine it (`pipeline refine --from IMAGE`) or upscale it
(`pipeline upscale IMAGE`). The app's only upload: PNG, JPEG or WebP up to UPLOAD_CAP bytes, through
Gradio's upload route (POST /gradio_api/upload) into Gradio's upload folder; the file lives as long
as the page shows it (deleted when another picture replaces it or it is cleared), so a refused job
can be asked again. A refined picture makes a run `from-NAME-DIGEST`; an upscaled one goes to
OUT/upscaled/ and is shown in the Upscaled grid (large view, Download)."""
from __future__ import annotations

import os
from pathlib import Path

import gradio as gr

from ...core.errors import UserError
from . import flow, refine_panel, upscale_panel
from .errors import as_text
from .fields import in_status

UPLOAD_CAP = 30 * 2**20  # bytes: as the server's upload guard (guard.IMAGE_BYTES)
SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class DiskImage(gr.Image):
    """gr.Image whose unreadable upload (a truncated PNG, a file gone) is one sentence, not Gradio's
    "Could not preprocess input component"."""

    def get_block_name(self) -> str:
        return "image"

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except FileNotFoundError:
            raise gr.Error("the dropped picture is gone: drop it again", print_exception=False) from None
        except Exception:  # noqa: BLE001 - PIL's many ways of saying "not a whole image"
            raise gr.Error("the dropped picture cannot be read: it is damaged or cut short (save it again, "
                           "as PNG, JPEG or WebP)", print_exception=False) from None


def build(app, ui) -> None:
    with gr.Row(equal_height=False):
        ui.from_disk = DiskImage(label="A picture from disk (PNG, JPEG, WebP; up to 30 MB)", type="filepath",
                                sources=["upload"], image_mode=None, elem_id="from-disk", height=180,
                                buttons=[], scale=2)
        with gr.Column(scale=1, min_width=150):
            ui.disk_refine_btn = gr.Button("Refine it", size="sm", elem_id="disk-refine")
            ui.disk_upscale_btn = gr.Button("Upscale it", size="sm", elem_id="disk-upscale")


def wire(app, ui) -> None:
    def refine(path, prompt, mode, strength, scale, size, request: gr.Request):
        """Refine a picture from disk (its own prompt and seed when it carries them, else PROMPT)."""
        try:
            source = checked(path)
            own = _has_parameters(source)
            if not own and not (prompt and prompt.strip()):
                raise UserError("this picture carries no generation parameters: write its prompt in Prompt first")
            yield from refine_panel._refine(app, flow.tab_of(request), None, None, mode, strength, scale, size,
                                            source=source, prompt=None if own else prompt,
                                            label="Refine it")
        except UserError as err:
            raise gr.Error(as_text(str(err)), print_exception=False) from None

    refine_out = [ui.refined, ui.compare, ui.status, ui.bar, ui.refined_seeds, ui.disk_refine_btn, ui.stop_btn,
                  ui.result]
    event = ui.disk_refine_btn.click(in_status(refine, refine_out, ui.status), [ui.from_disk, ui.prompt, ui.mode, ui.strength, ui.scale,
                                              ui.refine_size], refine_out, api_name="refine_from_disk",
                                     concurrency_limit=None, show_progress="hidden")
    event.then(_after(app, "Refine it"), ui.result, [ui.disk_refine_btn, ui.stop_btn, ui.run],
               api_visibility="private", queue=False)

    def upscale(path, model, detail=0.0, request: gr.Request = None):
        """Upscale a picture from disk with MODEL; the result goes to OUT/upscaled/."""
        try:
            source = checked(path)
            yield from upscale_panel._upscale(app, flow.tab_of(request), None, None, model, files=[source],
                                              out_dir=str(app.out / "upscaled"), detail=detail,
                                              label="Upscale it")
        except UserError as err:
            raise gr.Error(as_text(str(err)), print_exception=False) from None

    upscale_out = [ui.upscaled, ui.status, ui.bar, ui.disk_upscale_btn, ui.stop_btn, ui.result]
    event = ui.disk_upscale_btn.click(in_status(upscale, upscale_out, ui.status), [ui.from_disk, ui.upscale_model, ui.detail], upscale_out,
                                      api_name="upscale_from_disk", concurrency_limit=None, show_progress="hidden")
    event.then(_after(app, "Upscale it", run=False), ui.result, [ui.disk_upscale_btn, ui.stop_btn],
               api_visibility="private", queue=False)

    # the upload lives while the page shows it: the one it replaces (or a cleared one) is deleted
    shown = gr.State(None)

    def replaced(path, before):
        if before and before != path:
            remove_upload(before)
        return path

    ui.from_disk.change(replaced, [ui.from_disk, shown], shown, api_visibility="private", queue=False)


def _after(app, label: str, run: bool = True):
    """After a job from disk: the button back (the picture stays, to be asked again), and the new run
    opened (refine)."""
    def handler(result, request: gr.Request):
        done = [flow.button(label, busy=False), flow.stop_button(app.busy(flow.tab_of(request)))]
        if run:
            where = (result or {}).get("run_dir") if isinstance(result, dict) else None
            done.append(Path(where).name if where and where != "None" else gr.skip())
        return tuple(done)

    return handler


def upload_folder() -> Path:
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def checked(path) -> str:
    """The uploaded picture's path, once it is known to be an upload of an allowed type and size."""
    if not path:
        raise UserError("drop a picture on “A picture from disk” first")
    file = Path(str(path)).resolve()
    if upload_folder() not in file.parents:
        raise UserError("only a picture dropped on the page can be refined or upscaled from disk")
    if file.suffix.lower() not in SUFFIXES:
        raise UserError(f"{file.suffix or 'that file'} is not a picture this app takes: use PNG, JPEG or WebP")
    try:
        size = file.stat().st_size
    except OSError:
        raise UserError("the dropped picture is gone: drop it again") from None
    if size > UPLOAD_CAP:
        raise UserError(f"the picture is {size / 2**20:.0f} MB: the most the page takes is {UPLOAD_CAP // 2**20} MB")
    return str(file)


def _has_parameters(path: str) -> bool:
    from ...core.images import read_info

    try:
        info = read_info(Path(path))
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: the stage says so in its own words
        return False
    record = info.get("pipeline")
    return bool(isinstance(record, dict) and isinstance(record.get("prompt"), str) and record["prompt"].strip()
                or info.get("parameters"))


def remove_upload(path) -> None:
    """Delete an uploaded file (and its folder, Gradio makes one per upload) — never anything outside
    Gradio's upload folder."""
    if not path:
        return
    try:
        file = Path(str(path)).resolve()
        folder = upload_folder()
        if folder not in file.parents:
            return
        file.unlink(missing_ok=True)
        parent = file.parent
        if parent != folder and folder in parent.parents and not any(parent.iterdir()):
            os.rmdir(parent)
    except OSError:
        pass
