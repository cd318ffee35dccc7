"""Vary subtle / strong (the CLI's `pipeline vary`): more candidates like the picked ones (or those
of the Seeds field), made one at a time so Stop ends it between pictures. The variations join the
run's candidates (42v1, 42v2, …) and appear in the grid as each one is stored."""
from __future__ import annotations

import gradio as gr

from ...core.errors import UserError
from ...core.runs import load_picks
from . import candidates, flow, grid, pictures
from .errors import on_page
from .fields import Number, in_status

COUNT = 4  # variations per candidate and click, as Fooocus makes


def build(app, ui) -> None:
    with gr.Row(equal_height=True, elem_id="vary-row"):
        ui.vary_subtle = gr.Button("Vary subtle", size="sm", elem_id="vary-subtle", scale=2)
        ui.vary_strong = gr.Button("Vary strong", size="sm", elem_id="vary-strong", scale=2)
        ui.vary_count = Number(value=COUNT, label="Variations", precision=0, minimum=1, maximum=16, elem_id="vary-count", scale=1,
                                  min_width=70, show_label=False, container=False)
        gr.Markdown("variations of each picked", elem_id="vary-each")


def wire(app, ui) -> None:
    outputs = [ui.candidates, ui.status, ui.bar, None, ui.stop_btn, ui.result]
    for button, strength in ((ui.vary_subtle, "subtle"), (ui.vary_strong, "strong")):
        mine = [*outputs[:3], button, *outputs[4:]]
        event = button.click(in_status(_handler(app, strength), mine, ui.status), [ui.run, ui.refine_seeds, ui.vary_count], mine,
                             api_name=f"vary_{strength}", concurrency_limit=None, show_progress="hidden")
        event.then(flow.idle(app, f"vary_{strength}"), None, [button, ui.stop_btn], api_visibility="private",
                   queue=False)

    # the large view's Vary subtle / strong on one candidate (the grid's "vary" event)
    def from_view(count, evt: gr.EventData, request: gr.Request):
        data = getattr(evt, "_data", None) or {}
        strength = data.get("strength") if data.get("strength") in ("subtle", "strong") else "subtle"
        yield from _vary(app, flow.tab_of(request), data.get("run"), str(data.get("seed") or ""), count, strength)

    if hasattr(ui.candidates, "js_on_load") and "vary" in (ui.candidates.js_on_load or ""):
        mine = [*outputs[:3], ui.vary_subtle, *outputs[4:]]
        event = ui.candidates.vary(in_status(from_view, mine, ui.status), ui.vary_count, mine,
                                   api_visibility="private", concurrency_limit=None, show_progress="hidden")
        event.then(flow.idle(app, "vary_subtle"), None, [ui.vary_subtle, ui.stop_btn], api_visibility="private",
                   queue=False)


def _handler(app, strength: str):
    def vary(run, seeds, count, request: gr.Request):
        """More candidates like the picked ones of RUN (or SEEDS): COUNT each."""
        yield from _vary(app, flow.tab_of(request), run, seeds, count, strength)

    return vary


def _vary(app, tab, run, seeds, count, strength):
    from ...core.seeds import parse_seeds

    with on_page():
        run_dir = app.run_dir(run)
        parents = parse_seeds(seeds.strip(), variations=True) if seeds and seeds.strip() else load_picks(run_dir)
        if not parents:
            raise UserError("pick candidates first: Vary makes more like the picked ones")
        count = int(count or COUNT)
        if not 1 <= count <= 16:
            raise UserError("give 1 to 16 variations each")
    total = len(parents) * count

    def work(ticket, report):
        made = []
        for parent in parents:
            for k in range(1, count + 1):  # the first k-1 are in the store already: one new picture a call
                if ticket.stop.is_set():
                    return made
                with app.device() as pipeline:
                    result = pipeline.vary([parent], count=k, strength=strength, run=str(run_dir))
                item = result.items[-1]
                made.append(item)
                report(item)
        return made

    clock, done, made = flow.Clock(), 0, None
    label = f"Vary {strength}"
    for event in flow.run(app, tab, f"vary_{strength}", work):
        if event.kind == "failed":
            text, label, stop = flow.failed(label, event.result)
            yield grid.view_value(pictures.view(run_dir), "explore"), text, "", label, stop, {"error": event.result}
            return
        if event.kind == "waiting":
            yield gr.skip(), flow.waiting_text(event.ahead), gr.skip(), \
                flow.button(f"Waiting · {event.ahead} ahead", busy=True), flow.stop_button(True), gr.skip()
            continue
        if event.kind == "stopping":
            yield gr.skip(), flow.stopping_text(), gr.skip(), gr.skip(), flow.stop_button(False), gr.skip()
            continue
        if event.kind == "progress":
            for item in event.reports:
                done += 1
                if not item.cached:
                    clock.add(item.seconds)
            left = clock.left(total - done)
            if not event.reports:
                yield gr.skip(), f"varying ({strength}) {len(parents)} picked: {total} pictures…", \
                    candidates.bar(0, total), flow.button(f"{label} 1 of {total}", busy=True), \
                    flow.stop_button(not event.stopping), gr.skip()
                continue
            view = pictures.view(run_dir)
            yield grid.view_value(view, "explore"), \
                f"{done} of {total} variations ({strength}){left} · {clock.elapsed():.0f} s", \
                candidates.bar(done, total), flow.button(f"{label} {min(done + 1, total)} of {total}{left}",
                                                         busy=True), flow.stop_button(not event.stopping), gr.skip()
            continue
        made = event.result
    if made is None:
        yield gr.skip(), "stopped while waiting: nothing was varied", "", gr.skip(), gr.skip(), gr.skip()
        return
    computed = sum(not item.cached for item in made)
    stopped = " (stopped)" if len(made) < total else ""
    view = pictures.view(run_dir)
    yield grid.view_value(view, "explore"), \
        f"{len(made)} of {total} variations ({strength}){stopped} · {computed} computed, " \
        f"{len(made) - computed} from the store · {clock.elapsed():.1f} s", candidates.bar(len(made), total), \
        gr.skip(), gr.skip(), {"stage": "vary", "run_dir": str(run_dir), "strength": strength,
                               "seeds": [item.seed for item in made], "computed": computed,
                               "stored": len(made) - computed, "files": [str(item.path) for item in made]}
