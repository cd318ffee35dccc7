"""The form, kept in the browser (localStorage): a reload, a closed tab or a restarted server finds
it as it was. Only the form's own values are kept (no pictures, no run state)."""
from __future__ import annotations

import gradio as gr

STORAGE_KEY = "pipeline-form-v1"
# BrowserState encrypts what it stores with this key; a fixed one, so that a restarted server can read
# what the previous one stored (these are the user's own form values, in the user's own browser)
SECRET = "pipeline-form"

FIELDS = ("prompt", "negative", "aspect", "width", "height", "count", "seed", "seeds", "steps", "guidance", "batch",
          "variance", "mode", "strength", "scale", "refine_size", "upscale_model")


def wire(app, ui) -> None:
    fields = [getattr(ui, name) for name in FIELDS if hasattr(ui, name)]
    names = [name for name in FIELDS if hasattr(ui, name)]
    ui.kept = gr.BrowserState({}, storage_key=STORAGE_KEY, secret=SECRET)

    def save(*values):
        return dict(zip(names, values))

    gr.on([field.change for field in fields], save, fields, ui.kept, api_visibility="private", queue=False,
          trigger_mode="always_last")

    def restore(kept):
        if not isinstance(kept, dict) or not kept:
            return [gr.skip()] * len(fields)
        return [kept[name] if name in kept and kept[name] is not None else gr.skip() for name in names]

    ui.demo.load(restore, ui.kept, fields, api_visibility="private", queue=False)
