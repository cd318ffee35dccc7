"""The grids' server functions (grid.py) on a real run: pick, describe and the zips answer one
sentence for a user error and never reach outside the output folder. No browser, no server."""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import pytest

from conftest import run_cli

pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")


@pytest.fixture
def functions(out):
    from pipeline.web.app.grid import server_functions
    from pipeline.web.app.state import AppState

    run_cli("explore", "a pear", "--model", "tiny-random", "--size", "64", "--steps", "1", "--seeds", "3,4,5",
            "--out", out, "--run", "pears")
    return {fn.__name__: fn for fn in server_functions(AppState(None, out))}


def test_pick_describe_zip(functions, out):
    run = out / "pears"
    assert functions["pick"]({"run": "pears", "seed": "4", "on": True}) == {"picks": ["4"]}
    assert functions["pick"]({"run": "pears", "seed": "3", "on": True}) == {"picks": ["4", "3"]}
    assert functions["pick"]({"run": "pears", "seed": "3", "on": True}) == {"picks": ["4", "3"]}  # twice: once
    assert functions["pick"]({"run": "pears", "seed": "4", "on": False}) == {"picks": ["3"]}
    assert json.loads((run / "picks.json").read_text()) == {"seeds": [3]}
    assert re.search(r'"picks":\s*\["3"\]', (run / "index.html").read_text())

    told = functions["describe"]({"run": "pears", "stage": "explore", "p": "explore/seed-5.png"})
    rows = dict(told["params"])
    assert rows["seed"] == "5" and rows["prompt"] == "a pear" and rows["size"] == "64×64"
    assert told["command"].startswith("pipeline explore 'a pear' --seeds 5 ")

    made = functions["zip_pictures"]({"run": "pears", "which": "picked"})
    assert made["count"] == 1 and made["name"] == "pears-picked.zip"
    with zipfile.ZipFile(out / ".downloads" / "pears-picked.zip") as archive:
        assert archive.namelist() == ["explore/seed-3.png"]
        assert archive.read("explore/seed-3.png") == (run / "explore" / "seed-3.png").read_bytes()


@pytest.mark.parametrize("call, data, says", [
    ("pick", {"run": "../../etc", "seed": "1", "on": True}, "run name"),
    ("pick", {"run": "nope", "seed": "1", "on": True}, "no run 'nope'"),
    ("pick", {"run": "pears", "seed": "3v1", "on": True}, "3v1 is not a candidate of run pears"),  # none made yet
    ("pick", {"run": "pears", "seed": "3x", "on": True}, "only candidates can be picked"),
    ("describe", {"run": "pears", "stage": "explore", "p": "../../../etc/passwd"}, "is not a picture of this run"),
    ("zip_pictures", {"run": "pears", "which": "picked"}, "nothing is picked yet"),
    ("zip_pictures", {"run": "pears", "which": "../x"}, "picked, refine or upscale"),
    ("zip_pictures", {"run": "pears", "which": "refine"}, "no refined pictures yet"),
    ("pick", ["pears", 1], "malformed"),
])
def test_user_errors_are_one_sentence(functions, out, call, data, says):
    answer = functions[call](data)
    assert set(answer) == {"error"} and says in answer["error"], answer
    assert not (Path("/etc") / "pears").exists()
    assert not (out / ".downloads").exists()
