"""The explore form: prompt, aspect presets and size, Count from a base seed (🎲 random, ♻️ the last
one) or a list of seeds, steps, guidance, batch, seed variance, LoRAs; the Explore and Stop buttons
with the status line. Its limits are the server's (pipeline/seeds.py, sizes.py, specs.py). The form is
kept in the browser (localStorage), so a reload or a server restart finds it as it was."""
from __future__ import annotations

import json

import gradio as gr

from ...core.seeds import MAX_SEED
from ...core.sizes import MAX_SIDE, MIN_SIDE, SIZE_MULTIPLE
from ...stages.specs import MAX_VARIANCE
from . import fields
from .fields import MAX_BASE_SEED, MAX_COUNT

# Aspect presets: the 1024-pixel-area sizes of SDXL-era models (each side a multiple of 64), halved for
# exploring at 512; refining them ×2 lands on the 1024 size exactly (16:9: 672×384 → 1344×768).
ASPECTS = {"1:1": (1024, 1024), "4:3": (1152, 896), "3:4": (896, 1152), "3:2": (1216, 832), "2:3": (832, 1216),
           "16:9": (1344, 768), "9:16": (768, 1344), "21:9": (1536, 640)}
EXPLORE_BASE = 2  # the explore size is the 1024 size / 2
BATCHES = ["auto", "1", "2", "4", "8", "16"]
NEGATIVE_OFF = "used only with guidance above 0 (Turbo's default is 0)"
RANDOM = -1
LABELS = {"explore": "Explore", "refine": "Refine picked", "upscale": "Upscale refined", "vary_subtle": "Vary subtle",
          "vary_strong": "Vary strong"}
MAX_LORAS = 4
LORA_LOW, LORA_HIGH = -2, 2  # a LoRA's strength on the page

# The seed buttons say what they do on hover and to a screen reader (an emoji alone says nothing, and is a
# box where no emoji font is installed). Ctrl+Enter (⌘+Enter) explores, from anywhere on the page. Both
# added by a load event (no inline script).
SEED_BUTTONS = {"seed-random": "Random base seed (-1): a new one for each explore",
                "seed-reuse": "Reuse the base seed of this tab's last random explore"}
ON_LOAD = """() => {
  for (const [id, text] of Object.entries(SEED_BUTTONS)) {
    const button = document.querySelector('#' + id + ' button, button#' + id);
    if (button) { button.title = text; button.setAttribute('aria-label', text); }
  }
  if (window.__pipelineKeys) return;""".replace("SEED_BUTTONS", json.dumps(SEED_BUTTONS)) + """
  window.__pipelineKeys = true;
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
      const button = document.querySelector('#explore');
      if (button && !button.disabled) { e.preventDefault(); button.click(); }
    }
  });
}"""


def explore_size(aspect: str) -> tuple[int, int]:
    width, height = ASPECTS[aspect]
    return width // EXPLORE_BASE, height // EXPLORE_BASE


