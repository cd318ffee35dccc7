"""`pipeline ui`: a real server (the CLI, on a free loopback port, tiny model) driven by gradio_client.

Each named endpoint; two clients asking for the same seeds at once; loopback by default; a LAN
address without a password refused; files outside the output folder refused; kill -9 mid-explore,
then a restart resumes. Skips (with the reason) where Gradio is not installed (pip install '.[ui]').
"""
from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import cli_env, run_cli
from ui_server import AppServer, Server, module_server

gradio_client = pytest.importorskip("gradio_client", reason="the browser app's extra is not installed: pip install '.[ui]'")
pytest.importorskip("gradio", reason="the browser app's extra is not installed: pip install '.[ui]'")

SIZE = 64


server = module_server("ui")


def explore(client, prompt: str, seeds: str, steps: int = 2) -> dict:
    """The explore endpoint: (gallery, status, run, picks, result); returns the result JSON."""
    outputs = client.predict(prompt, "", SIZE, SIZE, 1, seeds, steps, 0, api_name="/explore")
    result = outputs[-1]
    assert outputs[3] == Path(result["run_dir"]).name
    return result


def test_each_endpoint_works_on_real_files(server):
    client = server.client()
    first = explore(client, "a red fox in snow", "1-4")
    run_dir = Path(first["run_dir"])
    assert (first["planned"], first["computed"]) == (4, 4)
    assert sorted(p.name for p in (run_dir / "explore").glob("seed-*.png")) == [f"seed-{s}.png" for s in (1, 2, 3, 4)]

    refined = client.predict(run_dir.name, "2,4", "hires", 0.5, 2, "", api_name="/refine")[-1]
    assert refined["computed"] == 2
    assert {Path(f).name for f in refined["files"]} == {"seed-2.png", "seed-4.png"}
    assert all(Path(f).is_file() and Path(f).parent == run_dir / "refine" for f in refined["files"])

    upscaled = client.predict(run_dir.name, "", "realesr-animevideov3", api_name="/upscale")[-1]
    assert upscaled["computed"] == 2
    from PIL import Image

    for name in ("seed-2.png", "seed-4.png"):
        with Image.open(run_dir / "upscale" / name) as image:
            assert image.size == (SIZE * 2 * 4, SIZE * 2 * 4)

    table = client.predict(api_name="/runs")[0]
    row = next(r for r in table["data"] if r[1] == run_dir.name)
    assert row[3:] == ["a red fox in snow", 4, 0, 2, 2]
    assert row[0].startswith("![](/gradio_api/file=")  # its first candidate's thumbnail

    # open_run takes a run's name (an API client has no list of choices)
    opened = client.predict(run_dir.name, api_name="/open_run")
    assert opened[0] == run_dir.name and tuple(opened[-2:]) == (4, "1-4")  # Count and Seeds restored
    with pytest.raises(Exception, match="there is no run 'no-such-run'"):
        client.predict("no-such-run", api_name="/open_run")
    data = json.loads((run_dir / "run.json").read_text())
    assert len(data["refine"]["pictures"]) == 2 and len(data["upscale"]["pictures"]) == 2

    # the CLI sees the app's work: refining the same seeds computes nothing
    again = json.loads(run_cli("refine", "--run", run_dir, "--seeds", "2,4", "--out", server.out, "--json").stdout)
    assert (again["computed"], again["stored"]) == (0, 2)


def test_user_errors_are_one_sentence_and_write_nothing(server):
    client = server.client()
    before = sorted(p.name for p in server.out.iterdir()) if server.out.exists() else []
    with pytest.raises(Exception, match="multiple of 16|500"):
        client.predict("a cat", "", 500, 500, 1, "1", 2, 0, api_name="/explore")
    with pytest.raises(Exception, match="cannot read seed 'abc'"):
        client.predict("a cat", "", SIZE, SIZE, 1, "abc", 2, 0, api_name="/explore")
    with pytest.raises(Exception, match="no run is open|there is no run"):
        client.predict("", "", "hires", 0.5, 2, "", api_name="/refine")
    with pytest.raises(Exception, match="must be a plain folder name"):
        client.predict("../../etc", "1", "realesr-animevideov3", api_name="/upscale")
    after = sorted(p.name for p in server.out.iterdir()) if server.out.exists() else []
    assert after == before


