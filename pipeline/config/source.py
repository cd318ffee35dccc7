"""Where a config's keys come from, and how its problems are told: YAML with line numbers,
``--set KEY=VALUE`` overrides, and pydantic's errors rewritten as `file:line: key.path: message`.

Knows nothing of the config's models (``pipeline.config.loader`` has them). Imports no torch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core import registry
from ..core.errors import UserError
from ..core.validation import error_message  # noqa: F401  (configs' errors tell problems with it)

MAX_ERRORS = 12


# ---------------------------------------------------------------- where keys are

@dataclass
class Source:
    """Where each key path of a config came from: a line of the file, or a --set override."""

    label: str  # the file as the user named it
    lines: dict[tuple, int] = field(default_factory=dict)
    overrides: dict[tuple, str] = field(default_factory=dict)

    def order(self, path: tuple) -> tuple:
        """Sort key: file lines first, in order, then --set overrides."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.overrides:
                return (1, 0)
            if path[:n] in self.lines:
                return (0, self.lines[path[:n]])
        return (0, 0)

    def where(self, path: tuple) -> str:
        for n in range(len(path), -1, -1):
            if path[:n] in self.overrides:
                return self.overrides[path[:n]]
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return f"{self.label}:{self.lines[path[:n]]}"
        return self.label


def key_path(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class ConfigError(UserError):
    """One or more problems in a config, each as `file:line: key.path: message`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_ERRORS]
        more = len(problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


def problem(source: Source, path: tuple, message: str) -> str:
    where = source.where(path)
    return f"{where}: {key_path(path)}: {message}" if path else f"{where}: {message}"


def _node_lines(node, path: tuple, lines: dict, duplicates: list) -> None:
    """Map key paths to 1-based lines: a mapping entry to its key's line, a list item to its own."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.start_mark)
            child = path + (key,)
            if key in seen:
                duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _node_lines(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = path + (index,)
            lines[child] = item.start_mark.line + 1
            _node_lines(item, child, lines, duplicates)


# ---------------------------------------------------------------- loading


# ---------------------------------------------------------------- reading YAML

def read_yaml(path: str | Path) -> tuple[Any, Source]:
    label = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{label}: no such config file") from None
    except IsADirectoryError:
        raise UserError(f"{label} is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise UserError(f"{label}: not a UTF-8 text file") from None
    except OSError as err:
        raise UserError(f"cannot read {label}: {err.strerror or err}") from None
    return parse_yaml(text, label)


def parse_yaml(text: str, label: str = "<config>") -> tuple[Any, Source]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        what = " ".join(str(part) for part in (err.context, err.problem) if part)
        raise ConfigError([f"{label}{line}: YAML syntax error: {what}"]) from None
    except yaml.YAMLError as err:
        raise ConfigError([f"{label}: YAML syntax error: {err}"]) from None
    if node is not None:
        _check_aliases(node, label)
    source = Source(label)
    duplicates: list = []
    if node is not None:
        source.lines[()] = node.start_mark.line + 1
        _node_lines(node, (), source.lines, duplicates)
    if duplicates:
        raise ConfigError([f"{label}:{line}: {key_path(path)}: duplicate key (the earlier one would be ignored)"
                           for path, line in duplicates])
    return data, source


MAX_EXPANDED_NODES = 100_000


def _check_aliases(root, label: str) -> None:
    """Refuse YAML aliases that refer to themselves, or that expand past MAX_EXPANDED_NODES ("billion laughs")."""
    on_path: set[int] = set()
    count = 0

    def walk(node) -> None:
        nonlocal count
        count += 1
        if count > MAX_EXPANDED_NODES:
            raise ConfigError([f"{label}: the YAML expands to more than {MAX_EXPANDED_NODES} values (aliases?)"])
        if id(node) in on_path:
            raise ConfigError([f"{label}:{node.start_mark.line + 1}: a YAML alias refers to itself"])
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            on_path.add(id(node))
            for child in node.value:
                for part in (child if isinstance(child, tuple) else (child,)):
                    walk(part)
            on_path.discard(id(node))

    walk(root)


# ---------------------------------------------------------------- --set KEY=VALUE

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_override(text: str) -> tuple[tuple, Any]:
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"--set {text!r}: use KEY=VALUE, e.g. --set refine.strength=0.4")
    parts: list = []
    pos = 0
    for match in _PART.finditer(key):
        between = key[pos:match.start()]
        if between not in ("", "."):
            break
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if pos != len(key) or not parts or isinstance(parts[0], int):
        raise UserError(f"--set {text!r}: cannot read the key {key!r}; write it like refine.strength or "
                        f"prompts[0].negative")
    parts = [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts]
    if parts[:2] == ["refine", "seeds"]:
        parts[1] = "picks"  # picks' other name (`--set refine.seeds=42,97`)
    if not raw.strip():
        return tuple(parts), ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err)
        raise UserError(f"--set {text!r}: cannot read the value as YAML ({problem})") from None
    return tuple(parts), value


def apply_override(data: dict, parts: tuple, value, text: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, dict):
            child = node.get(part)
            if part == "prompts" and isinstance(child, str):  # --set prompts[0].negative=… on a one-prompt config
                child = node[part] = [child]
            if child is None:
                child = node[part] = [] if isinstance(nxt, int) else {}
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            child = node[part]
            if isinstance(child, str) and parts[0] == "prompts":
                child = node[part] = {"text": child}
        else:
            raise UserError(f"--set {text!r}: {key_path(parts[:i + 1])} is not there to set")
        node = child
    last = parts[-1]
    if isinstance(node, dict) and not isinstance(last, int):
        if value is None and len(parts) == 1 and last in registry.names():
            node.pop(last, None)  # --set upscale=null: leave the stage out
            return
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last <= len(node):
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        raise UserError(f"--set {text!r}: {key_path(parts)} is not there to set")


# ---------------------------------------------------------------- pydantic's errors, in the config's words

def walk(data, loc) -> tuple[tuple, tuple]:
    """Split a pydantic location into the part that exists in ``data`` and the rest (type tags dropped)."""
    found: list = []
    node = data
    rest: list = []
    for part in loc:
        if rest:
            rest.append(part)
            continue
        if isinstance(node, dict) and part == "picks" and "picks" not in node and "seeds" in node:
            part = "seeds"  # refine.seeds is picks' other name
        if isinstance(node, dict) and part in node:
            found.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            found.append(part)
            node = node[part]
        elif isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "function-before")):
            continue  # a union member's tag
        else:
            rest.append(part)
    return tuple(found), tuple(rest)
