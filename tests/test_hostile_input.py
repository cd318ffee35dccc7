"""Hostile files and code paths: pickled code in weights, remote code, bad images, escaping names."""
from __future__ import annotations

import ast
import os
import pickle
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from conftest import run_cli

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
FAST = ["--upscaler", "realesr-animevideov3"]


def one_error(stderr: str) -> bool:
    """Exactly one error line (progress bars aside), and no traceback."""
    return len([line for line in stderr.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in stderr


def _evil(marker: Path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    return {"params_ema": {"conv.weight": Evil()}}


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "img.png"
    Image.new("RGB", (16, 16), (10, 120, 200)).save(path)
    return path


def test_weights_whose_pickle_runs_a_command_are_refused_through_the_cli(tmp_path, picture):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(_evil(marker)))
    proc = run_cli("upscale", picture, "--weights", evil, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "refusing to load" in proc.stderr and one_error(proc.stderr)
    assert not marker.exists()  # the command never ran
    # the refine stage's --upscaler takes weights files too
    proc = run_cli("refine", "--from", picture, "--prompt", "x", "--upscaler", evil, "--model", "tiny-random",
                   "--size", "64", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and not marker.exists()
    assert not list((tmp_path / "o").rglob("*.png"))


def test_trust_remote_code_is_never_enabled():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            for keyword in node.keywords:
                if keyword.arg == "trust_remote_code":
                    offenders.append(f"{path.name}:{node.lineno} passes trust_remote_code")
            if name == "load" and getattr(node.func, "value", None) is not None and \
                    getattr(node.func.value, "id", "") == "torch":
                if not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords):
                    offenders.append(f"{path.name}:{node.lineno} torch.load without weights_only=True")
        # not as a keyword, nor as a string a kwargs dict could carry into from_pretrained(**kwargs)
        assert "trust_remote_code" not in source, f"{path} mentions trust_remote_code"
    assert not offenders, offenders


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("name, content, message", [
    ("bomb.png", _png_claiming(100_000, 100_000), "too many pixels"),
    ("bomb-warning.png", _png_claiming(12_000, 12_000), "too many pixels"),  # between 1x and 2x Pillow's limit
    ("notes.txt", b"just some text", "does not have an image extension"),
    ("picture.exe", None, "does not have an image extension"),  # a real PNG with the wrong extension
    ("empty.png", b"", "not an image"),
    ("random.jpg", os.urandom(2048), "not an image"),
])
def test_hostile_images_are_refused_before_any_model_loads(tmp_path, picture, name, content, message):
    path = tmp_path / name
    path.write_bytes(picture.read_bytes() if content is None else content)
    proc = run_cli("upscale", path, *FAST, "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert message in proc.stderr and one_error(proc.stderr)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.png"))


def test_a_decompression_bomb_given_to_refine_or_show_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(100_000, 100_000))
    for args in (["refine", "--from", path, "--prompt", "x", "--model", "tiny-random", "--out", tmp_path / "o"],
                 ["show", path]):
        proc = run_cli(*args, check=False)
        assert proc.returncode == 2 and "too many pixels" in proc.stderr and "Traceback" not in proc.stderr


def test_a_picture_with_a_mismatched_extension_is_read_by_its_content_with_a_warning(tmp_path, picture):
    path = tmp_path / "photo.jpg"  # PNG bytes: common for files saved from the web
    path.write_bytes(picture.read_bytes())
    proc = run_cli("upscale", path, *FAST, "--out", tmp_path / "o", "--dry-run")
    assert "holds a PNG image despite its extension" in proc.stderr


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "..", ".", "latest", "CON", "con.txt", ".hidden", "a/b",
                                  "a\\b", "tab\there", "new\nline", "bidi\u202eevil", "dot."])
def test_run_names_that_would_escape_or_collide_are_refused(tmp_path, name):
    proc = run_cli("explore", "a fox", "--model", "tiny-random", "--run", name, "--out", tmp_path / "o", "--dry-run",
                   check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: run name") and "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()