def test_detail_from_the_page_is_recorded_and_made_again_by_its_command(server):
    from pipeline.web.app import pictures

    client = server.client()
    run_dir = Path(explore(client, "a detailed fox", "60")["run_dir"])
    client.predict(run_dir.name, "60", "hires", 0.5, 2, "", api_name="/refine")
    done = client.predict(run_dir.name, "", "realesr-animevideov3", 0.3, api_name="/upscale")[-1]
    assert done["computed"] == 1
    record = json.loads((run_dir / "run.json").read_text())["upscale"]["pictures"][0]
    assert record["detail"] == 0.3 and record["upscaler"] == "realesr-animevideov3"
    view = pictures.view(run_dir)
    command = pictures.command(server.out, run_dir, view.upscaled[0], view.data)
    assert "--upscaler realesr-animevideov3 --detail 0.3" in command, command
    again = json.loads(run_cli(*command.split()[1:], "--json").stdout)  # the page's command, as printed
    assert (again["computed"], again["stored"]) == (0, 1)


def test_unknown_upscaler_weights_are_refused(server):
    client = server.client()
    run = explore(client, "a lighthouse", "30")
    client.predict(Path(run["run_dir"]).name, "30", "hires", 0.5, 2, "", api_name="/refine")
    with pytest.raises(Exception, match="unknown upscaler weights 'no-such-weights'"):
        client.predict(Path(run["run_dir"]).name, "", "no-such-weights", api_name="/upscale")
    assert not (Path(run["run_dir"]) / "upscale").exists()


