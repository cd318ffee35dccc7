"""Refine the picked candidates: each result appears as it is stored, with a before/after slider."""
from __future__ import annotations

import time

import gradio as gr

from ...errors import UserError
from ...runs import load_picks
from . import grid, pictures
from .errors import on_page
from .explore_tab import bar


def build(app, ui) -> None:
    with gr.Row():
        ui.mode = gr.Radio(["hires", "rerender"], value="hires", label="Mode", elem_id="mode",
                           info="hires keeps the composition; rerender draws the seed anew at the new size")
        ui.strength = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="Strength (hires)", elem_id="strength")
    with gr.Row():
        ui.scale = gr.Number(label="Scale", value=2, minimum=0.25, step=0.25, elem_id="scale")
        ui.refine_size = gr.Textbox(label="or size", placeholder="e.g. 1024x1536", elem_id="refine-size")
    ui.refine_btn = gr.Button("Refine picked", variant="primary", elem_id="refine")
    with gr.Row():
        ui.refined = grid.build(app, "refined", "refine", "Refined")
        ui.compare = gr.ImageSlider(label="Before / after", type="filepath", elem_id="compare", interactive=False)


def wire(app, ui) -> None:
    def refine(run, seeds, mode, strength, scale, size, progress=gr.Progress()):
        """Refine the picks of RUN (or SEEDS, e.g. "3,7"); yields each result as it is stored."""
        yield from _refine(app, progress, run, seeds, mode, strength, scale, size)

    ui.refine_btn.click(refine, [ui.run, ui.refine_seeds, ui.mode, ui.strength, ui.scale, ui.refine_size],
                        [ui.refined, ui.compare, ui.status, ui.bar, ui.refined_seeds, ui.result],
                        api_name="refine",
                        concurrency_id="device", show_progress="minimal", show_progress_on=ui.status)


def compare_value(view, refined):
    before = next((c for c in view.candidates if c.seed == refined.seed), None)
    return (str(before.path), str(refined.path)) if before else None


def refined_value(view, paths=None):
    """The run's refined pictures (newest call's first when ``paths`` orders them)."""
    shown = view.refined if paths is None else [r for p in paths for r in view.refined if str(r.path) == p]
    order = [str(r.path) for r in shown]
    return grid.view_value(view, "refine", order), order


def _refine(app, progress, run, seeds, mode, strength, scale, size):
    from ...jobs import parse_seeds, parse_size

    with on_page():
        run_dir = app.run_dir(run)
        chosen = parse_seeds(seeds.strip()) if seeds and seeds.strip() else load_picks(run_dir)
        if not chosen:
            raise UserError("pick candidates first: click them in the gallery")
        target = parse_size(size.strip()) if size and size.strip() else None
    started = time.monotonic()
    paths: list[str] = []
    computed = stored = 0
    for n, seed in enumerate(chosen):
        progress((n, len(chosen)), desc="refine", unit="pictures")
        with on_page(), app.device() as pipeline:
            result = pipeline.refine([seed], run=str(run_dir), mode=mode, strength=float(strength),
                                     scale=None if target else float(scale or 2), size=target)
        computed, stored = computed + result.computed, stored + result.stored
        paths += [str(item.path) for item in result.items if str(item.path) not in paths]
        view = pictures.view(run_dir)
        value, order = refined_value(view, paths)
        latest = next((r for r in view.refined if str(r.path) == paths[-1]), None)
        status = (f"refined {n + 1} of {len(chosen)} · {computed} computed, {stored} from the store · "
                  f"{time.monotonic() - started:.1f} s")
        yield value, compare_value(view, latest) if latest else None, status, bar(n + 1, len(chosen)), order, \
            {"stage": "refine", "run_dir": str(run_dir), "seeds": chosen[: n + 1], "computed": computed,
             "stored": stored, "files": paths}
