"""The explore form (the left column). The candidates grid and the explore event are in candidates.py."""
from __future__ import annotations

import gradio as gr

from .candidates import bar  # noqa: F401 - the panels import it from here

SIZES = {"512²": (512, 512), "768²": (768, 768), "1024²": (1024, 1024), "Portrait": (832, 1216),
         "Landscape": (1216, 832)}
NEGATIVE_OFF = "used only with guidance above 0 (Turbo's default is 0)"


def build(app, ui) -> None:
    """The left column: the form. ``ui`` collects the components other panels use."""
    ui.prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red fox in snow", elem_id="prompt")
    ui.negative = gr.Textbox(label="Negative prompt", lines=1, interactive=False, info=NEGATIVE_OFF,
                             elem_id="negative")
    with gr.Row():
        presets = [gr.Button(name, size="sm", min_width=60) for name in SIZES]
    with gr.Row():
        ui.width = gr.Number(label="Width", value=512, precision=0, step=16, minimum=16, elem_id="width")
        ui.height = gr.Number(label="Height", value=512, precision=0, step=16, minimum=16, elem_id="height")
    with gr.Row():
        ui.count = gr.Number(label="Count", value=8, precision=0, minimum=1, elem_id="count")
        ui.seeds = gr.Textbox(label="or seeds", placeholder="e.g. 1,2,10-20", elem_id="seeds")
    with gr.Row():
        ui.steps = gr.Slider(1, 50, value=8, step=1, label="Steps", elem_id="steps")
        ui.guidance = gr.Slider(0, 10, value=0, step=0.5, label="Guidance", elem_id="guidance")
    with gr.Row():
        ui.explore_btn = gr.Button("Explore", variant="primary", elem_id="explore")
        ui.stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
    ui.status = gr.Textbox(label="Status", interactive=False, lines=1, elem_id="status")
    ui.bar = gr.HTML("", elem_id="bar", padding=False)
    for button, (w, h) in zip(presets, SIZES.values()):
        button.click(lambda w=w, h=h: (w, h), None, [ui.width, ui.height], api_visibility="private", queue=False)
    ui.guidance.change(_negative_state, ui.guidance, ui.negative, api_visibility="private", queue=False)


def _negative_state(guidance):
    on = bool(guidance) and guidance > 0
    return gr.update(interactive=on, info="what to steer away from" if on else NEGATIVE_OFF)
