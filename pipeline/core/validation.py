"""A pydantic error as the end of a sentence, for specs (``--strength must be ...``) and configs
(``file:line: key: must be ...``) alike. Imports no pydantic: it reads the error's dict."""
from __future__ import annotations


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def error_message(error: dict, bounds) -> str:
    """One pydantic error as the end of a sentence; ``bounds(loc)`` gives a field's numeric bounds."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    shown = repr(given) if isinstance(given, str) else _number(given) if isinstance(given, (int, float)) else \
        type(given).__name__
    if kind == "missing":
        return "is required"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, not {shown}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, not {shown}"
    if kind in ("string_type",):
        return f"must be text, not {shown}"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, not {shown}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}, not {shown}"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, not {shown}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping of keys, not {shown}"
    if kind == "string_too_short":
        return "is empty"
    if kind == "too_short":
        return "must not be empty"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bounds = bounds(error["loc"])
        low = bounds.get("ge", bounds.get("gt"))
        high = bounds.get("le", bounds.get("lt"))
        if low is not None and high is not None:
            text = f"must be between {_number(low)} and {_number(high)}"
            if "gt" in bounds and given == bounds["gt"]:
                text += f" ({_number(low)} itself is not allowed)"
            return f"{text}, not {shown}"
        if low is not None:
            return f"must be {'above' if 'gt' in bounds else 'at least'} {_number(low)}, not {shown}"
        if high is not None:
            return f"must be {'below' if 'lt' in bounds else 'at most'} {_number(high)}, not {shown}"
    message = error.get("msg", "is invalid")
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    return message
