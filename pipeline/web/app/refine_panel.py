"""Refine the picked candidates: each result appears as it is stored, with a before/after slider."""
from __future__ import annotations

import gradio as gr

from ...core.errors import UserError
from ...core.runs import load_picks
from . import flow, grid, pictures
from .candidates import bar
from .errors import on_page
from .fields import Number, Slider, in_status


def build(app, ui) -> None:
    with gr.Row():
        ui.mode = gr.Radio(["hires", "rerender"], value="hires", label="Mode", elem_id="mode",
                           info="hires keeps the composition; rerender draws the seed anew at the new size")
        ui.strength = Slider(0.05, 1.0, value=0.5, step=0.05, label="Strength (hires)", elem_id="strength")
    with gr.Row():
        ui.scale = Number(label="Scale", value=2, minimum=0.25, step=0.25, elem_id="scale")
        ui.refine_size = gr.Textbox(label="or size", placeholder="e.g. 1024x1536", elem_id="refine-size")
    ui.refine_btn = gr.Button("Refine picked", variant="primary", elem_id="refine")
    with gr.Row():
        ui.refined = grid.build(app, "refined", "refine", "Refined")
        ui.compare = gr.ImageSlider(label="Before / after", type="filepath", elem_id="compare", interactive=False)


def wire(app, ui) -> None:
    def refine(run, seeds, mode, strength, scale, size, request: gr.Request):
        """Refine the picks of RUN (or SEEDS, e.g. "3,7"); yields each result as it is stored."""
        yield from _refine(app, flow.tab_of(request), run, seeds, mode, strength, scale, size)

    outputs = [ui.refined, ui.compare, ui.status, ui.bar, ui.refined_seeds, ui.refine_btn, ui.stop_btn, ui.result]
    ui.refine_event = ui.refine_btn.click(
        in_status(refine, outputs, ui.status), [ui.run, ui.refine_seeds, ui.mode, ui.strength, ui.scale,
                                                ui.refine_size], outputs, api_name="refine", concurrency_limit=None, show_progress="hidden")
    ui.refine_event.then(flow.idle(app, "refine"), None, [ui.refine_btn, ui.stop_btn], api_visibility="private",
                         queue=False)


def compare_value(view, refined):
    before = next((c for c in view.candidates if c.seed == refined.seed), None)
    return (str(before.path), str(refined.path)) if before else None


def refined_value(view, paths=None):
    """The run's refined pictures (newest call's first when ``paths`` orders them)."""
    shown = view.refined if paths is None else [r for p in paths for r in view.refined if str(r.path) == p]
    order = [str(r.path) for r in shown]
    return grid.view_value(view, "refine", order), order


def _refine(app, tab, run, seeds, mode, strength, scale, size, source=None, prompt=None, label="Refine picked"):
    """One refine per picture, so Stop ends it between pictures; ``source``: a picture from disk."""
    from ...core.seeds import parse_seeds
    from ...core.sizes import parse_size

    with on_page():
        target = parse_size(size.strip()) if size and size.strip() else None
        if source is None:
            run_dir = app.run_dir(run)
            chosen = parse_seeds(seeds.strip(), variations=True) if seeds and seeds.strip() else load_picks(run_dir)
            if not chosen:
                raise UserError("pick candidates first: click them in the gallery")
        else:
            run_dir, chosen = None, [None]
    options = {"mode": mode, "strength": float(strength), "scale": None if target else float(scale or 2),
               "size": target}
    clock = flow.Clock()

    def work(ticket, report):
        done = {"computed": 0, "stored": 0, "paths": [], "seeds": [], "run_dir": run_dir}
        for seed in chosen:
            if ticket.stop.is_set():
                break
            with app.device() as pipeline:
                if source is None:
                    result = pipeline.refine([seed], run=str(run_dir), **options)
                else:
                    result = pipeline.refine(source=source, prompt=prompt, **options)
            done["run_dir"] = result.run_dir
            done["computed"] += result.computed
            done["stored"] += result.stored
            done["seeds"].append(seed)
            done["paths"] += [str(item.path) for item in result.items if str(item.path) not in done["paths"]]
            report((result, dict(done)))
        return done

    total = len(chosen)
    summary = None
    for event in flow.run(app, tab, "refine", work):
        if event.kind == "failed":
            text, label, stop = flow.failed(label, event.result)
            yield gr.skip(), gr.skip(), text, "", gr.skip(), label, stop, {"error": event.result}
            return
        if event.kind == "waiting":
            yield gr.skip(), gr.skip(), flow.waiting_text(event.ahead), gr.skip(), gr.skip(), \
                flow.button(f"Waiting · {event.ahead} ahead", busy=True), flow.stop_button(True), gr.skip()
            continue
        if event.kind == "stopping":
            yield gr.skip(), gr.skip(), flow.stopping_text(), gr.skip(), gr.skip(), gr.skip(), \
                flow.stop_button(False), gr.skip()
            continue
        if event.kind == "progress" and not event.reports:
            yield gr.skip(), gr.skip(), f"refining {total} picture{'s' * (total > 1)}…", bar(0, total), gr.skip(), \
                flow.button(f"Refining 1 of {total}", busy=True), flow.stop_button(not event.stopping), gr.skip()
            continue
        if event.kind == "progress":
            for result, summary in event.reports:
                clock.add(sum(item.seconds for item in result.items if not item.cached) or 0.0)
        elif event.result is not None:
            summary = event.result
        if summary is None:
            yield gr.skip(), gr.skip(), "stopped while waiting: nothing was refined", "", gr.skip(), gr.skip(), \
                gr.skip(), gr.skip()
            return
        n = len(summary["seeds"])
        view = pictures.view(summary["run_dir"])
        value, order = refined_value(view, summary["paths"])
        latest = next((r for r in view.refined if str(r.path) == summary["paths"][-1]), None) \
            if summary["paths"] else None
        finished = event.kind == "done"
        stopped = " (stopped)" if finished and n < total else ""
        left = "" if finished else clock.left(total - n)
        status = (f"refined {n} of {total}{stopped} · {summary['computed']} computed, {summary['stored']} from the "
                  f"store{left} · {clock.elapsed():.1f} s")
        button = gr.skip() if finished else flow.button(f"Refining {min(n + 1, total)} of {total}{left}", busy=True)
        yield value, compare_value(view, latest) if latest else None, status, bar(n, total), order, button, \
            gr.skip() if finished else flow.stop_button(not event.stopping), \
            {"stage": "refine", "run_dir": str(summary["run_dir"]), "seeds": summary["seeds"],
             "computed": summary["computed"], "stored": summary["stored"], "files": summary["paths"],
             **({"stopped": True} if stopped else {})}
