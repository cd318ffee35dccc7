"""Property-based tests over CLI arguments and config files (hypothesis, click's CliRunner in-process).

Every case ends in success, or in one clear error line with exit status 2: never a traceback,
never a hang (an alarm fails a case that runs past 60 s). `--dry-run` keeps the model unloaded;
the cases that must write (run names, slugs) use a stand-in engine that paints flat pictures,
since what is tested is the input handling, not the model. PIPELINE_SOAK=1 runs 10x the cases.
"""
from __future__ import annotations

import os
import signal
import traceback
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from pipeline.cli import main

SOAK = os.environ.get("PIPELINE_SOAK", "") not in ("", "0")
SCALE = 10 if SOAK else 1
CASES: dict[str, int] = {}


def fuzz_settings(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


# ---------------------------------------------------------------- strategies

HOSTILE_TEXT = ["", " ", "\0", "a\0b", "\n", "\r\n", "\t", "\x1b[31mred\x1b[0m", "\x7f", "\u202eevil", "\ufeff",
                "\udcff", "a\udc80b", "..", ".", "../../etc/passwd", "/etc/passwd", "/", "\\..\\..\\x", "~", "~root",
                "CON", "nul.txt", "latest", ".store", "-", "--", "--help", "-v", "%s%n", "{}", "${HOME}", "`id`",
                "$(touch /tmp/pwned)", "x" * 100_000, "é" * 5000, "🦊" * 1000, "a\u0301", "\u3000", "ß", "İ",
                "\U0010ffff", "'\"", "<script>alert(1)</script>"]
NUMBERS = ["0", "1", "-1", "16", "64", "-0", "2", "3.5", "1e9", "nan", "inf", "-inf", "1_000", "0x10", "０",
           str(2**63), str(2**64 - 1), str(2**64), str(2**64 + 1), str(-(2**64)), "9" * 400, "", " 1", "1 ",
           "١٢٨", "1,2", "1-3", "3-1", "1--2", "1-", "-", "auto", "none", "true"]

text = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=40),
                 st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0, max_codepoint=0x2FFFF), max_size=20))
