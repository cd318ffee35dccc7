"""User errors as one sentence on the page (gr.Error), with the CLI's wording and hints."""
from __future__ import annotations

from contextlib import contextmanager

from ...core.errors import UserError

OOM_HINT = "out of memory; try a smaller size or batch, or start `pipeline ui` with a lower --memory profile"


# the CLI's option names as the page's fields are labelled (the stages word their errors for the CLI)
FIELDS = {"count": "Count", "seeds": "Seeds", "seed": "Base seed", "size": "Width × Height", "steps": "Steps",
          "guidance": "Guidance", "negative": "Negative prompt", "prompt": "Prompt", "batch": "Batch",
          "variance": "Seed variance", "strength": "Strength", "scale": "Scale", "mode": "Mode",
          "upscaler": "Upscaler", "model": "Upscaler", "lora": "LoRA", "from": "the picture from disk", "run": "Run"}


def page_words(text: str) -> str:
    """A stage's sentence with the page's words: `--steps must be …` -> `Steps must be …`."""
    import re

    def field(match):
        name = match.group(1)
        return FIELDS.get(name, name.replace("-", " "))

    text = re.sub(r"(?<![\w-])--([a-z][a-z-]*)", field, text)
    return text[:1].upper() + text[1:] if text.startswith(tuple(FIELDS.values())) else text


def message(err: BaseException) -> str | None:
    """The sentence to show for an error a user can act on, or None for a bug."""
    if isinstance(err, UserError):
        return page_words(str(err))
    if isinstance(err, MemoryError) or err.__class__.__name__ == "OutOfMemoryError":
        return str(err) if "profile" in str(err) else OOM_HINT
    if isinstance(err, OSError):
        from ...core.store import write_error
        from pathlib import Path

        return str(write_error(Path(err.filename or "?"), err))
    return None


def as_page_error(err: BaseException):
    import gradio as gr

    text = message(err)
    if text is None:
        raise err
    raise gr.Error(as_text(text), print_exception=False) from err


def as_text(text: str) -> str:
    """A sentence for a toast, which Gradio renders as HTML: the user's own input (a prompt, a run name)
    shows as the text it is (<img>, <b> stay text), never as markup."""
    import html

    return html.escape(text, quote=False)


@contextmanager
def on_page():
    """Run a handler's body; a user error becomes one sentence on the page."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - sorted by message(); bugs are raised again
        as_page_error(err)
