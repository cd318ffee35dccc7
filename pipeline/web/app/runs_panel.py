"""The runs in the output folder, newest first; opening one shows everything it holds, whether the
CLI or the app made it."""
from __future__ import annotations

import gradio as gr

from ...runs import LATEST, RUN_FILE, load_picks, load_run
from ...runs import stage_pictures as stage_items
from . import pictures
from .errors import on_page

COLUMNS = ["run", "created", "prompt", "candidates", "picked", "refined", "upscaled"]


def list_runs(out) -> list[list]:
    """One row per run folder of ``out`` (a run.json inside), newest first."""
    rows = []
    try:
        entries = [e for e in out.iterdir() if e.is_dir() and e.name != LATEST and not e.name.startswith(".")]
    except OSError:
        return []
    for entry in entries:
        if not (entry / RUN_FILE).is_file():
            continue
        try:
            data = load_run(entry)
        except Exception:  # noqa: BLE001 - a corrupt run.json is listed, not fatal
            data = {}
        created = str(data.get("created", ""))[:16].replace("T", " ")
        rows.append([entry.name, created, str(data.get("prompt", "")),
                     len(stage_items(data, "explore")), len(load_picks(entry)), len(stage_items(data, "refine")),
                     len(stage_items(data, "upscale")), (entry / RUN_FILE).stat().st_mtime])
    rows.sort(key=lambda row: row[-1], reverse=True)
    return [row[:-1] for row in rows]


def build(app, ui) -> None:
    with gr.Row():
        ui.runs_refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh")
        ui.run_choice = gr.Dropdown([], label="Run", allow_custom_value=False, elem_id="run-choice", scale=3)
        ui.open_btn = gr.Button("Open", variant="primary", size="sm", elem_id="open-run")
    ui.runs_table = gr.Dataframe(headers=COLUMNS, datatype="str", interactive=False, wrap=True,
                                 column_widths=["26%", "13%", "33%", "7%", "7%", "7%", "7%"],
                                 elem_id="runs-table", value=None)


def wire(app, ui, opened) -> None:
    def runs():
        """The runs in the output folder, newest first (name, created, prompt, counts)."""
        rows = list_runs(app.out)
        return rows, gr.update(choices=[r[0] for r in rows], value=rows[0][0] if rows else None)

    ui.runs_refresh.click(runs, None, [ui.runs_table, ui.run_choice], api_name="runs", concurrency_limit=None)
    ui.demo.load(runs, None, [ui.runs_table, ui.run_choice], api_visibility="private", concurrency_limit=None)

    def open_run(name):
        """Open run NAME: its candidates, picks, refined and upscaled pictures, and its settings."""
        with on_page():
            run_dir = app.run_dir(name)
            return opened(pictures.view(run_dir))

    ui.open_btn.click(open_run, ui.run_choice, ui.open_outputs, api_name="open_run", concurrency_limit=None)