number = st.one_of(st.sampled_from(NUMBERS), st.integers(-(2**70), 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
value = st.one_of(number, text)
seed_spec = st.one_of(value, st.lists(st.integers(-5, 2**65), min_size=1, max_size=4).map(
    lambda xs: ",".join(map(str, xs))), st.tuples(st.integers(0, 2**65), st.integers(0, 2**65)).map(
    lambda ab: f"{ab[0]}-{ab[1]}"))
count = st.one_of(st.integers(-3, 20).map(str), st.integers(100_001, 2**80).map(str), value)


def options(table: dict) -> st.SearchStrategy[list[str]]:
    """A random subset of the options in ``table`` (name -> strategy of its value), in random order."""
    def flatten(chosen):
        args = []
        for name, val in chosen:
            args += [name] if val is None else [name, val]
        return args
    pairs = [st.tuples(st.just(name), strat) for name, strat in table.items()]
    return st.lists(st.one_of(pairs), max_size=5).map(flatten)


# ---------------------------------------------------------------- the check


def invoke(args: list[str], kind: str) -> object:
    """Run ``pipeline ARGS`` in-process; the outcome must be success or one clear error."""
    CASES[kind] = CASES.get(kind, 0) + 1

    def hang(signum, frame):
        raise TimeoutError(f"pipeline {args!r} still running after 60 s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        result = CliRunner().invoke(main, args, catch_exceptions=True)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        detail = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"pipeline {args!r} raised instead of one clear error:\n{detail}")
    output = result.output
    assert "Traceback" not in output, (args, output)
    if result.exit_code != 0:
        assert result.exit_code == 2, (args, result.exit_code, output)
        errors = [line for line in output.splitlines() if line.startswith(("error:", "Error:"))]
        assert len(errors) == 1, (args, output)
    return result


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    total = sum(CASES.values())
    rows = ", ".join(f"{k}={v}" for k, v in CASES.items())
    print(f"\nfuzz cases: {total} ({rows}), failures: 0")


class FlatEngine:
    """Stands in for Z-Image where input handling is tested: a flat picture per job, instantly."""

    device, profile = "cpu", "stand-in"

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint

    def reset_peak_memory(self):
        pass

    def peak_memory_bytes(self):
        return 0

    def txt2img(self, jobs):
        return [Image.new("RGB", (j.width, j.height), (j.seed % 256, 90, 160)) for j in jobs]

    def img2img(self, jobs, images, strength):
        return self.txt2img(jobs)

    def render(self, request, task):  # the engine's one door (engines/request.py): every task, a flat picture
        return [Image.new("RGB", (request.width, request.height), (picture.seed % 256, 90, 160))
                for picture in request.pictures]

    def check_loras(self, jobs):  # no LoRA is ever loaded here
        pass


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An output folder with one run (stand-in pictures), a few image files, and the stand-in engine."""
    import pipeline.session

    root = tmp_path_factory.mktemp("fuzz")
    out = root / "outputs"
    patch = pytest.MonkeyPatch()
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setenv("PIPELINE_OFFLINE", "1")
    patch.delenv("PIPELINE_STORE", raising=False)
    patch.setattr(pipeline.session.Session, "engine", lambda self: FlatEngine(self.fingerprint))
    try:  # undone even when the set-up fails: a leaked stand-in engine would break every later test
        result = CliRunner().invoke(main, ["explore", "a fox", "--model", "tiny-random", "--size", "64", "--seeds",
                                           "1-3", "--run", "base", "--out", str(out)])
        assert result.exit_code == 0, result.output
        images = root / "images"
        images.mkdir()
        Image.new("RGB", (16, 16), (1, 2, 3)).save(images / "ok.png")
        (images / "notes.txt").write_text("not an image")
        yield {"root": root, "out": out, "images": images}
    finally:
        patch.undo()


# ---------------------------------------------------------------- explore


EXPLORE = {"--negative": text, "--seeds": seed_spec, "--count": count, "--seed": number, "--size": value,
           "--steps": number, "--guidance": number, "--run": text, "--batch": value, "--device": text,
           "--dtype": value, "--memory": value, "--json": st.none()}


@fuzz_settings(200)
@given(prompt=text, extra=options(EXPLORE))
def test_explore_arguments(world, prompt, extra):
    invoke(["explore", prompt, "--model", "tiny-random", "--out", str(world["out"]), *extra, "--dry-run"], "explore")


# ---------------------------------------------------------------- refine


REFINE = {"--seeds": seed_spec, "--size": value, "--scale": number, "--mode": value, "--strength": number,
          "--steps": number, "--guidance": number, "--negative": text, "--upscaler": text, "--batch": value,
          "--prompt": text, "--seed": number, "--from": st.one_of(text, st.just("{images}/ok.png"),
                                                                  st.just("{images}/notes.txt"))}


@fuzz_settings(100)
@given(extra=options(REFINE))
def test_refine_arguments(world, extra):
    extra = [a.replace("{images}", str(world["images"])) for a in extra]
    if "--seeds" not in extra and "--from" not in extra:
        extra = ["--seeds", "1", *extra]
    invoke(["refine", "--run", "base", "--model", "tiny-random", "--out", str(world["out"]), *extra, "--dry-run"],
           "refine")


# ---------------------------------------------------------------- upscale


UPSCALE = {"--seeds": seed_spec, "--scale": number, "--tile": number, "--tile-overlap": number, "--precision": value,
           "--model": st.one_of(st.just("realesr-animevideov3"), text), "--run": text, "--weights": text}
FILES = st.lists(st.one_of(st.sampled_from(["{images}/ok.png", "{images}/notes.txt", "{images}", "{images}/none.png"]),
                           text), max_size=3)


@fuzz_settings(100)
@given(files=FILES, extra=options(UPSCALE))
def test_upscale_arguments(world, files, extra):
    args = [a.replace("{images}", str(world["images"])) for a in [*files, *extra]]
    if "--model" not in args and "--weights" not in args:
        args += ["--model", "realesr-animevideov3"]
    if not files and "--run" not in args:
        args += ["--run", "base"]
    invoke(["upscale", *args, "--out", str(world["out"]), "--dry-run"], "upscale")


# ---------------------------------------------------------------- names never escape the output folder


@fuzz_settings(60)
@given(prompt=text, run=st.one_of(st.none(), text))
def test_names_from_user_text_stay_inside_the_output_folder(world, prompt, run):
    out = world["out"]
    root = world["root"]
    before = {p for p in root.iterdir()}
    args = ["explore", prompt, "--model", "tiny-random", "--size", "64", "--seeds", "1", "--out", str(out), "--json"]
    if run is not None:
        args += ["--run", run]
    result = invoke(args, "names")
    assert {p for p in root.iterdir()} == before  # nothing created beside the output folder
    if result.exit_code == 0 and result.output.startswith("{"):  # (a prompt like --help prints the help)
        import json

        run_dir = Path(json.loads(result.output)["run_dir"]).resolve()
        assert run_dir.parent == out.resolve() and not run_dir.name.startswith(".")
        assert run_dir.name != "latest" and "\n" not in run_dir.name


# ---------------------------------------------------------------- config files


def _config_text(doc) -> str:
    import yaml

    return yaml.safe_dump(doc, allow_unicode=True)


scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), text)
junk = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(text, inner, max_size=3)), max_leaves=6)
KEYS = ["model", "out", "device", "dtype", "memory", "prompts", "explore", "refine", "upscale", "explore.seeds",
        "explore.count", "explore.size", "explore.steps", "explore.guidance", "refine.picks", "refine.size",
        "refine.strength", "upscale.scale", "upscale.tile", "upscale.upscaler", "upscale.model", "prompts.0.text", "prompts.0.name",
        "unknown_key", "explore.unknown"]


@fuzz_settings(80)
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), junk), max_size=3),
       overrides=st.lists(st.tuples(st.sampled_from(KEYS + ["", "a.b.c"]), value), max_size=2),
       raw=st.one_of(st.none(), st.sampled_from(["", "[", "- 1", ": :", "\0", "a: !!python/object/apply:os.system "
                                                  "['touch /tmp/pwned-yaml']", "x" * 10_000])))
def test_config_files_and_overrides(world, changes, overrides, raw):
    root = world["root"]
    doc = {"model": "tiny-random", "out": str(root / "cfg-out"), "prompts": [{"text": "a fox", "name": "fox"}],
           "explore": {"seeds": "1-2", "size": 64}, "refine": {"picks": [1]},
           "upscale": {"upscaler": "realesr-animevideov3"}}
    for key, val in changes:
        target = doc
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = target.get(part) if isinstance(target, dict) else None
            if isinstance(nxt, list) and nxt and part == "prompts":
                nxt = nxt[0]
            if not isinstance(nxt, dict):
                break
            target = nxt
        else:
            target[parts[-1]] = val
    path = root / "config.yaml"
    try:
        path.write_text(raw if raw is not None else _config_text(doc), encoding="utf-8", errors="surrogateescape")
    except (ValueError, UnicodeEncodeError):
        return
    args = ["run", str(path), "--dry-run"]
    for key, val in overrides:
        args += ["--set", f"{key}={val}"]
    try:
        invoke(args, "config")
    except BaseException as err:
        raise AssertionError(f"config file:\n{path.read_text(errors='replace')[:2000]}") from err
    assert not Path("/tmp/pwned-yaml").exists()


def test_self_referencing_yaml_alias_is_one_clear_error(world):
    path = world["root"] / "loop.yaml"
    path.write_text("&a [*a]")
    result = invoke(["run", str(path), "--dry-run"], "config")
    assert result.exit_code == 2 and "refers to itself" in result.output


def test_yaml_alias_bomb_is_one_clear_error(world):
    path = world["root"] / "laughs.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    path.write_text("\n".join(lines) + "\nprompts: *a7\n")
    result = invoke(["run", str(path), "--dry-run"], "config")
    assert result.exit_code == 2 and "expands to more than" in result.output
