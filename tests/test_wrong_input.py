"""Wrong input and what a person reads (issue 21, items 3 and 4), through the CLI.

One sentence and exit status 2, before anything loads; hints that can be copied as printed;
a terminal never shown raw control characters; progress bars only on a terminal.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import cli_env, run_cli

TINY = ["--model", "tiny-random", "--size", "64", "--steps", "1"]
PROMPT = "a red fox in snow"
LOADING = "building the tiny-random test model"


def one_sentence(proc, *parts):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and LOADING not in proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("device", ["gpu", "CPU", "mps", "cuda:x"])
def test_a_wrong_device_is_refused_up_front(tmp_path, device):
    proc = run_cli("explore", PROMPT, *TINY, "--seeds", "1", "--device", device, "--out", tmp_path, check=False)
    line = one_sentence(proc, f"device {device!r}", "cpu")
    if device != "mps":
        assert "auto, cpu, cuda, cuda:N" in line
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_wrong_device_in_a_config_the_api_and_the_app(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"model: tiny-random\ndevice: gpu\nout: {tmp_path / 'o'}\nprompts: [a fox]\n"
                      "explore: {seeds: [1], size: 64}\n")
    one_sentence(run_cli("run", config, check=False), "c.yaml:2: device: device 'gpu' is not a device",
                 "auto, cpu, cuda")
    one_sentence(run_cli("config", "show", config, check=False), "device 'gpu'")
    one_sentence(run_cli("ui", "--model", "tiny-random", "--device", "gpu", "--out", tmp_path / "o", check=False),
                 "device 'gpu'")
    assert not (tmp_path / "o").exists()
    from pipeline import Pipeline
    from pipeline.core.errors import UserError

    with pytest.raises(UserError, match="device 'mps' is Apple silicon's GPU"):
        Pipeline(model="tiny-random", out=tmp_path / "o", device="mps")


def test_no_network_says_what_offline_says_and_how_to_try_without_weights(tmp_path, monkeypatch):
    env = cli_env(HF_HOME=tmp_path / "hf", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    env.pop("HF_HUB_OFFLINE"), env.pop("PIPELINE_OFFLINE")
    proc = run_cli("explore", PROMPT, "--seeds", "1", "--out", tmp_path / "o", env=env, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("error: model Tongyi-MAI/Z-Image-Turbo is not in the local Hugging Face cache")
    assert "no network" in error and "--model tiny-random" in error and "ConnectError" not in error
    from pipeline.models.hub import not_cached_error  # the offline case's sentence (test_explore runs it)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    offline = str(not_cached_error("Tongyi-MAI/Z-Image-Turbo"))
    assert error == "error: " + offline.replace(" here:", " here (the Hugging Face Hub cannot be reached: no network):")


def test_model_names_that_are_not_there(tmp_path):
    (tmp_path / "models").mkdir()
    proc = run_cli("explore", PROMPT, "--model", "models/zimage", "--seeds", "1", "--out", tmp_path / "o",
                   cwd=tmp_path, check=False)
    one_sentence(proc, "no such folder: models/zimage")
    assert "33 GB" not in proc.stderr
    one_sentence(run_cli("explore", PROMPT, "--model", "./zimage", "--out", tmp_path / "o", check=False),
                 "no such folder: ./zimage")
    one_sentence(run_cli("explore", PROMPT, "--model", "tiny_random", "--out", tmp_path / "o", check=False),
                 "did you mean tiny-random?")


def test_next_hints_keep_run_and_out_and_can_be_copied(tmp_path):
    out = tmp_path / "my outputs"
    explored = run_cli("explore", PROMPT, *TINY, "--seeds", "1-2", "--run", "fox", "--out", out).stdout
    hint = explored.strip().splitlines()[-1]
    assert hint.startswith(f"next: pipeline refine --seeds 1,2 --run fox --out {shlex.quote(str(out))}")
    command = shlex.split(hint.split("   (")[0][len("next: "):])
    refined = run_cli(*command[1:], "--steps", "1", "--scale", "1", cwd=tmp_path).stdout  # works as printed
    upscale_hint = refined.strip().splitlines()[-1]
    assert upscale_hint.startswith(f"next: pipeline upscale --run fox --out {shlex.quote(str(out))}")
    assert json.loads((out / "fox" / "run.json").read_text())["refine"]["pictures"]


def test_show_escapes_carriage_returns_and_bidi_overrides(tmp_path):
    hostile = "a fox\rHIDDEN \u202eevil\u202c \x1b[2J end"
    run_cli("explore", hostile, *TINY, "--seeds", "1", "--run", "r", "--out", tmp_path)
    shown = run_cli("show", tmp_path / "r" / "explore" / "seed-1.png").stdout
    assert "\r" not in shown and "\u202e" not in shown and "\x1b" not in shown
    assert "a fox\\rHIDDEN \\u202eevil\\u202c \\x1b[2J end" in shown
    emoji = "a 👩‍🚀 fox"  # a zero-width joiner is part of the text, not hidden
    run_cli("explore", emoji, *TINY, "--seeds", "1", "--run", "e", "--out", tmp_path)
    assert emoji in run_cli("show", tmp_path / "e" / "explore" / "seed-1.png").stdout


def test_library_wording_does_not_leak(tmp_path):
    one_sentence(run_cli("explore", "", *TINY, "--out", tmp_path, check=False), "the prompt is empty")
    line = one_sentence(run_cli("explore", PROMPT, *TINY, "--batch", "100", "--out", tmp_path, check=False))
    assert line == "error: batch must be auto or a whole number from 1 to 64, not 100"
    line = one_sentence(run_cli("explore", "-a fox in snow", *TINY, "--out", tmp_path, check=False))
    assert line == ("error: pipeline explore has no option -a; a PROMPT that starts with '-' goes after --, "
                    "e.g. pipeline explore -- '-a fox in snow'")
    run_cli("explore", *TINY, "--seeds", "1", "--out", tmp_path, "--run", "dash", "--", "-a fox in snow")
    assert json.loads((tmp_path / "dash" / "run.json").read_text())["prompt"] == "-a fox in snow"
    assert "did you mean --seed" in run_cli("explore", PROMPT, "--sed", "1", check=False).stderr


def test_the_readme_config_error_example_is_what_is_printed(tmp_path):
    from conftest import manual_text

    readme = manual_text()
    config = re.search(r"For example, this `fox.yaml`:\n\n```yaml\n(.*?)```", readme, re.S).group(1)
    command, printed = re.search(r"`(pipeline run fox.yaml[^`]*)` prints[^\n]*\n\n```\n(.*?)```", readme, re.S).groups()
    (tmp_path / "fox.yaml").write_text(config)
    proc = run_cli(*shlex.split(command)[1:], cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr == printed


def test_progress_is_one_line_per_stage_in_a_log_file(tmp_path):
    proc = run_cli("explore", PROMPT, *TINY, "--seeds", "1-3", "--out", tmp_path)
    assert "\r" not in proc.stderr and "%|" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len([line for line in lines if line.startswith("explore: 3 img in ")]) == 1, proc.stderr


def test_progress_bar_on_a_terminal_never_holds_a_status_line(tmp_path):
    """In a pseudo-terminal: the bar is drawn, and every status line starts on a cleared line."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "explore", PROMPT, *TINY, "--seeds", "1-2",
                             "--out", str(tmp_path)], stdin=follower, stdout=follower, stderr=follower,
                            env=cli_env())
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=600) == 0
    text = output.decode()
    assert "explore: 100%|" in text or "explore:  50%|" in text  # a bar on a terminal
    for status in ("encoding the prompt", "explore: 2 computed"):
        if status in text:
            before = text[:text.index(status)]
            assert before.endswith(("\r", "\n")), repr(before[-120:])  # never after a bar's text


def test_run_with_several_prompts_names_each_gallery(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(f"model: tiny-random\nout: {tmp_path / 'o'}\nprompts: [a fox, a cat]\n"
                      "explore: {seeds: [1], size: 64, steps: 1}\n")
    shown = run_cli("run", config).stdout
    for name in ("a-fox", "a-cat"):
        assert f"  gallery  {tmp_path / 'o' / name / 'index.html'}" in shown
