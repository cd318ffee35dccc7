"""Small-VRAM engine: profile selection, phase separation, batching, options, the GPU benchmark's smoke mode."""
from __future__ import annotations

import gc
import sys
import weakref

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli_env, run_cli
from pipeline.engines import memory as mem
from pipeline.core.errors import UserError

GiB = mem.GiB
PROMPT = "a red fox in snow"


# ---------------------------------------------------------------- profile selection (pure)


@pytest.mark.parametrize("free, total, size, batch, expected", [
    (78 * GiB, 80 * GiB, 1024, 4, "full"),  # H100: everything fits
    (22 * GiB, 24 * GiB, 512, 1, "full"),  # 4090
    (22 * GiB, 24 * GiB, 1024, 4, "full"),
    (15 * GiB, 16 * GiB, 512, 1, "full"),  # 16 GB: the 11.5 GiB transformer plus activations fit
    (11.3 * GiB, 12 * GiB, 512, 1, "low"),  # 12 GB: the transformer alone does not fit whole
    (7.5 * GiB, 8 * GiB, 512, 4, "low"),
    (7.5 * GiB, 8 * GiB, 1024, 1, "low"),  # tiled VAE keeps 1024² on low
    (3.5 * GiB, 4 * GiB, 512, 1, "low"),
    (1.5 * GiB, 2 * GiB, 512, 1, "minimal"),
    (0.2 * GiB, 2 * GiB, 1024, 1, "minimal"),  # nothing fits: the most frugal one
])
def test_choose_profile_from_memory_figures(free, total, size, batch, expected):
    assert mem.choose_profile(int(free), int(total), size, size, batch) == expected


# Card sizes as the GPU benchmark simulates them (free = what a desktop leaves free), for bf16 and int8 weights.
@pytest.mark.parametrize("free, total, weights, picks", [
    (7.5, 8, "bf16", ["low", "low", "low"]),  # 512² b1, 512² b4, 1024² b1
    (7.5, 8, "int8", ["balanced", "balanced", "balanced"]),  # the 5.7 GiB int8 transformer fits, not with the VAE
    (7.8, 8, "int8", ["full", "full", "balanced"]),
    (11.3, 12, "bf16", ["low", "low", "low"]),  # 11.5 GiB of bf16 weights cannot stay: stream, never balanced
    (11.3, 12, "int8", ["full", "full", "full"]),  # the 12 GB card: 8-bit resident
    (15, 16, "bf16", ["full", "full", "balanced"]),
    (15, 16, "int8", ["full", "full", "full"]),
    (22, 24, "bf16", ["full", "full", "full"]),
    (139, 141, "bf16", ["full", "full", "full"]),  # a whole H200
])
def test_auto_picks_per_card_size(free, total, weights, picks):
    sizes = mem.ZIMAGE_TURBO.with_weights(weights)
    got = [mem.choose_profile(int(free * GiB), total * GiB, s, s, b, sizes) for s, b in ((512, 1), (512, 4), (1024, 1))]
    assert got == picks


def test_estimates_are_fitted_to_the_measured_h200_peaks():
    sizes = mem.ModelSizes(**{**mem.ZIMAGE_TURBO.__dict__, "caption_tokens": mem.MEASURED_CAPTION_TOKENS})
    for (profile, size, batch), measured in mem.MEASURED_PEAK_GIB.items():
        estimate = mem.needed_bytes(profile, size, size, batch, sizes) / GiB
        assert -0.03 <= estimate / measured - 1 <= 0.10, (profile, size, batch, estimate, measured)


def test_int8_sizes_halve_the_transformer_and_keep_the_rest():
    bf16, int8 = mem.ZIMAGE_TURBO, mem.ZIMAGE_TURBO.with_weights("int8")
    assert int8.eight_bit and not bf16.eight_bit
    assert 5.7 * GiB < int8.transformer < 5.8 * GiB and int8.vae == bf16.vae
    assert int8.with_weights("bf16").transformer == pytest.approx(bf16.transformer, rel=1e-6)


