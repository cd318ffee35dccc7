"""`pipeline ui`: the browser app. A thin Gradio layer over ``Pipeline``: it holds no stage logic.

    build_app(state) -> gr.Blocks        the page (form, candidates, refine_panel, upscale_panel, runs_panel)
    server.serve(...)                    launch with the safety checks (loopback, auth, files, offline)

Named API endpoints for gradio_client: ``explore``, ``refine``, ``upscale``, ``runs``, ``open_run``.
"""
from __future__ import annotations

from types import SimpleNamespace

from .state import AppState

__all__ = ["AppState", "build_app"]

CSS = """
#candidates .caption-label, #refined .caption-label { font-variant-numeric: tabular-nums; }
footer { display: none !important; }
/* appflow: the running button, the notice of an interrupted run */
.busy { cursor: progress !important; }
#resume { border: 1px solid var(--color-accent); border-radius: var(--radius-md); padding: 4px 8px; }
"""


def build_app(state: AppState):
    import gradio as gr

    from . import (candidates, disk_panel, explore_job, form, keep, pictures, refine_panel, runs_panel, upscale_panel,
                   vary_panel)

    ui = SimpleNamespace()
    with gr.Blocks(title="pipeline", analytics_enabled=False) as demo:
        ui.demo = demo
        ui.shown_seeds = gr.State([])
        ui.refined_seeds = gr.State([])
        gr.HTML("<h2 style='margin:0'>pipeline</h2><p style='margin:0'>explore many candidates, pick, "
                "refine and upscale — cached on disk</p>", padding=False)
        with gr.Tabs(selected="explore") as ui.tabs:
            with gr.Tab("Explore", id="explore"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=320):
                        form.build(state, ui)
                        with gr.Accordion("Picture", open=True):
                            ui.params = gr.JSON(label="Parameters", elem_id="params")
                            ui.command = gr.Code(label="Make it again from the CLI", language="shell",
                                                 interactive=False, lines=3, max_lines=8, wrap_lines=True,
                                                 elem_id="command")
                    with gr.Column(scale=2):
                        ui.run = gr.Textbox(label="Run", interactive=False, elem_id="run",
                                            info=f"a folder of {state.out}")
                        candidates.build_gallery(state, ui)
                        with gr.Accordion("Refine picked", open=True):
                            ui.refine_seeds = gr.Textbox(label="Seeds", placeholder="empty: the picked ones",
                                                         elem_id="refine-seeds")
                            refine_panel.build(state, ui)
                            vary_panel.build(state, ui)
                        with gr.Accordion("Upscale", open=True):
                            upscale_panel.build(state, ui)
                            disk_panel.build(state, ui)
                        with gr.Accordion("Last result", open=False):
                            ui.result = gr.JSON(label="Result", elem_id="result")
            with gr.Tab("Runs", id="runs"):
                runs_panel.build(state, ui)

        def opened(view):
            order = [c.seed for c in view.candidates]
            refined, refined_order = refine_panel.refined_value(view)
            compare = refine_panel.compare_value(view, view.refined[-1]) if view.refined else None
            d = view.data
            return (view.run_dir.name, candidates.gallery_value(view.candidates, order, view.picks), order,
                    candidates.picks_text(view.picks), refined, refined_order, compare,
                    upscale_panel.upscaled_value(view), d.get("prompt", ""), d.get("negative", ""),
                    d.get("width", 512), d.get("height", 512), d.get("steps", 8), d.get("guidance", 0),
                    f"opened {view.run_dir.name}: {len(view.candidates)} candidates, {len(view.picks)} picked, "
                    f"{len(view.refined)} refined, {len(view.upscaled)} upscaled", gr.Tabs(selected="explore"))

        ui.open_outputs = [ui.run, ui.candidates, ui.shown_seeds, ui.picks, ui.refined, ui.refined_seeds, ui.compare,
                           ui.upscaled, ui.prompt, ui.negative, ui.width, ui.height, ui.steps, ui.guidance,
                           ui.status, ui.tabs]
        form.wire(state, ui)
        explore_job.wire(state, ui)
        vary_panel.wire(state, ui)
        candidates.wire(state, ui)
        refine_panel.wire(state, ui)
        upscale_panel.wire(state, ui)
        disk_panel.wire(state, ui)
        runs_panel.wire(state, ui, opened)
        keep.wire(state, ui)
    demo.ui = ui  # for tests and embedding
    _ = pictures
    return demo
