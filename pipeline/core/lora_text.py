"""LoRAs in the texts other programs read: A1111's ``<lora:name:weight>`` prompt tags and ``Lora hashes``,
and the label people read (``style 0.8, ink 1``)."""
from __future__ import annotations

import re


def _fmt_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def lora_hashes(loras) -> str | None:
    """A1111's ``Lora hashes`` value (extensions-builtin/Lora/extra_networks_lora.py): ``name: hash`` joined
    by ``, ``, the name without ``:`` and ``,``, the hash the first 12 hex of A1111's LoRA hash (quoted
    by ``quote`` since it holds a colon)."""
    entries = [f"{_lora_tag_name(r['name'])}: {r['a1111_hash']}"
               for r in loras or () if isinstance(r, dict) and r.get("a1111_hash") and r.get("name")]
    return ", ".join(entries) or None


def _lora_tag_name(name) -> str:
    """A LoRA's name as a tag and ``Lora hashes`` entry can hold it (no ``:``, ``,``, ``<``, ``>``)."""
    return "".join(c for c in str(name) if c not in ":,<>")


def lora_tags(loras) -> str:
    """The LoRAs as A1111 writes them in its prompt, ``<lora:name:weight>`` each (how a paste re-applies
    them, how ComfyUI's importer and civitai read the weight); weight-0 LoRAs were not applied."""
    return " ".join(f"<lora:{_lora_tag_name(r['name'])}:{_fmt_number(float(r.get('weight', 1.0)))}>"
                    for r in loras or () if isinstance(r, dict) and r.get("name")
                    and isinstance(r.get("weight", 1.0), (int, float)) and r.get("weight", 1.0) != 0)


LORA_TAG = re.compile(r"\s*<lora:([^:>]+):([^:>]*)(?::[^>]*)?>")


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, float]]]:
    """A prompt without its ``<lora:name:weight>`` tags, and the tags as (name, weight)."""
    tags = []
    for name, weight in LORA_TAG.findall(prompt):
        try:
            tags.append((name, float(weight)))
        except ValueError:
            tags.append((name, 1.0))
    return LORA_TAG.sub("", prompt).strip(" "), tags


def lora_label(loras) -> str:
    """A run's or picture's LoRAs for people: ``style 0.8, ink 1``."""
    return ", ".join(f"{r.get('name', '?')} {_fmt_number(r.get('weight', 1.0))}"
                     for r in loras or () if isinstance(r, dict))


def parse_lora_hashes(value: str) -> dict[str, str]:
    """A ``Lora hashes`` value back as {name: hash}, by A1111's rule (lora_script.py ``infotext_pasted``)."""
    pairs = [item.strip().split(":", 1) for item in value.split(",")]
    return {pair[0].strip().replace(",", ""): pair[1].strip() for pair in pairs if len(pair) == 2}