def test_auto_log_says_why_and_what_int8_would_give_when_streaming():
    profile, why = mem.choose_profile_with_reason(int(11.3 * GiB), 12 * GiB, 512, 512, 1)
    assert profile == "low"
    assert "does not stay on the device" in why and "--weights-dtype int8 would keep the transformer" in why
    assert "x faster than streaming" in why
    profile, why = mem.choose_profile_with_reason(int(11.3 * GiB), 12 * GiB, 512, 512, 1,
                                                  mem.ZIMAGE_TURBO.with_weights("int8"))
    assert profile == "full" and "int8 transformer" in why and "--weights-dtype" not in why
    profile, why = mem.choose_profile_with_reason(int(2.5 * GiB), 4 * GiB, 512, 512, 1)  # int8 would not fit either
    assert profile == "low" and "--weights-dtype" not in why


def test_choose_profile_is_monotonic_in_free_memory_and_size():
    order = {p: i for i, p in enumerate(mem.PROFILES)}
    total = 24 * GiB
    for size in (512, 768, 1024):
        picks = [mem.choose_profile(int(free * GiB), total, size, size, 1) for free in np.arange(0.5, 24, 0.5)]
        assert [order[p] for p in picks] == sorted((order[p] for p in picks), reverse=True)
    for free in (8, 12, 16, 24):
        picks = [order[mem.choose_profile(free * GiB, total, s, s, 1)] for s in (256, 512, 1024, 2048)]
        assert picks == sorted(picks)


def test_balanced_chosen_when_transformer_fits_whole_but_not_with_vae_activations():
    sizes = mem.ZIMAGE_TURBO
    need_full = mem.needed_bytes("full", 1024, 1024, 1, sizes)
    need_balanced = mem.needed_bytes("balanced", 1024, 1024, 1, sizes)
    assert need_balanced < need_full
    free = (need_full + need_balanced) // 2 + mem.reserve_bytes(24 * GiB)
    assert mem.choose_profile(free, 24 * GiB, 1024, 1024, 1) == "balanced"