def test_two_clients_asking_for_the_same_seeds_compute_each_picture_once(server):
    a, b = server.client(), server.client()
    results = {}

    def call(name, client):
        results[name] = explore(client, "two tabs, one store", "10-13")

    threads = [threading.Thread(target=call, args=(name, c)) for name, c in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert set(results) == {"a", "b"}
    assert results["a"]["computed"] + results["b"]["computed"] == 4
    assert results["a"]["stored"] + results["b"]["stored"] == 4
    keys = {item["key"] for r in results.values() for item in r["items"]}
    assert len(keys) == 4


def test_it_listens_on_loopback_only_by_default(server):
    port_hex = f"{server.port:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            if local.endswith(":" + port_hex) and state == "0A":  # LISTEN
                listening.append(local.split(":")[0])
    if not listening:
        pytest.skip("cannot read the listening sockets from /proc/net/tcp here")
    assert listening == ["0100007F"], listening  # 127.0.0.1, nothing else


def test_a_lan_address_without_a_password_is_refused(tmp_path):
    proc = run_cli("ui", "--host", "0.0.0.0", "--model", "tiny-random", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --host 0.0.0.0 lets other machines in: give a password with --auth USER:PASS or --auth-file FILE "
        "(or keep the default 127.0.0.1)"]
    proc = run_cli("ui", "--host", "0.0.0.0", "--auth", "alice", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "USER:PASS" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_without_gradio_it_says_how_to_install_it(tmp_path):
    fake = tmp_path / "site"
    (fake / "gradio").mkdir(parents=True)
    (fake / "gradio" / "__init__.py").write_text("raise ImportError('No module named gradio')\n")
    env = cli_env(PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    proc = run_cli("ui", "--out", tmp_path / "o", env=env, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the browser app needs Gradio: pip install 'pipeline[ui]'"


def test_files_are_served_only_from_the_output_folder(server, tmp_path):
    client = server.client()
    run = Path(explore(client, "served files", "40")["run_dir"])
    secret = server.out.parent / "secret.txt"
    secret.write_text("not for the browser")
    inside = run / "explore" / "seed-40.png"
    assert server.get(f"/gradio_api/file={inside}") == 200  # the check below can fail
    for path in ("/etc/passwd", str(secret), f"{server.out}/../secret.txt", f"{run}/../../secret.txt",
                 "../../../../etc/passwd", "http://example.com/x.png", "https%3A//example.com/x.png"):
        assert server.get(f"/gradio_api/file={path}") in (403, 404), path


def test_stop_ends_a_library_explore_after_the_current_picture(tmp_path):
    from pipeline import Pipeline

    stop, seen = threading.Event(), []

    def on_picture(item):
        seen.append(item.seed)
        stop.set()

    with Pipeline(model="tiny-random", out=tmp_path / "o") as p:
        result = p.explore("stop early", seeds=[1, 2, 3], size=(SIZE, SIZE), steps=2, on_picture=on_picture, stop=stop)
        assert result.seeds == [1] and seen == [1] and result.computed == 1
        assert [c["seed"] for c in json.loads((result.run_dir / "run.json").read_text())["explore"]["pictures"]] == [1]
        resumed = p.explore("stop early", seeds=[1, 2, 3], size=(SIZE, SIZE), steps=2,
                             on_picture=lambda item: seen.append(item.seed))
        assert (resumed.computed, resumed.stored) == (2, 1) and sorted(seen) == [1, 1, 2, 3]


def test_kill_9_mid_explore_then_a_restart_reuses_the_finished_pictures(tmp_path):
    out = tmp_path / "outputs"
    srv = Server(out)
    try:
        # 24 pictures of 8 steps: the kill lands mid-run however fast pictures come, and the streamed
        # status (at most 3 updates a second) may skip counts, so any count from 2 to 23 will do
        job = srv.client().submit("killed mid-run", "", SIZE, SIZE, 1, "50-73", 8, 0, api_name="/explore")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = [o for o in job.outputs() if re.match(r"([2-9]|1\d|2[0-3]) of 24", o[1])]
            if done:
                break
            time.sleep(0.2)
        assert done, "no picture arrived"
        srv.kill(signal.SIGKILL)
    finally:
        srv.kill(signal.SIGKILL)
    finished = {p.name for p in out.glob("*/explore/seed-*.png")}
    assert 2 <= len(finished) < 24
    srv = AppServer(out)  # the app again, on what the killed process left (here, in the test process)
    try:
        result = explore(srv.client(), "killed mid-run", "50-73", steps=8)
    finally:
        srv.kill()
    assert result["stored"] >= len(finished) and result["computed"] == 24 - result["stored"]


def test_with_auth_only_the_right_password_gets_in(tmp_path):
    srv = Server(tmp_path / "outputs", "--auth", "alice:secret")
    try:
        assert srv.get("/gradio_api/info") in (401, 403)  # nothing without logging in
        with pytest.raises(Exception):
            srv.client(auth=("alice", "wrong"))
        table = srv.client(auth=("alice", "secret")).predict(api_name="/runs")[0]
        assert table["data"] == [] or table["data"] is None or table["data"] == [[""] * 8]
    finally:
        srv.kill()


def test_the_readme_client_script_runs(server, tmp_path):
    from conftest import manual_text

    text = manual_text()
    script = next(block for block in text.split("```python\n")[1:] if "from gradio_client import Client" in block)
    script = script.split("```")[0].replace("http://127.0.0.1:7860/", server.url)
    script = script.replace("512, 512, 4, \"\", 8, 0", f"{SIZE}, {SIZE}, 4, \"\", 2, 0")  # small and quick
    assert f"{SIZE}, {SIZE}, 4" in script
    (tmp_path / "client.py").write_text(script)
    proc = subprocess.run([sys.executable, str(tmp_path / "client.py")], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = ast.literal_eval(proc.stdout.strip().splitlines()[-1])  # its last line: the upscaled files
    assert len(files) == 2 and all(Path(f).is_file() and Path(f).parent.name == "upscale" for f in files)


def test_upscale_says_how_long_before_it_starts_then_counts_tiles(tmp_path, monkeypatch):
    """The page's upscale: an estimate from a probe timed on this machine, then progress over tiles."""
    from pipeline import Pipeline
    from pipeline.web.app import upscale_panel
    from pipeline.web.app.state import AppState

    out = tmp_path / "outputs"
    with Pipeline(model="tiny-random", out=out, progress=False) as p:
        p.explore("a fox", seeds=[1], size=(SIZE, SIZE), steps=2, run="r")
        p.refine(seeds=[1], run="r", size=(2 * SIZE, 2 * SIZE))
        updates = list(upscale_panel._upscale(AppState(p, out), "tab", "r", "", "realesr-animevideov3"))
    statuses = [update[1] for update in updates if isinstance(update[1], str)]
    estimate = next(n for n, s in enumerate(statuses) if s.startswith("upscaling 1: about "))
    assert "on this machine" in statuses[estimate], statuses
    tiles = next(n for n, s in enumerate(statuses) if "tile 1 of 1" in s)
    assert estimate < tiles < len(statuses) - 1, statuses
    assert statuses[-1].startswith("upscaled 1 of 1 · 1 computed")
    assert updates[-1][-1]["computed"] == 1 and Path(updates[-1][-1]["files"][0]).is_file()


def test_a_picture_from_disk_is_upscaled_into_the_upscaled_folder(tmp_path):
    """The page's "Upscale it": a picture from disk, not a run's; the result lands in OUT/upscaled/."""
    from PIL import Image

    from pipeline import Pipeline
    from pipeline.web.app import upscale_panel
    from pipeline.web.app.state import AppState

    out = tmp_path / "outputs"
    picture = tmp_path / "photo.png"
    Image.new("RGB", (48, 32), "teal").save(picture)
    with Pipeline(model="tiny-random", out=out, progress=False) as p:
        updates = list(upscale_panel._upscale(AppState(p, out), "tab", None, None, "realesr-animevideov3",
                                              files=[str(picture)], out_dir=str(out / "upscaled")))
    result = updates[-1][-1]
    assert result["computed"] == 1 and result["seeds"] == ["photo.png"]
    (made,) = map(Path, result["files"])
    assert made.parent == out / "upscaled" and made.is_file()
    with Image.open(made) as image:
        assert image.size == (192, 128)
    assert not [p for p in out.iterdir() if (p / "run.json").is_file()]  # no run made for it
