"""Explore streams linearly: each update the server sends carries only the candidates that are new
(Gradio sends a generator's later values as diffs of the grid's value), never the whole grid again.

Measured on the wire: the app's own queue protocol (POST queue/join, then the server-sent events of
queue/data), as the page receives them. No timing asserts: bytes and counts only.
"""
from __future__ import annotations

import json
import uuid

import pytest

from ui_server import AppServer

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")
httpx = pytest.importorskip("httpx")

COUNT = 24


def explore_events(server: AppServer, seeds: str, size: int = 64, steps: int = 1) -> list[dict]:
    """The server-sent events of one explore, as (bytes of the line, its message) dicts."""
    config = httpx.get(server.url + "config", timeout=60).json()
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "explore")
    session = uuid.uuid4().hex[:12]
    inputs = {c["id"]: c for c in config["components"]}
    # the form's current inputs with their defaults, then ours by label
    data = [inputs[i].get("props", {}).get("value") for i in dep["inputs"]]
    labels = [str(inputs[i].get("props", {}).get("label")) for i in dep["inputs"]]
    wanted = {"Prompt": "streaming", "Width": size, "Height": size, "or seeds": seeds, "Steps": steps, "Guidance": 0}
    data = [wanted.get(label, value) for label, value in zip(labels, data)]
    joined = httpx.post(server.url + "gradio_api/queue/join", timeout=60,
                        json={"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None,
                              "trigger_id": dep["targets"][0][0]})
    assert joined.status_code == 200, joined.text
    events = []
    with httpx.stream("GET", server.url + f"gradio_api/queue/data?session_hash={session}", timeout=600) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            events.append({"bytes": len(line.encode()), "msg": message})
            if message.get("msg") == "process_completed":
                break
    return events


def added_items(edits) -> int:
    return sum(1 for op, path, _ in edits if op == "add" and path[:1] == ["items"])


def test_explore_sends_each_candidate_once(tmp_path):
    server = AppServer(tmp_path / "outputs")
    try:
        events = explore_events(server, f"1-{COUNT}")
    finally:
        server.kill()
    done = events[-1]["msg"]
    assert done["msg"] == "process_completed" and done["success"], done
    assert len(done["output"]["data"][0]["items"]) == COUNT  # the final, whole value

    updates = [e for e in events if e["msg"]["msg"] == "process_generating"]
    first, streamed = updates[0], updates[1:]
    assert first["msg"]["output"]["data"][0]["items"] == []  # a new run starts with an empty grid
    grid_diffs = [u["msg"]["output"]["data"][0] for u in streamed]
    assert all(isinstance(d, list) for d in grid_diffs), "later updates are diffs, not whole values"
    assert sum(added_items(d) for d in grid_diffs) == COUNT  # every candidate sent once, and only once
    assert len(streamed) <= COUNT + 1  # batched when they arrive together, never more than one per picture

    # per update, the grid's bytes depend on how many candidates are new, not on how many are shown
    per_candidate = [len(json.dumps(d)) / added_items(d) for d in grid_diffs if added_items(d)]
    early, late = per_candidate[: len(per_candidate) // 2], per_candidate[len(per_candidate) // 2:]
    assert max(late) <= 1.2 * max(early), per_candidate
    assert max(per_candidate) < 400, per_candidate
    # and the whole message (grid, status line, button, progress bar) stays small; the last one also
    # carries the stage's result JSON
    assert all(u["bytes"] < 1200 + 400 * max(1, added_items(u["msg"]["output"]["data"][0])) for u in streamed[:-1])
