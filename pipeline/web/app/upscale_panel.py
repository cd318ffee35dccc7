"""Upscale the refined pictures with Real-ESRGAN (a preset or a weights file in weights/)."""
from __future__ import annotations

import time

import gradio as gr

from ...errors import UserError
from ...runs import load_run
from . import grid, pictures
from .errors import on_page
from .explore_tab import bar


def model_choices() -> list[str]:
    from ...engines.weights import PRESETS, WEIGHT_SUFFIXES, weights_dir

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
    ui.upscaled = grid.build(app, "upscaled", "upscale", "Upscaled")


def wire(app, ui) -> None:
    def upscale(run, seeds, model, progress=gr.Progress()):
        """Upscale the refined pictures of RUN (or those of SEEDS); yields each one as it is stored."""
        yield from _upscale(app, progress, run, seeds, model)

    ui.upscale_btn.click(upscale, [ui.run, ui.refine_seeds, ui.upscale_model],
                         [ui.upscaled, ui.status, ui.bar, ui.result], api_name="upscale", concurrency_id="device",
                         show_progress="minimal",
                         show_progress_on=ui.status)


def upscaled_value(view):
    return grid.view_value(view, "upscale")


def _refined_seeds(run_dir) -> list:
    from ...runs import stage_pictures

    seeds = [item.get("seed") for item in stage_pictures(load_run(run_dir), "refine")]
    return list(dict.fromkeys(s for s in seeds if isinstance(s, (int, str)) and not isinstance(s, bool)))


def _upscale(app, progress, run, seeds, model):
    from ...jobs import parse_seeds

    with on_page():
        run_dir = app.run_dir(run)
        chosen = (parse_seeds(seeds.strip(), variations=True) if seeds and seeds.strip()
                  else _refined_seeds(run_dir))
        if not chosen:
            raise UserError("refine pictures first: upscale works on the refined pictures")
        choices = model_choices()
        if model not in choices:  # only presets and files of weights/: no path from the page
            raise UserError(f"unknown upscaler weights {model!r}: use one of {', '.join(choices)}")
    with on_page(), app.device() as pipeline:  # how long, before it starts (a probe timed on this machine)
        expected = pipeline.estimate_upscale(run=str(run_dir), seeds=chosen, upscaler=model or None)
    if expected > 0:
        hint = "" if expected < 60 or model == "realesr-animevideov3" else \
            " (realesr-animevideov3 or a GPU is much faster)"
        yield gr.skip(), f"upscaling {len(chosen)}: about {_duration(expected)} on this machine{hint}", \
            bar(0, 1), gr.skip()
    started, computed, stored, files = time.monotonic(), 0, 0, []
    for n, seed in enumerate(chosen):
        done_before = f"{n} of {len(chosen)} done · " if len(chosen) > 1 else ""
        for tiles in _tiles_while(app, run_dir, seed, model):
            if isinstance(tiles, tuple):
                done, total = tiles
                left = time.monotonic() - started
                eta = f" · about {_duration(left / max(done, 1) * (total - done))} left" if done else ""
                yield gr.skip(), f"upscaling seed {seed}: {done_before}tile {done} of {total}{eta}", \
                    bar(done, total), gr.skip()
                continue
            result = tiles
        computed, stored = computed + result.computed, stored + result.stored
        files += [str(item.path) for item in result.items]
        status = (f"upscaled {n + 1} of {len(chosen)} · {computed} computed, {stored} from the store · "
                  f"{time.monotonic() - started:.1f} s")
        yield upscaled_value(pictures.view(run_dir)), status, bar(n + 1, len(chosen)), \
            {"stage": "upscale", "run_dir": str(run_dir), "seeds": chosen[: n + 1], "computed": computed,
             "stored": stored, "files": files}


def _tiles_while(app, run_dir, seed, model):
    """Upscale one seed in a worker thread; yield (done, total) tiles as they finish, then the result."""
    import queue
    import threading

    updates: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            with on_page(), app.device() as pipeline:
                outcome["result"] = pipeline.upscale(run=str(run_dir), seeds=[seed], upscaler=model or None,
                                                     on_progress=lambda done, total: updates.put((done, total)))
        except BaseException as err:  # noqa: BLE001 - re-raised in the request's thread below
            outcome["error"] = err

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    last = 0.0
    while worker.is_alive() or not updates.empty():
        try:
            tiles = updates.get(timeout=0.2)
        except queue.Empty:
            continue
        if time.monotonic() - last > 0.5 or tiles[0] == tiles[1]:  # at most two page updates a second
            last = time.monotonic()
            yield tiles
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield outcome["result"]


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
