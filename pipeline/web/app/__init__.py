"""`pipeline ui`: the browser app. A thin Gradio layer over ``Pipeline``: it holds no stage logic.

    build_app(state) -> gr.Blocks        the page (form, candidates, refine/vary/upscale/disk panels, runs_panel)
    server.serve(...)                    launch with the safety checks (loopback, auth, files, offline)

Named API endpoints for gradio_client: ``explore``, ``refine``, ``upscale``, ``runs``, ``open_run``, ``inpaint``,
``fix_faces``, ``inpaint_load``.
"""
from __future__ import annotations

from types import SimpleNamespace

from .state import AppState

__all__ = ["AppState", "build_app"]


def css() -> str:
    """The page's styles (assets/app.css): layout, the grids, the large view, the status line."""
    from importlib import resources

    return resources.files("pipeline.web").joinpath("assets", "app.css").read_text(encoding="utf-8")


CSS = css()


def build_app(state: AppState):
    import gradio as gr

    from . import (candidates, disk_panel, explore_job, form, grid, inpaint_panel, keep, refine_panel, runs_panel,
                   upscale_panel, vary_panel)

    ui = SimpleNamespace()
    with gr.Blocks(title="pipeline", analytics_enabled=False, fill_width=True) as demo:
        ui.demo = demo
        ui.refined_seeds = gr.State([])
        gr.HTML("<div id='app-head'><b>pipeline</b>explore many candidates, pick, refine and upscale — "
                "cached on disk</div>", padding=False)
        with gr.Tabs(selected="explore") as ui.tabs:
            with gr.Tab("Explore", id="explore"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=0, min_width=380, elem_id="form-col"):
                        form.build(state, ui)
                    with gr.Column(scale=1, min_width=480):
                        candidates.build_gallery(state, ui)
                        vary_panel.build(state, ui)  # acts on the picks: right under the grid
                        with gr.Accordion("Refine picked", open=True, elem_id="refine-panel"):
                            ui.refine_seeds = gr.Textbox(label="Seeds", placeholder="empty: the picked ones",
                                                         elem_id="refine-seeds")
                            refine_panel.build(state, ui)
                        with gr.Accordion("Upscale", open=True, elem_id="upscale-panel"):
                            upscale_panel.build(state, ui)
                        # its Refine it / Upscale it use the settings of both panels above: a panel of its own
                        with gr.Accordion("A picture from disk", open=True, elem_id="disk-panel"):
                            disk_panel.build(state, ui)
                        inpaint_panel.build(state, ui)
                        with gr.Accordion("Last result", open=False):
                            ui.result = gr.JSON(label="Result", elem_id="result")
            with gr.Tab("Runs", id="runs"):
                runs_panel.build(state, ui)
        # one status line that stays in view (the form builds ui.status and ui.bar; they live here)
        with gr.Row(elem_id="statusline"):
            ui.run = gr.Textbox(show_label=False, container=False, interactive=False, elem_id="run", scale=0,
                                min_width=220, placeholder="no run yet")
            for component in (ui.status, ui.bar):
                component.unrender()
                component.render()
            ui.status.show_label, ui.status.container = False, False

        def opened(view):
            refined, refined_order = refine_panel.refined_value(view)
            compare = refine_panel.compare_value(view, view.refined[-1]) if view.refined else None
            d = view.data
            return (view.run_dir.name, grid.view_value(view, "explore"), refined, refined_order, compare,
                    upscale_panel.upscaled_value(view), d.get("prompt", ""), d.get("negative", ""),
                    d.get("width", 512), d.get("height", 512), d.get("steps", 8), d.get("guidance", 0),
                    f"opened {view.run_dir.name}: {len(view.candidates)} candidates, {len(view.picks)} picked, "
                    f"{len(view.refined)} refined, {len(view.upscaled)} upscaled", gr.Tabs(selected="explore"))

        ui.open_outputs = [ui.run, ui.candidates, ui.refined, ui.refined_seeds, ui.compare,
                           ui.upscaled, ui.prompt, ui.negative, ui.width, ui.height, ui.steps, ui.guidance,
                           ui.status, ui.tabs]
        form.wire(state, ui)
        explore_job.wire(state, ui)
        candidates.wire(state, ui)
        vary_panel.wire(state, ui)
        refine_panel.wire(state, ui)
        upscale_panel.wire(state, ui)
        disk_panel.wire(state, ui)
        inpaint_panel.wire(state, ui)
        runs_panel.wire(state, ui, opened)
        keep.wire(state, ui)
    demo.ui = ui  # for tests and embedding
    return demo
