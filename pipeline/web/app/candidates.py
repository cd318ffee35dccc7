"""The candidates grid: candidates stream in as each one is stored (the explore job is in
explore_job.py); a click on a candidate picks or unpicks it (RUN/picks.json)."""
from __future__ import annotations

import gradio as gr

from ...runs import toggle_pick
from ..gallery import write_gallery
from . import pictures
from .errors import on_page


def build_gallery(app, ui) -> None:
    ui.candidates = gr.Gallery(label="Candidates — click to pick", columns=5, height=420, allow_preview=False,
                               fit_columns=False, object_fit="contain", elem_id="candidates", interactive=False)
    ui.picks = gr.Textbox(label="Picked seeds", interactive=False, elem_id="picks")


def wire(app, ui) -> None:
    def pick(run, shown, evt: gr.SelectData):
        with on_page():
            run_dir = app.run_dir(run)
            if not shown or evt.index is None or evt.index >= len(shown):
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            seed = shown[evt.index]
            picks = toggle_pick(run_dir, seed)  # under the run's lock: two tabs keep both picks
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


def bar(done: int, total: int) -> str:
    """The progress bar under the status line (built from two numbers only: no user text)."""
    done, total = int(done), max(int(total), 1)
    return f'<progress max="{total}" value="{done}" style="width:100%"></progress>'
