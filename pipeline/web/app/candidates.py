"""The candidates grid and the explore event: candidates stream in as each one is stored; Stop
ends the run after the current picture; a click on a candidate picks or unpicks it (RUN/picks.json)."""
from __future__ import annotations

import queue
import threading
import time

import gradio as gr

from ...runs import load_picks, save_picks
from ..gallery import write_gallery
from . import pictures
from .errors import as_page_error, on_page

_DONE = object()


def build_gallery(app, ui) -> None:
    ui.candidates = gr.Gallery(label="Candidates — click to pick", columns=5, height=420, allow_preview=False,
                               fit_columns=False, object_fit="contain", elem_id="candidates", interactive=False)
    ui.picks = gr.Textbox(label="Picked seeds", interactive=False, elem_id="picks")


def wire(app, ui) -> None:
    def explore(prompt, negative, width, height, count, seeds, steps, guidance, request: gr.Request,
                progress=gr.Progress()):
        """Render candidates of PROMPT; yields the gallery as each one is stored."""
        yield from _explore(app, request.session_hash if request else "api", progress, prompt, negative, width,
                            height, count, seeds, steps, guidance)

    ui.explore_event = ui.explore_btn.click(
        explore, [ui.prompt, ui.negative, ui.width, ui.height, ui.count, ui.seeds, ui.steps, ui.guidance],
        [ui.candidates, ui.status, ui.bar, ui.run, ui.shown_seeds, ui.picks, ui.result], api_name="explore",
        concurrency_id="device", show_progress="minimal", show_progress_on=ui.status)

    def clear():  # a new run: nothing of the previous one stays on the page
        return [], [], None, [], None, ""

    ui.explore_btn.click(clear, None, [ui.refined, ui.refined_seeds, ui.compare, ui.upscaled, ui.params, ui.command],
                         api_visibility="private", queue=False)

    def stop(request: gr.Request):
        return "stopping after the current picture…" if app.stop(request.session_hash) else gr.skip()

    ui.stop_btn.click(stop, None, ui.status, api_visibility="private", queue=False)

    def pick(run, shown, evt: gr.SelectData):
        with on_page():
            run_dir = app.run_dir(run)
            if not shown or evt.index is None or evt.index >= len(shown):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            seed = shown[evt.index]
            picks = load_picks(run_dir)
            picks = [s for s in picks if s != seed] if seed in picks else [*picks, seed]
            save_picks(run_dir, picks)
            write_gallery(run_dir)  # the static page shows the same picks
            view = pictures.view(run_dir)
            chosen = next((c for c in view.candidates if c.seed == seed), None)
            panel = (pictures.params(chosen, view.data), pictures.command(app.out, run_dir, chosen, view.data)) \
                if chosen else (gr.skip(), gr.skip())
            return gallery_value(view.candidates, shown, picks), picks_text(picks), *panel

    ui.candidates.select(pick, [ui.run, ui.shown_seeds], [ui.candidates, ui.picks, ui.params, ui.command],
                         api_visibility="private", concurrency_limit=None)


def picks_text(picks) -> str:
    return ", ".join(map(str, picks)) if picks else "nothing picked yet: click candidates"


def gallery_value(candidates, order, picks):
    by_seed = {c.seed: c for c in candidates}
    return [(str(by_seed[s].thumb or by_seed[s].path), pictures.caption(s, picks))
            for s in order if s in by_seed]


def _seeds_of(count, seeds_text):
    from ...jobs import parse_seeds

    if seeds_text and seeds_text.strip():
        return {"seeds": parse_seeds(seeds_text.strip())}
    from ...errors import UserError

    if count is None or int(count) < 1:
        raise UserError("give a count of at least 1, or seeds like 1,2,10-20")
    return {"count": int(count)}


def _explore(app, tab, progress, prompt, negative, width, height, count, seeds, steps, guidance):
    if negative and not guidance:
        gr.Warning("the negative prompt has no effect with guidance 0 (Turbo's default); "
                   "set guidance above 0 to use it")
    try:
        which = _seeds_of(count, seeds)
        size = (int(width or 0), int(height or 0))
    except Exception as err:  # noqa: BLE001
        as_page_error(err)
    stop = app.new_stop(tab)
    arrived: queue.Queue = queue.Queue()
    outcome: dict = {}

    def work():
        try:
            with app.device() as pipeline:
                outcome["result"] = pipeline.explore(prompt, negative=negative or "", size=size, steps=int(steps),
                                                     guidance=float(guidance or 0), on_picture=arrived.put,
                                                     stop=stop, **which)
        except BaseException as err:  # noqa: BLE001 - shown on the page below
            outcome["error"] = err
        finally:
            arrived.put(_DONE)

    worker = threading.Thread(target=work, name="pipeline-explore", daemon=True)
    started = time.monotonic()
    worker.start()
    total = len(which["seeds"]) if "seeds" in which else which["count"]
    done: dict[int, tuple[str, str]] = {}
    order: list[int] = []
    computed_seconds: list[float] = []
    run_dir = None
    try:
        finished = False
        while not finished:
            batch = [arrived.get()]
            while not arrived.empty():  # what arrived together (e.g. the stored ones) is sent once
                batch.append(arrived.get_nowait())
            for item in batch:
                if item is _DONE:
                    finished = True
                    continue
                run_dir = item.path.parent.parent
                thumb = pictures.thumb_of(run_dir, "explore", item)
                done[item.seed] = (str(thumb), pictures.caption(item.seed))
                order.append(item.seed)
                if not item.cached:
                    computed_seconds.append(item.seconds)
            if run_dir is None or (finished and len(batch) == 1):
                continue
            left = total - len(done)
            eta = f" · about {_eta(computed_seconds, left)} left" if left and computed_seconds else ""
            progress((len(done), total), desc="explore", unit="pictures")
            status = f"{len(done)} of {total} candidates{eta} · {time.monotonic() - started:.0f} s"
            yield ([done[s] for s in order], status, bar(len(done), total), run_dir.name, order, picks_text([]),
                   gr.skip())
    finally:
        stop.set()  # a closed tab (GeneratorExit) ends the run after the current picture
        worker.join()
    if "error" in outcome:
        as_page_error(outcome["error"])
    result = outcome["result"]
    run_dir = result.run_dir
    order = [item.seed for item in result.items]
    view = pictures.view(run_dir)  # the gallery's thumbnails, now all made
    picks = load_picks(run_dir)
    stopped = " (stopped)" if len(result.items) < total else ""
    status = (f"{len(result.items)} of {total} candidates{stopped} · {result.computed} computed, "
              f"{result.stored} from the store · {time.monotonic() - started:.1f} s")
    yield (gallery_value(view.candidates, order, picks), status, bar(len(result.items), total), run_dir.name, order,
           picks_text(picks),
           pictures.result_json(result))


def bar(done: int, total: int) -> str:
    """The progress bar under the status line (built from two numbers only: no user text)."""
    done, total = int(done), max(int(total), 1)
    return f'<progress max="{total}" value="{done}" style="width:100%"></progress>'


def _eta(seconds: list[float], left: int) -> str:
    import statistics

    total = statistics.median(seconds) * left
    return f"{total:.0f} s" if total < 120 else f"{total / 60:.0f} min"
