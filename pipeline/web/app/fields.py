"""The page's number fields (gr.Number and gr.Slider) with the server's bounds, and their refusals in
the status line.

A value outside its field's range (or a fraction in a whole-number field) is not refused by Gradio's
preprocess, which would answer "Value 60 is greater than maximum value 50." as an error event (a toast,
and HTTP 500 on the page's un-queued events). It reaches the handler as ``Refused``: the number as typed
(so the form kept in the browser keeps it), with the sentence naming the field and its range. A job's
handler wrapped by ``in_status`` says that sentence in the status line before it starts (and API clients
get it as the error). The sentence is worked out from the field's label, bounds and elem_id when it is
refused: Gradio makes a new instance of a component from its constructor arguments when an event updates
it (``gr.skip()`` included), so nothing set on the instance afterwards survives.
"""
from __future__ import annotations

import functools
import html
import math

import gradio as gr

from ...core.seeds import JS_SAFE_SEEDS
from ...core.sizes import MAX_SIDE, MIN_SIDE, SIZE_MULTIPLE

MAX_COUNT = 10_000
MAX_BASE_SEED = JS_SAFE_SEEDS - 1  # a new picture's seed; the page's number field holds it exactly
# the sentences that say more than "give LOW to HIGH", by the field's elem_id
SAYS = {
    "width": f"give {MIN_SIDE} to {MAX_SIDE} pixels, a multiple of {SIZE_MULTIPLE}",
    "height": f"give {MIN_SIDE} to {MAX_SIDE} pixels, a multiple of {SIZE_MULTIPLE}",
    "count": f"give 1 to {MAX_COUNT} (or seeds like 1,2,10-20)",
    "seed": f"give -1 (random) or 0 to {MAX_BASE_SEED}",
}


class Refused(float):
    """A number outside its field's range: the value as typed, and the sentence that refuses it."""
    sentence = ""

    def __new__(cls, value, sentence: str):
        number = super().__new__(cls, value)
        number.sentence = sentence
        return number


# the name a refusal gives a field whose label alone would be unclear, by its elem_id
NAMES = {"seed": "Base seed", "vary-count": "Variations", "inpaint-strength": "Inpaint strength",
         "strength": "Strength"}


def _name(field) -> str:
    elem_id = str(field.elem_id or "")
    if elem_id.startswith("lora-weight-") and elem_id[12:].isdigit():
        return f"LoRA {int(elem_id[12:]) + 1} strength"
    return NAMES.get(elem_id) or str(field.label or elem_id or "the number")


def checked(field, payload):
    """The payload, or Refused when it is no number, a fraction in a whole-number field, or outside
    the field's bounds."""
    if payload is None:
        return None
    try:
        number = float(payload)
    except (TypeError, ValueError):  # only an API client sends text
        raise gr.Error(html.escape(f"{_name(field)} takes a number, not {payload!r}"),
                       print_exception=False) from None
    if not math.isfinite(number):
        raise gr.Error(f"{_name(field)} takes a number, not {number}", print_exception=False)
    low, high = field.minimum, field.maximum
    if field.precision == 0 and number != int(number):
        return Refused(number, f"{_name(field)} takes a whole number, not {number:g}")
    if (low is not None and number < low) or (high is not None and number > high):
        says = SAYS.get(field.elem_id) or (f"give {low:g} to {high:g}" if low is not None and high is not None
                                           else f"give {low:g} or more" if low is not None
                                           else f"give {high:g} or less")
        return Refused(number, f"{_name(field)} {number:g} is out of range: {says}")
    return payload


class Number(gr.Number):
    """gr.Number whose out-of-range value reaches the handler as Refused."""
    is_template = True  # drawn by Gradio's own Number

    def preprocess(self, payload):
        value = checked(self, payload)
        return value if value is None or isinstance(value, Refused) else super().preprocess(value)


class Slider(gr.Slider):
    """gr.Slider whose out-of-range value (typed in its number box, or sent by a client) reaches the
    handler as Refused."""
    is_template = True  # drawn by Gradio's own Slider

    def preprocess(self, payload):
        value = checked(self, payload)
        return value if value is None or isinstance(value, Refused) else super().preprocess(value)


def refusal(values) -> str | None:
    """The sentence of the first refused number among ``values`` (a LoRA's [name, strength] pairs too)."""
    for value in values:
        if isinstance(value, Refused):
            return value.sentence
        if isinstance(value, (list, tuple)):
            found = refusal(value)
            if found:
                return found
    return None


def in_status(fn, outputs: list, status):
    """``fn`` (a job's generator handler) whose refusal before it starts — a refused number, or a user
    error it raises before its first update — is one sentence in the status line (the ``status``
    output; the others unchanged), then the event's error for API clients (no toast on the page: the
    status line says it)."""
    where = outputs.index(status)

    @functools.wraps(fn)
    def handler(*args, **kwargs):
        started = False
        try:
            said = refusal([*args, *kwargs.values()])
            if said:
                raise gr.Error(html.escape(said, quote=False), print_exception=False)
            for update in fn(*args, **kwargs):
                started = True
                yield update
        except gr.Error as err:
            if started:
                raise
            text = html.unescape(str(err.message))
            yield tuple(text if n == where else gr.skip() for n in range(len(outputs)))
            raise gr.Error(err.message, visible=False, print_exception=False) from None

    return handler

