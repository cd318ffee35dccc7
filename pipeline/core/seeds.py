"""Seeds and the names of a run's pictures: the user's seed specs ('1,2,10-20', '42v1-4'), variation
ids (42v3v1), their order, a Count's seeds, and the short form of a list ('1-3, 7'). Imports no torch.
"""
from __future__ import annotations

import re

from .errors import UserError

MAX_SEED = 2**64 - 1
JS_SAFE_SEEDS = 2**53  # seeds below this are exact in a JavaScript number (A1111's and ComfyUI's seed boxes)
MAX_SEEDS_PER_SPEC = 100_000

_SEED_ITEM = re.compile(r"^\s*(\d+)((?:\s*[vi]\s*\d+)*)\s*(?:-\s*(\d+)\s*)?$", re.IGNORECASE)
_ID_STEP = re.compile(r"([vi])\s*(\d+)", re.IGNORECASE)

# A picture of a run is named by its seed (42) or, for a variation made by `pipeline vary`, by its
# parent's name, "v" and the variation's number from 1 (42v3; a variation of that one: 42v3v1); a fix made
# by `pipeline inpaint` by its parent's name, "i" and the fix's number (42i1, 42v3i2, 42i1i1).
# In a seed spec "42v1-4" is 42v1, 42v2, 42v3, 42v4 (the range runs over the last number).


def parse_seeds(spec: str | int | list, *, variations: bool = False) -> list:
    """Parse '1,2,10-20' (ranges inclusive) into a list of distinct seeds, in order.

    With ``variations`` the items may also be variation ids ('42v3', '42v1-4'), returned as
    canonical strings next to the int seeds; without, such an item is refused in one sentence.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        items = [str(spec)]
    elif isinstance(spec, (list, tuple, range)):
        items = [str(s) for s in spec]
    elif isinstance(spec, str):
        items = spec.split(",")
    else:
        raise UserError(f"seeds must be a list like 1,2,10-20, not {type(spec).__name__}")
    seeds: list = []
    seen: set = set()
    for item in items:
        text = item.strip()
        if not text:
            raise UserError(f"empty item in seed list {spec!r}: use a form like 1,2,10-20")
        if text.startswith("-") or text.startswith("−"):
            raise UserError(f"seed {text!r} is negative: seeds are whole numbers from 0 to {JS_SAFE_SEEDS - 1} "
                            f"(2^53 - 1) for new pictures")
        match = _SEED_ITEM.match(text)
        if not match:
            hint = " or variation ids like 42v3" if variations else ""
            raise UserError(f"cannot read seed {text!r}: use whole numbers and ranges like 1,2,10-20{hint}")
        first = int(match.group(1))
        if first > MAX_SEED:
            raise UserError(f"seed {first} is too large: seeds go from 0 to {MAX_SEED}")
        steps = [(marker.lower(), int(n)) for marker, n in _ID_STEP.findall(match.group(2))]
        markers, path = [m for m, _ in steps], [n for _, n in steps]
        if path and not variations:
            raise UserError(f"{text!r} names a variation (made by `pipeline vary`); here only plain seeds "
                            f"like 1,2,10-20 can be given")
        if any(n < 1 for n in path):
            raise UserError(f"cannot read {text!r}: variations are numbered from 1, as in 42v1")
        last_given = int(match.group(3)) if match.group(3) is not None else None
        if path:
            low = path[-1]
            high = low if last_given is None else last_given
            names = [picture_id(first, markers, [*path[:-1], n]) for n in range(low, high + 1)]
        else:
            high = first if last_given is None else last_given
            low = first
            if high > MAX_SEED:
                raise UserError(f"seed {high} is too large: seeds go from 0 to {MAX_SEED}")
            names = None
        if high < low:
            raise UserError(f"seed range {text!r} runs backwards: write it as {high}-{low}" if not path else
                            f"variation range {text!r} runs backwards")
        if high - low + 1 + len(seeds) > MAX_SEEDS_PER_SPEC:
            raise UserError(f"seed list {spec!r} has more than {MAX_SEEDS_PER_SPEC} seeds")
        for seed in names if names is not None else range(low, high + 1):
            if seed not in seen:
                seen.add(seed)
                seeds.append(seed)
    if not seeds:
        raise UserError("no seeds given: use a form like 1,2,10-20")
    return seeds


def variation_id(seed: int, *numbers: int) -> str:
    """variation_id(42, 3) -> '42v3'; variation_id(42, 3, 1) -> '42v3v1'."""
    return str(int(seed)) + "".join(f"v{int(n)}" for n in numbers)


def picture_id(seed: int, markers, numbers) -> str:
    """picture_id(42, ["v", "i"], [3, 1]) -> '42v3i1' (a fix of variation 42v3)."""
    return str(int(seed)) + "".join(f"{m}{int(n)}" for m, n in zip(markers, numbers))


def pick_path(pick) -> tuple[int, ...]:
    """42 -> (42,); '42v3v1' -> (42, 3, 1); '42i1' -> (42, 1): sorting by it puts variations (and fixes)
    right after their parent."""
    if isinstance(pick, int):
        return (pick,)
    return tuple(int(n) for n in re.split("[vi]", str(pick).lower()))


def pick_parent(pick):
    """The picture a variation was made from ('42v3v1' -> '42v3', '42v3' -> 42); None for a seed."""
    path = pick_path(pick)
    if len(path) == 1:
        return None
    return path[0] if len(path) == 2 else variation_id(*path[:-1])


def pick_root(pick) -> int:
    """The seed a picture descends from: 42 for 42, 42v3 and 42v3v1."""
    return pick_path(pick)[0]


def seeds_from_count(count: int, base: int) -> list[int]:
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    if count > MAX_SEEDS_PER_SPEC:
        raise UserError(f"--count {count} is more than {MAX_SEEDS_PER_SPEC} candidates")
    if base < 0 or base + count - 1 >= JS_SAFE_SEEDS:  # the seeds of new pictures
        raise UserError(f"base seed {base} is out of range: with --count {count}, seeds go from 0 to "
                        f"{JS_SAFE_SEEDS - 1} (2^53 - 1), the largest that A1111, ComfyUI and other "
                        f"JavaScript pages read back exactly")
    return list(range(base, base + count))


def seed_ranges(seeds: list, sep: str = ", ") -> str:
    """[1, 2, 3, 7] -> '1-3, 7'; variation ids are listed after the seeds, one by one."""
    parts: list[str] = []
    start = prev = None
    for seed in [s for s in seeds if isinstance(s, int)]:
        if start is not None and seed == prev + 1:
            prev = seed
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if prev > start else str(start))
        start = prev = seed
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else str(start))
    parts += [str(s) for s in sorted((s for s in seeds if not isinstance(s, int)), key=pick_path)]
    return sep.join(parts)


def pick_order(value) -> tuple:
    """A sort key for recorded pictures by seed or variation id (42, 42v1, 42v1v1, 42v2, 43); anything
    else (None, a damaged entry) sorts last."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return (1, ())
        return (0, pick_path(value))
    except ValueError:
        return (1, ())
