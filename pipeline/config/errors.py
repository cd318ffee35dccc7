"""A config's problems in its own words: unknown keys (with "did you mean"), and pydantic's
validation errors rewritten as `file:line: key.path: message`."""
from __future__ import annotations

import difflib

from pydantic import ValidationError

from .inpaint_section import InpaintSection
from .schema import ExploreSection, Pick, PromptEntry, RefineSection, UpscaleSection, VarySection
from .source import Source, error_message, key_path, walk

# ---------------------------------------------------------------- unknown keys

_CHILDREN = {
    "RunConfig": {"explore": ExploreSection, "vary": VarySection, "refine": RefineSection,
                  "upscale": UpscaleSection, "inpaint": InpaintSection, "prompts": [PromptEntry]},
    "RefineSection": {"picks": [Pick]},
    "VarySection": {"picks": [Pick]},
}
_ALIASES = {"RefineSection": {"seeds"}, "VarySection": {"seeds"}, "UpscaleSection": {"model"},
            "InpaintSection": {"from"}}  # other names accepted


def _all_keys() -> dict[str, str]:
    """{key: section.key} for a hint when a key is in the wrong section."""
    found = {}
    for name, section in (("explore", ExploreSection), ("refine", RefineSection), ("upscale", UpscaleSection),
                          ("vary", VarySection), ("inpaint", InpaintSection)):
        for key in section.model_fields:
            found.setdefault(key, f"{name}.{key}")
    return found


def unknown_keys(data: dict, model, path: tuple = ()) -> list[tuple[tuple, str]]:
    problems = []
    if not isinstance(data, dict):
        return problems
    known = list(model.model_fields)
    allowed = set(known) | _ALIASES.get(model.__name__, set())
    for key in data:
        if key in allowed:
            continue
        name = str(key)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]!r}?"
        elif path == () and difflib.get_close_matches(name, list(_all_keys()), n=1, cutoff=0.75):
            other = _all_keys()[difflib.get_close_matches(name, list(_all_keys()), n=1, cutoff=0.75)[0]]
            hint = f"; did you mean {other!r} (in the {other.split('.')[0]} section)?"
        else:
            hint = f"; known keys: {', '.join(known)}"
        problems.append((path + (key,), f"unknown key{hint}"))
    for key, child in _CHILDREN.get(model.__name__, {}).items():
        value = data.get(key)
        if key == "picks" and value is None:
            value = data.get("seeds")
            key = "seeds"
        if isinstance(child, list):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    problems += unknown_keys(item, child[0], path + (key, index))
        else:
            problems += unknown_keys(value, child, path + (key,))
    return problems


# ---------------------------------------------------------------- pydantic's errors, in the config's words

def _bounds(root, loc) -> dict:
    """The numeric bounds of the field at ``loc`` (ge/gt/le/lt), looked up in the section models."""
    model = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = model.model_fields
        if part not in fields:
            return {}
        info = fields[part]
        child = _CHILDREN.get(model.__name__, {}).get(part)
        if child is None:
            bounds = {}
            for meta in info.metadata:
                for name in ("ge", "gt", "le", "lt"):
                    if getattr(meta, name, None) is not None:
                        bounds[name] = getattr(meta, name)
            return bounds
        model = child[0] if isinstance(child, list) else child
    return {}


def describe_errors(err: ValidationError, data: dict, source: Source, root) -> list[tuple]:
    """(sort key, `where: key.path: message`, the key's path) for each of pydantic's errors, one per key."""
    problems: list[tuple] = []
    seen: set = set()
    for error in err.errors():
        if error["type"] == "extra_forbidden":
            continue  # reported by unknown_keys, with a suggestion
        found, rest = walk(data, error["loc"])
        path = found + rest if error["type"] == "missing" else found
        if path in seen:
            continue  # one message per key (a union reports each of its members)
        seen.add(path)
        message = error_message(error, lambda loc: _bounds(root, loc))
        where = source.where(found)
        text = f"{where}: {key_path(path)}: {message}" if path else f"{where}: {message}"
        problems.append((source.order(found), text, found))
    return problems
