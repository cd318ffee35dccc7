"""An API-format ComfyUI graph as the UI graph (``workflow`` chunk) ComfyUI's frontend loads from a PNG:
nodes with their link inputs, outputs, ``widgets_values`` in widget order and a position; links as
``[id, from node, from slot, to node, to slot, type]``; format version 0.4 (as the templates)."""
from __future__ import annotations

from .comfy_nodes import UI_WIDGETS, link_inputs, outputs, widget_inputs

COLUMN, ROW = 380, 40  # layout: one column per depth, nodes stacked in each


def comfy_workflow(prompt: dict) -> dict:
    links, node_links_in, node_links_out = [], {}, {}
    for target, node in prompt.items():
        for slot, (name, kind) in enumerate(link_inputs(node["class_type"])):
            value = node["inputs"].get(name)
            if not isinstance(value, list):
                continue
            link_id = len(links) + 1
            links.append([link_id, int(value[0]), int(value[1]), int(target), slot, kind])
            node_links_in[(target, name)] = link_id
            node_links_out.setdefault((value[0], int(value[1])), []).append(link_id)
    depth = _depths(prompt)
    heights: dict[int, int] = {}
    nodes = []
    for order, (node_id, node) in enumerate(prompt.items()):
        class_type = node["class_type"]
        column = depth[node_id]
        y = heights.get(column, 0)
        widgets = []
        for name in widget_inputs(class_type):
            widgets.append(node["inputs"].get(name))
            if (class_type, name) in UI_WIDGETS:
                widgets.append(UI_WIDGETS[(class_type, name)])
        size_h = 60 + 26 * (len(widgets) + max(len(link_inputs(class_type)), len(outputs(class_type))))
        heights[column] = y + size_h + ROW
        nodes.append({
            "id": int(node_id), "type": class_type, "pos": [column * COLUMN, y], "size": [320, size_h],
            "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": name, "type": kind, "link": node_links_in.get((node_id, name))}
                       for name, kind in link_inputs(class_type)],
            "outputs": [{"name": name, "type": kind, "slot_index": slot,
                         "links": node_links_out.get((node_id, slot), [])}
                        for slot, (name, kind) in enumerate(outputs(class_type))],
            "properties": {"Node name for S&R": class_type},
            "widgets_values": widgets,
        })
    return {"last_node_id": max((int(k) for k in prompt), default=0), "last_link_id": len(links),
            "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def _depths(prompt: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def of(node_id: str) -> int:
        if node_id not in depth:
            depth[node_id] = 0  # ids are in creation order: inputs come first, no cycles
            sources = [v[0] for v in prompt[node_id]["inputs"].values() if isinstance(v, list)]
            depth[node_id] = 1 + max((of(s) for s in sources), default=-1)
        return depth[node_id]

    for node_id in prompt:
        of(node_id)
    return depth
