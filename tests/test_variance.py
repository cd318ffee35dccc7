"""`--variance`: seeded noise on the prompt embedding for the first steps (tiny model, CPU).

The tiny random model cannot show that seeds grow more diverse; these tests show the mechanism:
what reaches the transformer at each step, keys, reproducibility and metadata.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, run_json

TINY = ["--model", "tiny-random"]
PROMPT = "a red fox in snow"


def explore(out, *args, **kwargs):
    return run_json("explore", PROMPT, *TINY, "--size", "64", "--out", out, *args, **kwargs)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """Seeds 1-2 explored at --variance 0.3 (CLI), shared by the metadata tests."""
    out = tmp_path_factory.mktemp("variance") / "outputs"
    return out, explore(out, "--seeds", "1-2", "--variance", "0.3", "--run", "varied")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from pipeline.session import Session

    session = Session(out=tmp_path_factory.mktemp("engine"), model="tiny-random", dtype="fp32")
    return session, session.engine()


def render_job(session, seed, variance=0.0, steps=0.25, share=0.5, width=64):
    from pipeline.core.jobs import RenderJob, make_variance, render_fields

    return RenderJob(**render_fields(model=session.fingerprint, prompt=PROMPT, negative="", width=width,
                                     height=width, steps=8, guidance=0.0, seed=seed, dtype=session.dtype,
                                     variance=make_variance(variance, share, steps, seed)))


class Recorder:
    """Records the prompt embeddings the transformer receives, call by call."""

    def __init__(self, transformer):
        self.transformer, self.calls = transformer, []
        self.original = transformer.forward

    def __enter__(self):
        def forward(latents, timestep, prompt_embeds, *args, **kwargs):
            self.calls.append([e.detach().clone() for e in prompt_embeds])
            return self.original(latents, timestep, prompt_embeds, *args, **kwargs)

        self.transformer.forward = forward
        return self

    def __exit__(self, *exc):
        self.transformer.forward = self.original


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


# ---------------------------------------------------------------- variance 0 is today's behaviour

def test_variance_zero_keeps_todays_keys_records_and_pictures(tmp_path, engine):
    import torch

    session, zimage = engine
    from pipeline import Pipeline

    with Pipeline(model="tiny-random", out=tmp_path / "out", dtype="fp32") as p:
        result = p.explore(PROMPT, seeds=[5], size=(64, 64), variance=0, variance_share=0.9)
    item = result.items[0]
    # today's key: the hash of exactly the fields a render job had before --variance existed
    today = {"kind": "explore", "version": 1, "model": session.fingerprint, "prompt": PROMPT, "negative": "",
             "width": 64, "height": 64, "steps": 8, "guidance": 0.0, "seed": 5, "dtype": "fp32"}
    canonical = json.dumps(today, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert item.key == hashlib.sha256(canonical.encode()).hexdigest()
    with Image.open(item.path) as image:
        assert "Variance" not in image.text["parameters"]
        assert "variance" not in json.loads(image.text["pipeline"])
        stored = pixels(image)
    # today's pictures: the pipeline called as before, with no step callback
    embedding = zimage.encode([PROMPT])[PROMPT]
    with torch.inference_mode():
        direct = zimage.pipe(prompt_embeds=[embedding], width=64, height=64, num_inference_steps=8,
                             guidance_scale=0.0, generator=[torch.Generator("cpu").manual_seed(5)]).images[0]
    assert np.array_equal(stored, pixels(direct))


# ---------------------------------------------------------------- the mechanism

def test_noisy_embedding_reaches_the_transformer_only_before_the_switch_and_differs_by_seed(engine):
    session, zimage = engine
    clean = zimage.encode([PROMPT])[PROMPT]
    jobs = [render_job(session, 1, variance=0.5, steps=0.25), render_job(session, 2, variance=0.5, steps=0.25)]
    with Recorder(zimage.pipe.transformer) as rec:
        batch = zimage.txt2img(jobs)
    assert len(rec.calls) == 8
    for step, embeds in enumerate(rec.calls):
        if step < 2:  # 0.25 of 8 steps
            assert not any(e.equal(clean) for e in embeds)
            assert not embeds[0].equal(embeds[1])  # each picture its own noise
            changed = (embeds[0] != clean).float().mean().item()
            assert 0.4 < changed < 0.6  # on half of the values (--variance-share 0.5)
            bound = 0.5 * clean.float().std().item() * 1.001
            assert (embeds[0].float() - clean.float()).abs().max().item() <= bound
        else:
            assert all(e.equal(clean) for e in embeds)
    # a batch keeps each picture's own noise: the same pictures one by one
    for job, picture in zip(jobs, batch):
        assert np.array_equal(pixels(zimage.txt2img([job])[0]), pixels(picture))


def test_img2img_sees_the_noisy_embedding_only_where_its_candidate_did(engine):
    """Refine and vary start part-way through the schedule: the steps count in the full schedule."""
    session, zimage = engine
    clean = zimage.encode([PROMPT])[PROMPT]
    job = render_job(session, 3, variance=0.5, steps=0.25)  # noisy for steps 0 and 1 of 8
    parent = zimage.txt2img([job])[0]
    with Recorder(zimage.pipe.transformer) as rec:
        zimage.img2img([job], [parent], 0.85)  # starts at step 1 of 8
    assert [not e[0].equal(clean) for e in rec.calls] == [True] + [False] * 6
    with Recorder(zimage.pipe.transformer) as rec:
        zimage.img2img([job], [parent], 0.5)  # starts at step 4: after the switch
    assert len(rec.calls) == 4 and all(e[0].equal(clean) for e in rec.calls)


def test_same_seed_and_variance_reproduce_bit_for_bit_across_processes(varied, tmp_path):
    out, first = varied
    again = explore(tmp_path / "fresh", "--seeds", "1", "--variance", "0.3")  # a new store and process
    assert again["items"][0]["cached"] is False and again["items"][0]["key"] == first["items"][0]["key"]
    assert Path(again["items"][0]["path"]).read_bytes() == Path(first["items"][0]["path"]).read_bytes()
    plain = explore(tmp_path / "fresh", "--seeds", "1")
    assert plain["items"][0]["key"] != first["items"][0]["key"]
    other = explore(tmp_path / "fresh", "--seeds", "1", "--variance", "0.3", "--variance-steps", "0.5", "--run", "b")
    assert other["items"][0]["key"] not in (first["items"][0]["key"], plain["items"][0]["key"])


# ---------------------------------------------------------------- metadata

def test_variance_is_in_the_record_the_infotext_and_show(varied):
    out, result = varied
    path = Path(result["items"][0]["path"])
    with Image.open(path) as image:
        parameters, record = image.text["parameters"], json.loads(image.text["pipeline"])
    assert record["variance"] == {"strength": 0.3, "share": 0.5, "steps": 0.2, "seed": 1}
    assert "Seed: 1, Size: 64x64, Model: tiny-random, Variance: 0.3, Variance share: 0.5, Variance steps: 0.2" \
        in parameters
    assert "Variance: 0.3" in run_cli("show", path).stdout
    run = json.loads((out / "varied" / "run.json").read_text())
    assert run["variance"] == {"strength": 0.3, "share": 0.5, "steps": 0.2}
    assert "variance" in (out / "varied" / "index.html").read_text()

    from pipeline.core.images import parse_a1111

    assert parse_a1111(parameters)["variance"] == record["variance"]


def test_refine_uses_the_candidates_conditioning_and_from_reads_it_back(varied):
    out, _ = varied
    run_dir = out / "varied"
    refined = run_json("refine", "--run", run_dir, "--seeds", "2", "--scale", "1.5", "--mode", "rerender")
    record = json.loads(Image.open(refined["items"][0]["path"]).text["pipeline"])
    assert record["variance"] == {"strength": 0.3, "share": 0.5, "steps": 0.2, "seed": 2}
    again = run_json("refine", "--from", run_dir / "explore" / "seed-2.png", "--scale", "1.5", "--mode", "rerender",
                     "--out", out)
    assert again["items"][0]["key"] == refined["items"][0]["key"] and again["items"][0]["cached"] is True


def test_changing_the_variance_of_a_run_is_refused(varied):
    out, _ = varied
    proc = run_cli("explore", PROMPT, *TINY, "--size", "64", "--out", out, "--run", "varied", "--seeds", "1",
                   "--variance", "0.5", check=False)
    assert proc.returncode == 2 and "other settings (variance)" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--variance", "-1"], "variance: -1.0 is out of range"),
    (["--variance", "2.5"], "variance: 2.5 is out of range"),
    (["--variance", "0.3", "--variance-share", "0"], "variance_share: 0.0 is out of range"),
    (["--variance", "0.3", "--variance-steps", "1.5"], "variance_steps: 1.5 is out of range"),
])
def test_bad_variance_is_one_sentence_and_writes_nothing(tmp_path, args, message):
    out = tmp_path / "outputs"
    proc = run_cli("explore", PROMPT, *TINY, "--size", "64", "--out", out, "--seeds", "1", *args, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not out.exists()
