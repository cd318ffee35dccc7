"""The house as built: each module imports only from its own layer or below, and no two modules import each other.

Layers, top to bottom (shared/DESIGN.md): entry (cli, web, api, runner, session, compat, repair) → config → stages →
engines → models (where model files come from) → scale (torchrun/Ray: imported from above, imports only core) → core.
Every import counts, the ones inside functions too: a lazy import hides an arrow from the reader, not from this test.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
LAYERS = ["entry", "config", "stages", "engines", "models", "scale", "core"]
# Known exceptions: none since the seams work (issue 35) took the gallery out of the stages and ended the
# detail<->upscale and refine<->refine_source circles. This list only shrinks: a new upward edge or circle fails.
KNOWN_UPWARD: set[str] = set()
KNOWN_CIRCLES: set[tuple[str, str]] = set()


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"  # `pipeline` itself: its __version__ (and lazy Pipeline) may be read from anywhere
    top = parts[1]
    return top if top in LAYERS else "entry"


def module_of(path: Path) -> tuple[str, str]:
    """(module, package) of a file of the package."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imports(path: Path) -> set[str]:
    """Every pipeline module ``path`` imports, anywhere in the file."""
    module, package = module_of(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pipeline"):
                continue
            for alias in node.names:  # `from pkg import module` names a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _exists(candidate) else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline"))
    found.discard(module)
    return found


def _exists(module: str) -> bool:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def edges() -> dict[str, set[str]]:
    return {module_of(path)[0]: imports(path) for path in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for module, targets in edges().items():
        here = layer(module)
        for target in targets:
            there = layer(target)
            if there == "root" or here in ("entry", "root"):
                continue
            if there == "scale" and here != "core":
                continue  # scale sits beside the stack: anything above core may ask it
            if here == "scale" and there != "core":
                upward.append(f"{module} -> {target}")
            elif LAYERS.index(there) < LAYERS.index(here):
                upward.append(f"{module} -> {target}")
    new = sorted(set(upward) - KNOWN_UPWARD)
    assert not new, "imports that go up a layer:\n" + "\n".join(new)


def test_no_two_modules_import_each_other():
    graph = edges()
    circles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets
                      if a in graph.get(b, ()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    new = [pair for pair in circles if pair not in KNOWN_CIRCLES]
    assert not new, "modules that import each other:\n" + "\n".join(f"{a} <-> {b}" for a, b in new)


def test_only_the_executor_speaks_to_the_scale_package():
    """The share between processes is a strategy of the executor (torchrun today, a Ray pool next): no stage
    imports ``pipeline.scale`` itself."""
    speakers = sorted(module for module, targets in edges().items() if module.startswith("pipeline.stages.")
                      and any(target.startswith("pipeline.scale") for target in targets))
    assert speakers == ["pipeline.stages.executor"], speakers


def test_every_package_says_what_it_holds_and_may_import():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 40, f"{init.relative_to(PACKAGE.parent)} has no docstring saying what it holds"
