"""The explore job: the form's values checked and turned into a request (the seeds spelled out, so
it can be asked again), its turn in the line, Stop, and a journal entry while it runs (a restarted
server offers to continue a run that stopped half way). ``events`` is what the grid consumes;
``wire`` connects the Explore, Continue and Stop buttons."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from . import candidates, flow, form, pictures
from .errors import as_page_error
from .fields import in_status


@dataclass
class Update:
    kind: str  # waiting, progress, stopping, done
    text: str  # the status line
    button: str  # the running button's text
    items: list = None  # the candidates just stored (progress)
    run_dir: object = None
    result: object = None
    done: int = 0
    total: int = 0
    stopping: bool = False  # Stop was pressed (a progress update after it keeps Stop off)


def request_of(app, prompt, negative, width, height, count, seeds, steps, guidance, seed=form.RANDOM,
               batch="auto", variance=0.0, loras=None, control=None) -> dict:
    """The form's values as an explore request (what the journal keeps to continue it)."""
    from ...core.errors import UserError
    from ...core.sizes import check_size

    if not prompt or not str(prompt).strip():
        raise UserError("write a prompt first")
    which = form.seeds_of(count, seeds, seed)
    try:
        size = (int(width), int(height))
    except (TypeError, ValueError):
        raise UserError("give the width and height in pixels, e.g. 512 and 512") from None
    check_size(*size)
    batch = "auto" if batch in (None, "", "auto") else int(batch)
    request = {"prompt": str(prompt), "negative": str(negative or ""), "size": list(size), "seeds": which["seeds"],
               "steps": int(steps), "guidance": float(guidance or 0), "batch": batch,
               "variance": float(variance or 0)}
    loras = form.loras_of(app, loras or [])
    if loras:
        request["loras"] = loras
    from .control_panel import control_of

    control = control_of(control)
    if control:
        request["control"] = control
    if "base" in which:
        request["base"] = which["base"]
    return request


def events(app, tab: str, request: dict, run: str | None = None):
    """Updates of one explore: its place in line, each candidate as it is stored, the result."""
    total = len(request["seeds"])
    clock = flow.Clock()
    kwargs = {"negative": request["negative"], "size": tuple(request["size"]), "steps": request["steps"],
              "guidance": request["guidance"], "batch": request["batch"], "variance": request["variance"]}
    if request.get("loras"):
        kwargs["loras"] = [tuple(pair) for pair in request["loras"]]
    if request.get("control"):
        kwargs["control"] = dict(request["control"])

    def work(ticket, report):
        with app.device() as pipeline:
            spec = pipeline.explore_spec(request["prompt"], seeds=request["seeds"], **kwargs)
            return pipeline.explore(spec, run=run, on_picture=report, stop=ticket.stop)

    def started(ticket):
        app.journal_start(ticket, request)
        if run:
            app.journal_run(ticket, run)

    done, run_dir, ticket = 0, None, None
    try:
        for event in flow.run(app, tab, "explore", work, on_start=started):
            ticket = event.ticket
            if event.kind == "waiting":
                text = flow.waiting_text(event.ahead)
                yield Update("waiting", text, f"Waiting · {event.ahead} ahead")
            elif event.kind == "failed":
                yield Update("failed", event.result, "", done=done, total=total)
                return
            elif event.kind == "stopping":
                yield Update("stopping", f"{done} of {total} candidates · {flow.stopping_text()}", "",
                             done=done, total=total)
            elif event.kind == "progress":
                for item in event.reports:
                    if run_dir is None:
                        run_dir = item.path.parent.parent
                        app.journal_run(ticket, run_dir.name)
                    if not item.cached:
                        clock.add(item.seconds)
                done += len(event.reports)
                left = clock.left(total - done)
                stopping = f" · {flow.stopping_text()}" if ticket.stop.is_set() else ""
                loading = " · the model is loading (the first explore after start)" \
                    if not done and not stopping and not app.model_loaded() else ""  # 14 s of "0 of 8" said nothing
                yield Update("progress",
                             f"{done} of {total} candidates{left}{loading} · {clock.elapsed():.0f} s{stopping}",
                             f"Exploring {done} of {total}{left}", event.reports, run_dir, done=done, total=total,
                             stopping=bool(stopping))
            else:
                result = event.result
                if result is None:
                    yield Update("done", "stopped while waiting: nothing was explored", "", done=0, total=total)
                    return
                stopped = " (stopped)" if len(result.items) < total else ""
                base = f" · seeds from {request['base']}" if "base" in request else ""
                yield Update("done", f"{len(result.items)} of {total} candidates{stopped} · {result.computed} "
                                     f"computed, {result.stored} from the store · {clock.elapsed():.1f} s{base}", "",
                             run_dir=result.run_dir, result=result, done=len(result.items), total=total)
    finally:
        if ticket is not None:
            app.journal_end(ticket)