def build(app, ui) -> None:
    """The left column: the form. ``ui`` collects the components other panels use."""
    ui.vary_from_grid = True  # the large view shows Vary subtle / strong (wired in vary_panel)
    with gr.Group(visible=False, elem_id="resume") as ui.resume_box:
        ui.resume_text = gr.Markdown("", elem_id="resume-text")
        with gr.Row():
            ui.resume_btn = gr.Button("Continue it", variant="primary", size="sm", elem_id="resume-continue")
            ui.resume_dismiss = gr.Button("Dismiss", size="sm", elem_id="resume-dismiss")
    ui.resume_id = gr.State(None)  # the interrupted explore offered (server-side)
    ui.prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red fox in snow  (Ctrl+Enter explores)",
                           elem_id="prompt")
    with gr.Row():
        ui.aspect = gr.Dropdown(list(ASPECTS), value="1:1", label="Aspect", elem_id="aspect", min_width=90,
                                info="×2 when refined: the 1024 size")
        ui.width = fields.Number(label="Width", value=512, precision=0, step=SIZE_MULTIPLE,
                           minimum=MIN_SIDE, maximum=MAX_SIDE, elem_id="width", min_width=80)
        ui.height = fields.Number(label="Height", value=512, precision=0, step=SIZE_MULTIPLE,
                            minimum=MIN_SIDE, maximum=MAX_SIDE, elem_id="height", min_width=80)
    with gr.Row(equal_height=True):
        ui.count = fields.Number(label="Count", value=8, precision=0, minimum=1, maximum=MAX_COUNT,
                           elem_id="count", min_width=70, scale=2)
        ui.seed = fields.Number(label="from seed", value=RANDOM, precision=0, minimum=RANDOM, maximum=MAX_BASE_SEED,
                          elem_id="seed", scale=3, min_width=100, info="-1: random")
        with gr.Column(scale=0, min_width=44, elem_id="seed-buttons"):
            ui.seed_random = gr.Button("🎲", size="sm", min_width=40, elem_id="seed-random")
            ui.seed_reuse = gr.Button("♻️", size="sm", min_width=40, elem_id="seed-reuse")
        ui.seeds = gr.Textbox(label="or seeds", placeholder="e.g. 1,2,10-20", elem_id="seeds", scale=3,
                              min_width=100)
    ui.steps = fields.Slider(1, 50, value=8, step=1, precision=0, label="Steps", elem_id="steps")
    with gr.Accordion("Advanced: guidance, negative, batch, variance", open=False, elem_id="advanced"):
        with gr.Row():
            ui.guidance = fields.Slider(0, 10, value=0, step=0.5, label="Guidance", elem_id="guidance")
            ui.variance = fields.Slider(0, MAX_VARIANCE, value=0, step=0.05, label="Seed variance", elem_id="variance",
                                    info="0: off; 0.1–0.5 spreads Turbo's look-alike seeds")
        ui.negative = gr.Textbox(label="Negative prompt", lines=1, interactive=False, info=NEGATIVE_OFF,
                                 elem_id="negative")
        ui.batch = gr.Dropdown(BATCHES, value="auto", label="Batch", elem_id="batch",
                               info="pictures rendered together (auto: as many as fit)")
    build_loras(app, ui)
    from . import control_panel  # the Control accordion lives in its own module

    control_panel.build(app, ui)
    with gr.Row():
        ui.explore_btn = gr.Button(LABELS["explore"], variant="primary", elem_id="explore", scale=3)
        ui.stop_btn = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1)
    ui.status = gr.Textbox(label="Status", interactive=False, lines=1, elem_id="status",
                           show_label=False, placeholder="ready")
    ui.bar = gr.HTML("", elem_id="bar", padding=False)


def build_loras(app, ui) -> None:
    """Up to four rows of a LoRA file and its strength, when the Pipeline has LoRA support."""
    ui.lora_files, ui.lora_weights, ui.lora_rows = [], [], []
    # the picked [[name, weight], …]: one API parameter ("loras"), kept up to date by the rows below
    ui.loras = gr.JSON([], visible=False, elem_id="loras", label="loras")
    choices = lora_choices(app)
    if choices is None:
        return
    info = "LoRA files of weights/loras/ and $PIPELINE_LORAS" if choices else \
        "no LoRA files found: put .safetensors files in weights/loras/ (or set $PIPELINE_LORAS)"
    with gr.Accordion("LoRA", open=False, elem_id="lora"):
        _lora_rows(ui, choices, info)


def _lora_rows(ui, choices, info) -> None:
    for n in range(MAX_LORAS):
        with gr.Row(visible=n == 0, elem_id=f"lora-row-{n}") as row:
            ui.lora_files.append(gr.Dropdown(["none", *choices], value="none", label=f"LoRA {n + 1}",
                                             elem_id=f"lora-{n}", info=info if n == 0 else None, scale=3))
            ui.lora_weights.append(fields.Slider(LORA_LOW, LORA_HIGH, value=1.0, step=0.05, label="Strength",
                                             elem_id=f"lora-weight-{n}", scale=2))
        ui.lora_rows.append(row)