def test_fp8_weights_let_a_12_gb_card_keep_the_transformer_whole():
    sizes = mem.ZIMAGE_TURBO
    fp8 = mem.ModelSizes(**{**sizes.__dict__, "transformer": sizes.transformer // 2})
    assert mem.choose_profile(int(11.3 * GiB), 12 * GiB, 512, 512, 1, fp8) == "full"


def test_choose_batch_grows_with_memory_and_shrinks_with_size():
    total = 80 * GiB
    assert mem.choose_batch(78 * GiB, total, 512, 512, "full") == 8
    assert mem.choose_batch(14 * GiB, 16 * GiB, 512, 512, "full") < 8
    assert mem.choose_batch(int(0.2 * GiB), 8 * GiB, 1024, 1024, "low") == 1  # never below 1
    small = mem.choose_batch(7 * GiB, 8 * GiB, 512, 512, "low")
    large = mem.choose_batch(7 * GiB, 8 * GiB, 1024, 1024, "low")
    assert small >= large >= 1


def test_text_encoder_streams_on_small_cards():
    assert mem.text_encoder_fits(22 * GiB, 24 * GiB)
    assert not mem.text_encoder_fits(int(7.5 * GiB), 8 * GiB)


def test_lower_profile_hint():
    assert "--memory balanced" in mem.lower_profile_hint("full")
    assert "--memory minimal" in mem.lower_profile_hint("low")
    assert "--batch 1" in mem.lower_profile_hint("minimal")


# ---------------------------------------------------------------- options


def test_engine_options_validate_and_enter_the_fingerprint(tmp_path):
    with pytest.raises(UserError, match="is not a file"):
        mem.EngineOptions(transformer=str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "weights.bin"
    bad.write_bytes(b"x")
    with pytest.raises(UserError, match=".safetensors or .gguf"):
        mem.EngineOptions(transformer=str(bad))
    assert mem.EngineOptions().fingerprint_suffix() == ""
    assert mem.EngineOptions(compile=True, attention="native").fingerprint_suffix() == ""  # speed only
    assert mem.EngineOptions(weights_dtype="fp8").fingerprint_suffix() == "+weights:fp8"
    assert mem.EngineOptions(weights_dtype="int8").fingerprint_suffix() == "+weights:int8"
    with pytest.raises(UserError, match="--weights-dtype must be one of int8, fp8"):
        mem.EngineOptions(weights_dtype="int4")
    good = tmp_path / "z.safetensors"
    good.write_bytes(b"x")
    assert mem.EngineOptions(transformer=str(good)).fingerprint_suffix().startswith("+transformer:")


def test_cli_rejects_a_missing_transformer_file_in_one_sentence(tmp_path):
    proc = run_cli("explore", PROMPT, "--model", "tiny-random", "--seeds", "1", "--out", tmp_path,
                   "--transformer", tmp_path / "nope.safetensors", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --transformer") and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- the engine on the tiny model


@pytest.fixture(scope="module")
def counted_text_encoder():
    """Counts (and remembers weakly) every tiny text encoder built."""
    from pipeline.models import tiny

    built: list = []
    original = tiny.build_tiny_text_encoder

    def counting(*args, **kwargs):
        encoder = original(*args, **kwargs)
        built.append(weakref.ref(encoder))
        return encoder

    tiny.build_tiny_text_encoder = counting
    yield built
    tiny.build_tiny_text_encoder = original


@pytest.fixture(scope="module")
def explored(tmp_path_factory, counted_text_encoder):
    """Explore 3 seeds (batch 3) with the text encoder checked at the first transformer call."""
    from pipeline.api import Pipeline

    out = tmp_path_factory.mktemp("memory") / "outputs"
    seen_at_denoise = []
    with Pipeline(model="tiny-random", out=out, device="cpu") as p:
        engine = p.session.engine()

        def check(module, args):
            gc.collect()
            seen_at_denoise.append([ref() is not None for ref in counted_text_encoder])

        handle = engine.pipe.transformer.register_forward_pre_hook(check)
        result = p.explore(PROMPT, seeds=[1, 2, 3], size=(128, 128), steps=2, batch=3)
        handle.remove()
    return out, result, seen_at_denoise, engine


def test_text_encoder_released_before_denoising(explored, counted_text_encoder):
    out, result, seen, engine = explored
    assert result.computed == 3
    assert len(counted_text_encoder) == 1 and engine.embeddings.encoder_loads == 1
    assert seen and not any(alive for call in seen for alive in call)  # freed before the first transformer call
    assert engine.pipe.text_encoder is None
    stored = list((out / ".store" / "objects").glob("*/*.safetensors"))
    assert len(stored) == 1


def test_rerun_with_stored_embeddings_never_loads_the_text_encoder(explored, counted_text_encoder):
    from pipeline.api import Pipeline

    out, first, _, _ = explored
    loads_before = len(counted_text_encoder)
    with Pipeline(model="tiny-random", out=out, device="cpu") as p:
        result = p.explore(PROMPT, seeds=[4], size=(128, 128), steps=2, batch=1)
        assert p.session.engine().embeddings.encoder_loads == 0
    assert result.computed == 1
    assert len(counted_text_encoder) == loads_before


def test_batching_gives_the_same_pictures_as_single_runs(explored, tmp_path):
    from pipeline.api import Pipeline

    _, batched, _, engine = explored
    with Pipeline(model="tiny-random", out=tmp_path / "single", device="cpu") as p:
        p.session._engine = engine  # same weights, another store: every job is a miss again
        p.session._fingerprint = engine.fingerprint
        single = p.explore(PROMPT, seeds=[1, 2, 3], size=(128, 128), steps=2, batch=1)
        p.session._engine = None
    assert single.computed == 3
    for a, b in zip(batched.items, single.items):
        assert a.key == b.key
        pixels_a = np.asarray(Image.open(a.path).convert("RGB"), dtype=np.int16)
        pixels_b = np.asarray(Image.open(b.path).convert("RGB"), dtype=np.int16)
        assert np.abs(pixels_a - pixels_b).max() <= 1


def test_records_carry_device_profile_memory_and_seconds(explored):
    import json

    out, result, _, _ = explored
    record = json.loads((out / ".store" / "objects" / result.items[0].key[:2] / f"{result.items[0].key}.json")
                        .read_text())
    assert record["device"] == "cpu" and record["profile"] == "cpu"
    assert "peak_memory_bytes" in record and record["seconds"] > 0


def test_out_of_memory_becomes_one_sentence_with_the_next_profile(explored, monkeypatch):
    import torch

    from pipeline.core.jobs import RenderJob, render_fields

    *_, engine = explored
    job = RenderJob(**render_fields(model=engine.fingerprint, prompt=PROMPT, negative="", width=128, height=128,
                                    steps=2, guidance=0.0, seed=9, dtype="fp32"))

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine, "pipe", type("P", (), {"__call__": staticmethod(oom)})())
    monkeypatch.setattr(engine, "_placed", "full")
    monkeypatch.setattr(engine, "_placed_for", (128, 128, 1))
    with pytest.raises(UserError, match=r"'full' memory profile; try --memory balanced"):
        engine.txt2img([job])


def test_fp8_weights_on_the_tiny_model(explored):
    """Layerwise casting runs (float8 storage, compute in fp32 here) and gives a near-identical picture."""
    import torch
    from diffusers import ZImagePipeline

    from pipeline.engines.zimage import ZImageEngine
    from pipeline.models import tiny
    from pipeline.core.jobs import RenderJob, render_fields

    *_, engine = explored
    pipe = ZImagePipeline(transformer=tiny.build_tiny_transformer(), vae=engine.pipe.vae, scheduler=engine.pipe.scheduler,
                          text_encoder=None, tokenizer=None)
    fp8 = ZImageEngine.from_pipeline(pipe, device="cpu", dtype="fp32", memory="auto", fingerprint="tiny-fp8",
                                     text_encoder_loader=lambda: pytest.fail("embeddings are in memory"),
                                     options=mem.EngineOptions(weights_dtype="fp8"))
    fp8.embeddings.memory.update(engine.embeddings.memory)
    assert pipe.transformer.layers[0].attention.to_q.weight.dtype == torch.float8_e4m3fn
    job = RenderJob(**render_fields(model="x", prompt=PROMPT, negative="", width=64, height=64, steps=1,
                                    guidance=0.0, seed=1, dtype="fp32"))
    a = np.asarray(fp8.txt2img([job])[0], dtype=np.int16)
    b = np.asarray(engine.txt2img([job])[0], dtype=np.int16)
    assert a.shape == b.shape and np.abs(a - b).mean() < 8


# ---------------------------------------------------------------- the GPU benchmark, CPU-sized


def test_gpu_benchmark_cpu_smoke_runs_every_profile(capsys, monkeypatch):
    """`python benchmarks/gpu_profiles.py --cpu-smoke`, its main() called here (the command as typed, the script
    started in a process of its own, is the cards test's below)."""
    from benchmarks import gpu_build, gpu_profiles

    monkeypatch.setattr(gpu_build, "WARMUP", gpu_build.WARMUP)  # --cpu-smoke turns the warm-up off
    gpu_profiles.main(["--cpu-smoke"])
    out = capsys.readouterr().out
    for profile in ("diffusers (baseline)", "full", "balanced", "low", "minimal"):
        assert profile in out
    assert "refine 64" in out and "goals:" in out


def test_gpu_cards_benchmark_cpu_smoke_runs_every_part():
    """The card-size benchmark (bf16 vs int8 loaded from a saved model, diffusers' offload baselines, cold
    start, projection, goals) on the tiny model on the CPU: the GPU run is one command that works."""
    import subprocess

    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_profiles.py"), "--cards", "--cpu-smoke"],
                          capture_output=True, text=True, env=cli_env(), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for text in ("bf16  whole", "int8     12", "diffusers model_cpu_offload", "diffusers sequential_cpu_offload",
                 "cold start bf16", "cold start int8", "PROJECTION", "goals:"):
        assert text in out, text
    assert "ERROR" not in out and "failed" not in out
