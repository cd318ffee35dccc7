"""The runs in the output folder, newest first, each with a thumbnail; a row click opens it (its
pictures, its settings, its Count and Seeds). A run this server is writing is marked; an explore of
an earlier server that stopped half way says how far it got. Delete moves a run to OUT/.trash/
(after a confirmation), never erases it."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import gradio as gr

from ...core.runs import LATEST, RUN_FILE, load_picks, load_run
from ...core.runs import stage_pictures as stage_items
from . import pictures
from .errors import on_page

COLUMNS = ["", "run", "created", "prompt", "candidates", "picked", "refined", "upscaled"]
TRASH = ".trash"


def list_runs(out, writing=(), stopped=None) -> list[list]:
    """One row per run folder of ``out`` (a run.json inside), newest first: thumbnail (markdown),
    name (with ● while written, or how far an interrupted explore got), created, prompt, counts."""
    rows = []
    stopped = stopped or {}
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
        explored = stage_items(data, "explore")
        name = entry.name
        if name in writing:
            name += " ● writing"
        elif name in stopped:
            name += f" ◐ stopped at {stopped[name]}"
        rows.append([thumb_markdown(entry, explored), name, created, str(data.get("prompt", "")), len(explored),
                     len(load_picks(entry)), len(stage_items(data, "refine")), len(stage_items(data, "upscale")),
                     (entry / RUN_FILE).stat().st_mtime])
    rows.sort(key=lambda row: row[-1], reverse=True)
    return [row[:-1] for row in rows]


def thumb_markdown(run_dir: Path, explored: list) -> str:
    """The first candidate's thumbnail (the static gallery's own) as a markdown image; the URL is
    a file of the output folder, quoted."""
    from urllib.parse import unquote

    from ..thumbs import Thumbs

    for picture in explored[:1]:
        path = picture.get("path") if isinstance(picture, dict) else None
        if not isinstance(path, str):
            break
        try:
            url, _ = Thumbs(run_dir).get(run_dir / path, "explore", picture.get("seed"), picture.get("key"))
        except Exception:  # noqa: BLE001 - no thumbnail: the row stays
            break
        if url and (run_dir / unquote(url)).is_file():
            return f"![]({file_url(run_dir / unquote(url))})"
    return ""


def file_url(path: Path) -> str:
    return "/gradio_api/file=" + quote(str(Path(path).resolve()))


def run_name(cell: str) -> str:
    """The run's folder name from a row's name cell (without its marker)."""
    return str(cell).split(" ● ")[0].split(" ◐ ")[0].strip()


def build(app, ui) -> None:
    with gr.Row():
        ui.runs_refresh = gr.Button("Refresh", size="sm", elem_id="runs-refresh", scale=0, min_width=90)
        ui.run_choice = gr.Dropdown([], label="Run", allow_custom_value=False, elem_id="run-choice", scale=3,
                                    show_label=False)
        ui.open_btn = gr.Button("Open", variant="primary", size="sm", elem_id="open-run", scale=0, min_width=80)
        ui.delete_btn = gr.Button("Delete…", variant="stop", size="sm", elem_id="delete-run", scale=0,
                                  min_width=90)
    with gr.Row(visible=False, elem_id="delete-confirm") as ui.delete_confirm:
        ui.delete_text = gr.Markdown("", elem_id="delete-text")
        ui.delete_yes = gr.Button("Move it to the trash", variant="stop", size="sm", elem_id="delete-yes", scale=0,
                                  min_width=170)
        ui.delete_no = gr.Button("Cancel", size="sm", elem_id="delete-no", scale=0, min_width=80)
    gr.Markdown("Click a row to open the run. ● a run being written now; ◐ an explore that stopped half way.",
                elem_id="runs-hint")
    ui.runs_table = gr.Dataframe(headers=COLUMNS, datatype=["markdown"] + ["str"] * 7, interactive=False,
                                 wrap=True, column_widths=["72px", "24%", "11%", "33%", "7%", "6%", "6%", "7%"],
                                 elem_id="runs-table", value=None, show_search="none")


def wire(app, ui, opened) -> None:
    def runs():
        """The runs in the output folder, newest first (thumbnail, name, created, prompt, counts)."""
        stopped = {f["run"]: f"{f['done']} of {f['asked']}" for f in app.interrupted()}
        rows = list_runs(app.out, app.running_runs(), stopped)
        names = [run_name(r[1]) for r in rows]
        return rows, gr.update(choices=names, value=names[0] if names else None)

    ui.runs_refresh.click(runs, None, [ui.runs_table, ui.run_choice], api_name="runs", concurrency_limit=None)
    ui.demo.load(runs, None, [ui.runs_table, ui.run_choice], api_visibility="private", concurrency_limit=None)
    ui.tabs.change(runs, None, [ui.runs_table, ui.run_choice], api_visibility="private", concurrency_limit=None)
    lora_outputs = [*ui.lora_files, *ui.lora_weights, *ui.lora_rows]  # none where LoRAs are not supported
    outputs = [*ui.open_outputs, *lora_outputs, ui.count, ui.seeds]

    def open_run(name):
        """Open run NAME: its candidates, picks, refined and upscaled pictures, and its settings."""
        with on_page():
            run_dir = app.run_dir(run_name(name or ""))
            view = pictures.view(run_dir)
            return (*opened(view), *lora_pickers(app, ui, view), *count_and_seeds(view))

    # a text input, not a dropdown: Gradio checks a dropdown's value against the choices the server
    # was started with (none), so API clients could not name a run; app.run_dir validates the name
    ui.open_name = gr.Textbox(visible=False, elem_id="open-name")
    ui.open_name.submit(open_run, ui.open_name, outputs, api_name="open_run", concurrency_limit=None)
    ui.open_btn.click(lambda name: name, ui.run_choice, ui.open_name, api_visibility="private",
                      queue=False).then(open_run, ui.open_name, outputs, api_visibility="private",
                                        api_name="open_run_button", concurrency_limit=None)

    def row_click(table, evt: gr.SelectData):
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        try:
            name = run_name(table.iloc[row, 1] if hasattr(table, "iloc") else table[row][1])
        except (IndexError, KeyError, TypeError):
            return [gr.skip()] * len(outputs)
        return open_run(name)

    ui.runs_table.select(row_click, ui.runs_table, outputs, api_visibility="private", concurrency_limit=None)

    # a refusal is the status line's sentence, not an error event (Gradio's red "Error" pills would
    # cover the run picker, the table and the status line)
    def ask(name):
        try:
            with on_page():
                run_dir = app.run_dir(run_name(name or ""))
        except gr.Error as err:
            return gr.update(visible=False), gr.skip(), f"not deleted: {err.message}"
        return gr.update(visible=True), f"Move run **{run_dir.name}** to `{app.out / TRASH}`? (not erased)", gr.skip()

    ui.delete_btn.click(ask, ui.run_choice, [ui.delete_confirm, ui.delete_text, ui.status], api_visibility="private",
                        queue=False, show_progress="hidden")
    ui.delete_no.click(lambda: gr.update(visible=False), None, ui.delete_confirm, api_visibility="private",
                       queue=False)

    def delete(name):
        try:
            with on_page():
                where = trash(app, run_name(name or ""))
        except gr.Error as err:
            return gr.update(visible=False), gr.skip(), gr.skip(), f"not deleted: {err.message}"
        rows, choice = runs()
        return gr.update(visible=False), rows, choice, f"moved run {run_name(name)} to {where}"

    ui.delete_yes.click(delete, ui.run_choice, [ui.delete_confirm, ui.runs_table, ui.run_choice, ui.status],
                        api_visibility="private", concurrency_limit=None, show_progress="hidden")


def lora_pickers(app, ui, view) -> list:
    """The LoRA rows as the run was made (its files and strengths), so the next Explore keeps them
    (a LoRA whose file is no longer found is left out)."""
    if not ui.lora_files:
        return []
    from .form import lora_choices

    known = set(lora_choices(app) or [])
    records = [r for r in (view.data.get("loras") or []) if isinstance(r, dict) and str(r.get("name")) in known]
    records = records[:len(ui.lora_files)]
    files, weights, rows = [], [], []
    for n in range(len(ui.lora_files)):
        record = records[n] if n < len(records) else None
        files.append(gr.update(value=str(record["name"])) if record else gr.update(value="none"))
        weights.append(gr.update(value=float(record.get("weight", 1.0))) if record else gr.update(value=1.0))
        rows.append(gr.update(visible=n <= len(records)))
    return [*files, *weights, *rows]


def count_and_seeds(view):
    """The form's Count and Seeds as the run has them (its candidates' seeds; variations left out)."""
    from ...core.seeds import seed_ranges

    seeds = [c.seed for c in view.candidates if isinstance(c.seed, int) and not isinstance(c.seed, bool)]
    return (len(seeds) or gr.skip()), (seed_ranges(sorted(seeds)) if seeds else "")


def trash(app, name: str) -> Path:
    """Move run ``name`` to OUT/.trash/NAME (NAME-2, … when taken); refused while it is being written."""
    from ...core.errors import UserError

    run_dir = app.run_dir(name)
    if run_dir.name in app.running_runs():
        raise UserError(f"run {run_dir.name} is being written now: stop it first")
    target_dir = app.out / TRASH
    target_dir.mkdir(exist_ok=True)
    target = target_dir / run_dir.name
    n = 2
    while target.exists():
        target, n = target_dir / f"{run_dir.name}-{n}", n + 1
    os.replace(run_dir, target)
    _repoint_latest(app.out)
    return target


def _repoint_latest(out: Path) -> None:
    """OUT/latest named the run just moved: point it at the newest run left (or remove it)."""
    from ...core.runs import set_latest

    latest = out / LATEST
    try:
        named = os.readlink(latest) if latest.is_symlink() else latest.read_text(encoding="utf-8").strip()
    except OSError:
        return
    if (out / named / RUN_FILE).is_file():
        return
    remaining = sorted((p for p in out.iterdir() if p.is_dir() and not p.is_symlink() and
                        not p.name.startswith(".") and (p / RUN_FILE).is_file()), key=lambda p: p.stat().st_mtime)
    try:
        if remaining:
            set_latest(out, remaining[-1])
        else:
            latest.unlink()
    except OSError:
        pass