def _outputs(app, tab, request, run=None):
    """The explore event's outputs: [candidates, status, bar, run, button, stop, result]. The grid
    grows by the new candidates only (candidates.Stream; flow.run sends at most ~3 updates a second)."""
    from . import grid

    stream = candidates.Stream(request["size"])
    if "base" in request:
        app.last_base_seed[tab] = request["base"]
    cleared = False
    for update in events(app, tab, request, run):
        if update.kind == "waiting":
            yield (gr.skip(), update.text, gr.skip(), gr.skip(), flow.button(update.button, busy=True),
                   flow.stop_button(True), gr.skip())
        elif update.kind == "stopping":
            yield (gr.skip(), update.text, gr.skip(), gr.skip(), gr.skip(), flow.stop_button(False), gr.skip())
        elif update.kind == "failed":
            text, label, stop = flow.failed(form.LABELS["explore"], update.text)
            yield (stream.value() if stream.run_dir else gr.skip(), text, "", gr.skip(), label, stop,
                   {"error": update.text})
        elif update.kind == "progress":
            stream.add(update.items)
            if stream.run_dir is None:
                value = gr.skip() if cleared else grid.value(None, "explore")  # a new run: the grid empties
                cleared = True
            else:
                value = stream.value()
            yield (value, update.text, candidates.bar(update.done, update.total),
                   stream.run_dir.name if stream.run_dir else gr.skip(), flow.button(update.button, busy=True),
                   flow.stop_button(not update.stopping), gr.skip())
        elif update.result is None:
            yield (gr.skip(), update.text, "", gr.skip(), gr.skip(), gr.skip(), gr.skip())
        else:
            result = update.result
            extra = {"base_seed": request["base"]} if "base" in request else {}
            if update.run_dir is None:  # stopped before the first picture
                yield (gr.skip(), update.text, "", gr.skip(), gr.skip(), gr.skip(),
                       {**pictures.result_json(result), **extra})
                continue
            yield (stream.final(result), update.text, candidates.bar(update.done, update.total), update.run_dir.name,
                   gr.skip(), gr.skip(), {**pictures.result_json(result), **extra})


def wire(app, ui) -> None:
    ui.explore_inputs = [ui.prompt, ui.negative, ui.width, ui.height, ui.count, ui.seeds, ui.steps, ui.guidance,
                         ui.seed, ui.batch, ui.variance, ui.loras, ui.control]
    outputs = [ui.candidates, ui.status, ui.bar, ui.run, ui.explore_btn, ui.stop_btn, ui.result]

    def explore(prompt, negative, width, height, count, seeds, steps, guidance, seed=form.RANDOM, batch="auto",
                variance=0.0, loras=None, control=None, request: gr.Request = None):
        """Render candidates of PROMPT (Count from the base seed, -1 random, or SEEDS); yields the
        gallery as each one is stored. The result's base_seed is the base a Count used."""
        tab = flow.tab_of(request)
        try:
            asked = request_of(app, prompt, negative, width, height, count, seeds, steps, guidance, seed, batch,
                               variance, loras, control)
        except Exception as err:  # noqa: BLE001 - a user error: one sentence
            as_page_error(err)
        if asked["negative"] and not asked["guidance"]:
            gr.Warning("the negative prompt has no effect with guidance 0 (Turbo's default); "
                       "set guidance above 0 to use it")
        yield from _outputs(app, tab, asked)

    ui.explore_event = ui.explore_btn.click(in_status(explore, outputs, ui.status), ui.explore_inputs, outputs,
                                            api_name="explore",
                                            concurrency_limit=None, show_progress="hidden")
    ui.explore_event.then(flow.idle(app, "explore"), None, [ui.explore_btn, ui.stop_btn], api_visibility="private",
                          queue=False)

    def stop(request: gr.Request):
        """Stop this tab's jobs: the running one after its current picture, waiting ones at once. The
        jobs say so in the status themselves (flow.run's "stopping" event), in order with their updates."""
        app.stop(flow.tab_of(request))
        return flow.stop_button(False)

    ui.stop_btn.click(stop, None, [ui.stop_btn], api_visibility="private", queue=False)

    # restart recovery: an explore of an earlier server that stopped half way, offered on load
    def offer():
        found = app.interrupted()
        if not found:
            return gr.update(visible=False), "", None
        first = found[0]
        more = f" ({len(found) - 1} more under Runs)" if len(found) > 1 else ""
        text = (f"The server stopped while exploring run **{first['run']}**: it holds {first['done']} of "
                f"{first['asked']} pictures.{more}")
        return gr.update(visible=True), text, first

    ui.demo.load(offer, None, [ui.resume_box, ui.resume_text, ui.resume_id], api_visibility="private",
                 queue=False)

    def resume(found, request: gr.Request):
        """Continue an interrupted explore: the stored pictures come from the store, the rest are made."""
        if not found or not any(f["id"] == found["id"] for f in app.interrupted()):
            raise gr.Error("that run was continued already, or it is gone", print_exception=False)
        app.forget_interrupted(found["id"])
        yield from _outputs(app, flow.tab_of(request), found["request"], run=found["run"])

    ui.resume_btn.click(form_of_request, ui.resume_id, [ui.resume_box, *form_fields(ui)], api_visibility="private",
                        queue=False)
    ui.resume_btn.click(resume, ui.resume_id, outputs, api_visibility="private", concurrency_limit=None,
                        show_progress="hidden").then(flow.idle(app, "explore"), None, [ui.explore_btn, ui.stop_btn],
                                                     api_visibility="private", queue=False)

    def dismiss(found):
        if found:
            app.forget_interrupted(found["id"])
        return gr.update(visible=False)

    ui.resume_dismiss.click(dismiss, ui.resume_id, ui.resume_box, api_visibility="private", queue=False)


def form_fields(ui) -> list:
    return [ui.prompt, ui.negative, ui.width, ui.height, ui.seeds, ui.steps, ui.guidance, ui.variance]


def form_of_request(found):
    """The form as the interrupted explore had it (the notice goes)."""
    if not found:
        return [gr.update(visible=False)] + [gr.skip()] * 8
    from ...core.seeds import seed_ranges

    r = found["request"]
    return (gr.update(visible=False), r["prompt"], r["negative"], r["size"][0], r["size"][1],
            seed_ranges(r["seeds"]), r["steps"], r["guidance"], r.get("variance", 0))
