"""Upscale the refined pictures with Real-ESRGAN (a preset or a weights file in weights/)."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from ...core.errors import UserError
from ...core.runs import load_run
from . import flow, grid, pictures
from .candidates import bar
from .errors import on_page
from .fields import Slider, in_status


def model_choices() -> list[str]:
    from ...models.upscaler_weights import PRESETS, WEIGHT_SUFFIXES, weights_dir

    choices = list(PRESETS)
    try:
        files = sorted(p.name for p in weights_dir().iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES)
    except OSError:
        files = []
    stems = {name.rsplit(".", 1)[0] for name in files}
    return choices + sorted(stems - set(PRESETS))


def build(app, ui) -> None:
    with gr.Row():
        ui.upscale_model = gr.Dropdown(model_choices(), value="realesrgan-x4plus", label="Upscaler",
                                       allow_custom_value=True, elem_id="upscale-model",
                                       info="a preset, or the name of a weights file in weights/")
        ui.upscale_btn = gr.Button("Upscale refined", variant="primary", elem_id="upscale")
    # Detail: after Real-ESRGAN, the diffusion model re-draws fine detail tile by tile (the `detail` branch);
    # shown only where Pipeline.upscale takes detail=
    ui.detail = Slider(0, 1, value=0, step=0.05, label="Detail", elem_id="detail", visible=supports_detail(app),
                          info="0: off (×4). Above 0 the diffusion model re-draws fine detail (0.2–0.4; slower) "
                               "and the upscale is ×2; it replaces the seed's earlier upscale in the run "
                               "(zip that first to keep both)")
    ui.upscaled = grid.build(app, "upscaled", "upscale", "Upscaled")


def wire(app, ui) -> None:
    def upscale(run, seeds, model, detail=0.0, request: gr.Request = None):
        """Upscale the refined pictures of RUN (or those of SEEDS); yields each one as it is stored.
        DETAIL (0: off) re-draws fine detail with the diffusion model where the server supports it."""
        yield from _upscale(app, flow.tab_of(request), run, seeds, model, detail=detail)

    outputs = [ui.upscaled, ui.status, ui.bar, ui.upscale_btn, ui.stop_btn, ui.result]
    ui.upscale_event = ui.upscale_btn.click(
        in_status(upscale, outputs, ui.status), [ui.run, ui.refine_seeds, ui.upscale_model, ui.detail], outputs,
        api_name="upscale",
        concurrency_limit=None, show_progress="hidden")
    ui.upscale_event.then(flow.idle(app, "upscale"), None, [ui.upscale_btn, ui.stop_btn], api_visibility="private",
                          queue=False)


def upscaled_value(view):
    return grid.view_value(view, "upscale")


def files_value(files: list[str]):
    """The Upscaled grid showing pictures from disk, upscaled into OUT/upscaled/ (no run): each card
    opens the large view with Download."""
    from PIL import Image

    shown = []
    for file in files:
        path = Path(file)
        try:
            with Image.open(path) as image:
                size = image.size
        except OSError:
            continue
        shown.append(pictures.Shown("upscale", None, path, None, size, {}))
    if not shown:
        return gr.skip()
    return grid.value(shown[0].path.parent, "upscale", shown)


def _refined_seeds(run_dir) -> list:
    from ...core.runs import stage_pictures

    seeds = [item.get("seed") for item in stage_pictures(load_run(run_dir), "refine")]
    return list(dict.fromkeys(s for s in seeds if isinstance(s, (int, str)) and not isinstance(s, bool)))


def supports_detail(app) -> bool:
    import inspect

    try:
        return "detail" in inspect.signature(app.pipeline.upscale).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def detail_option(app, detail) -> dict:
    """{"detail": strength} when on (and supported), else nothing: the call stays as before."""
    detail = float(detail or 0)
    if not detail:
        return {}
    if not supports_detail(app):
        raise UserError("this server's pipeline has no Detail upscale: leave Detail at 0")
    if not 0 < detail <= 1:
        raise UserError(f"Detail {detail:g} is out of range: give 0 (off) to 1")
    return {"detail": detail}


def check_model(model) -> None:
    choices = model_choices()
    if model not in choices:  # only presets and files of weights/: no path from the page
        raise UserError(f"unknown upscaler weights {model!r}: use one of {', '.join(choices)}")


def _upscale(app, tab, run, seeds, model, files=None, out_dir=None, detail=0.0, label="Upscale refined"):
    """One upscale per picture; Stop ends it between tiles (the tile under way is dropped, the
    finished pictures are stored and recorded). ``files``: pictures from disk (to ``out_dir``)."""
    from ...core.seeds import parse_seeds

    with on_page():
        check_model(model)
        extra = detail_option(app, detail)
        if files is None:
            run_dir = app.run_dir(run)
            chosen = (parse_seeds(seeds.strip(), variations=True) if seeds and seeds.strip()
                      else _refined_seeds(run_dir))
            if not chosen:
                raise UserError("refine pictures first: upscale works on the refined pictures")
        else:
            run_dir, chosen = None, list(files)
    total = len(chosen)

    def work(ticket, report):
        done = {"computed": 0, "stored": 0, "files": [], "seeds": [], "stopped": False}
        place = {} if run_dir is not None else {"out_dir": out_dir}  # a run's pictures go to the run
        with app.device() as pipeline:  # how long, before it starts (a probe timed on this machine)
            expected = pipeline.estimate_upscale(**_what(run_dir, chosen), upscaler=model or None, **extra)
        report(("estimate", expected))
        for n, one in enumerate(chosen):
            if ticket.stop.is_set():
                done["stopped"] = True
                break

            def tiles(finished, planned, n=n):
                report(("tiles", n, finished, planned))
                if ticket.stop.is_set() and finished < planned:
                    raise flow.Stopped  # the stage keeps what was finished before this picture

            try:
                with app.device() as pipeline:
                    result = pipeline.upscale(**_what(run_dir, [one]), **place, upscaler=model or None,
                                              on_progress=tiles, **extra)
            except flow.Stopped:
                done["stopped"] = True
                break
            done["computed"] += result.computed
            done["stored"] += result.stored
            done["files"] += [str(item.path) for item in result.items]
            done["seeds"].append(one if run_dir is not None else str(Path(one).name))
            report(("picture", n, dict(done, files=list(done["files"]))))
        return done

    clock, summary, expected, tile_text = flow.Clock(), None, 0.0, ("", "")
    for event in flow.run(app, tab, "upscale", work):
        if event.kind == "failed":
            text, label, stop = flow.failed(label, event.result)
            yield gr.skip(), text, "", label, stop, {"error": event.result}
            return
        if event.kind == "waiting":
            yield gr.skip(), flow.waiting_text(event.ahead), gr.skip(), \
                flow.button(f"Waiting · {event.ahead} ahead", busy=True), flow.stop_button(True), gr.skip()
            continue
        if event.kind == "stopping":
            yield gr.skip(), "stopping…", gr.skip(), gr.skip(), flow.stop_button(False), gr.skip()
            continue
        if event.kind == "progress":  # what a batch holds is said in order: estimate, tiles, a picture done
            picture, estimated, tiled = None, not event.reports, False
            for report in event.reports:
                if report[0] == "estimate":
                    expected, estimated = report[1], True
                elif report[0] == "tiles":
                    _, n, finished, planned = report
                    ahead = expected * (1 - (n + finished / max(planned, 1)) / total) if expected else 0
                    left = f" · about {flow.duration(ahead)} left" if ahead >= 1 else ""
                    tile_text, tiled = (f"Upscaling {n + 1} of {total}{left}", tile_words(finished, planned) + left), True
                else:
                    picture = summary = report[2]
            if estimated:
                about = f": about {flow.duration(expected)} on this machine" if expected else ""
                hint = "" if expected < 60 or model == "realesr-animevideov3" else \
                    " (realesr-animevideov3 or a GPU is much faster)"
                yield gr.skip(), f"upscaling {total}{about}{hint}", bar(0, 1), \
                    flow.button(f"Upscaling 1 of {total}", busy=True), flow.stop_button(not event.stopping), gr.skip()
            if tiled:
                label, detail = tile_text
                yield gr.skip(), f"upscaling: {detail}", gr.skip(), flow.button(label, busy=True), \
                    flow.stop_button(not event.stopping), gr.skip()
            if picture is not None:
                n = len(picture["seeds"])
                value = upscaled_value(pictures.view(run_dir)) if run_dir else gr.skip()
                yield value, f"upscaled {n} of {total} · {picture['computed']} computed, {picture['stored']} from " \
                             f"the store · {clock.elapsed():.1f} s", bar(n, total), gr.skip(), gr.skip(), gr.skip()
            continue
        summary = event.result if event.result is not None else summary
        if summary is None:
            yield gr.skip(), "stopped while waiting: nothing was upscaled", "", gr.skip(), gr.skip(), gr.skip()
            return
        n = len(summary["seeds"])
        stopped = " (stopped)" if summary.get("stopped") and n < total else ""
        yield upscaled_value(pictures.view(run_dir)) if run_dir else files_value(summary["files"]), \
            f"upscaled {n} of {total}{stopped} · {summary['computed']} computed, {summary['stored']} from the store " \
            f"· {clock.elapsed():.1f} s", bar(n, total), gr.skip(), gr.skip(), \
            {"stage": "upscale", "run_dir": str(run_dir) if run_dir else None, "seeds": summary["seeds"],
             "computed": summary["computed"], "stored": summary["stored"], "files": summary["files"],
             **({"stopped": True} if stopped else {})}


def tile_words(finished: float, planned: int) -> str:
    """'tile 2 of 4 · 35%': the tile under way and how far it is (the engine reports inside a tile)."""
    if finished >= planned:
        return f"tile {planned} of {planned} · 100%"
    under_way = int(finished) + 1
    return f"tile {under_way} of {planned} · {int((finished - int(finished)) * 100)}%"


def _what(run_dir, chosen) -> dict:
    return {"run": str(run_dir), "seeds": chosen} if run_dir is not None else {"images": chosen}