def lora_choices(app) -> list[str] | None:
    """The LoRA names ``Pipeline.loras()`` lists; None where the Pipeline has no LoRA support."""
    finder = getattr(app.pipeline, "loras", None)
    if not callable(finder):
        return None
    try:
        return sorted({str(entry["name"]) for entry in finder()})
    except Exception:  # noqa: BLE001 - an unreadable folder: the picker stays, empty
        return []


def loras_of(app, pairs) -> list[tuple[str, float]] | None:
    """The picked (name, weight) pairs, checked against the listed files (no paths from the page)."""
    from ...core.errors import UserError

    try:
        picked = [(str(name), float(weight)) for name, weight in pairs if name and name != "none"]
    except (TypeError, ValueError):
        raise UserError("give LoRAs as [name, strength] pairs, e.g. [[\"style\", 0.8]]") from None
    if not picked:
        return None
    if lora_choices(app) is None:
        raise UserError("this server's pipeline has no LoRA support")
    for n, (_, weight) in enumerate(picked):
        if not LORA_LOW <= weight <= LORA_HIGH:
            raise UserError(f"LoRA {n + 1} strength {weight:g} is out of range: give {LORA_LOW} to {LORA_HIGH}")
    if len(picked) > MAX_LORAS:
        raise UserError(f"pick up to {MAX_LORAS} LoRAs")
    known = set(lora_choices(app) or [])
    unknown = [name for name, _ in picked if name not in known]
    if unknown:
        raise UserError(f"there is no LoRA file {unknown[0]!r}: pick one of the list (Refresh the page after "
                        f"adding files)")
    return picked


def wire(app, ui) -> None:
    def aspect(name):
        return explore_size(name) if name in ASPECTS else (gr.skip(), gr.skip())

    ui.aspect.input(aspect, ui.aspect, [ui.width, ui.height], api_visibility="private", queue=False)
    ui.guidance.change(_negative_state, ui.guidance, ui.negative, api_visibility="private", queue=False)
    ui.seed_random.click(lambda: RANDOM, None, ui.seed, api_visibility="private", queue=False)

    def reuse(request: gr.Request):
        last = app.last_base_seed.get(request.session_hash if request else "")
        if last is None:
            raise gr.Error("no explore with a random base seed yet: ♻️ reuses the last one", print_exception=False)
        return last

    ui.seed_reuse.click(reuse, None, ui.seed, api_visibility="private", queue=False)
    def picked(*values):
        return [[name, weight] for name, weight in zip(values[0::2], values[1::2]) if name and name != "none"]

    rows = [c for pair in zip(ui.lora_files, ui.lora_weights) for c in pair]
    if rows:
        gr.on([c.change for c in rows], picked, rows, ui.loras, api_visibility="private", queue=False)
    for n in range(len(ui.lora_rows) - 1):  # the next row shows once this one has a file
        ui.lora_files[n].change(lambda name: gr.update(visible=True) if name != "none" else gr.skip(),
                                ui.lora_files[n], ui.lora_rows[n + 1], api_visibility="private", queue=False)
    from . import control_panel

    control_panel.wire(app, ui)
    ui.demo.load(None, None, None, js=ON_LOAD)


def _negative_state(guidance):
    on = bool(guidance) and guidance > 0
    return gr.update(interactive=on, info="what to steer away from" if on else NEGATIVE_OFF)


def seeds_of(count, seeds_text, base=RANDOM):
    """{"seeds": [...]} from the seeds field, else Count seeds from the base seed (random when -1)."""
    from ...core.errors import UserError
    from ...core.seeds import parse_seeds, seeds_from_count

    if seeds_text and seeds_text.strip():
        return {"seeds": parse_seeds(seeds_text.strip())}
    if count is None or float(count) < 1:
        raise UserError("give a count of at least 1, or seeds like 1,2,10-20")
    if float(count) != int(float(count)):
        raise UserError(f"Count is a whole number of candidates (1 to {MAX_COUNT}), not {float(count):g}")
    count = int(float(count))
    if base is None or int(base) < 0:
        from ...api import random_base_seed

        base = random_base_seed()
        while base + int(count) - 1 > MAX_SEED:
            base = random_base_seed()
    return {"seeds": seeds_from_count(int(count), int(base)), "base": int(base)}
