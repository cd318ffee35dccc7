"""Seed specs, sizes and job keys: what users type and what decides a re-render."""
import pytest

from pipeline.core.errors import UserError
from pipeline.core.jobs import RenderJob, render_fields
from pipeline.core.seeds import parse_seeds, seeds_from_count
from pipeline.core.sizes import parse_size


def test_seed_specs_ranges_and_duplicates():
    assert parse_seeds("1,2,10-13") == [1, 2, 10, 11, 12, 13]
    assert parse_seeds(" 5 , 3-4 ,5,3") == [5, 3, 4]  # duplicates dropped, order kept
    assert parse_seeds("18446744073709551615") == [2**64 - 1]
    assert parse_seeds([3, 1, 3]) == [3, 1]
    assert seeds_from_count(3, 100) == [100, 101, 102]


@pytest.mark.parametrize("spec, words", [
    ("-5", "negative"),
    ("1,,2", "empty"),
    ("abc", "cannot read"),
    ("1.5", "cannot read"),
    ("20-10", "backwards"),
    ("18446744073709551616", "too large"),
    ("0-200000", "more than"),
    ("", "empty"),
])
def test_bad_seed_specs_are_one_clear_sentence(spec, words):
    with pytest.raises(UserError) as err:
        parse_seeds(spec)
    assert words in str(err.value)
    assert "\n" not in str(err.value)


def test_sizes_and_presets():
    assert parse_size("512") == (512, 512)
    assert parse_size("512x768") == (512, 768)
    assert parse_size("portrait") == (512, 768)
    with pytest.raises(UserError, match="try 512x768"):
        parse_size("510x770")
    with pytest.raises(UserError, match="out of range"):
        parse_size("32")
    with pytest.raises(UserError, match="cannot read size"):
        parse_size("big")


def _job(**changes):
    fields = dict(model="m", prompt="a fox", negative="", width=512, height=512, steps=8, guidance=0.0, seed=1,
                  dtype="fp32")
    fields.update(changes)
    return RenderJob(**render_fields(**fields))


def test_keys_change_exactly_with_what_changes_pixels():
    base = _job()
    assert base.key == _job().key
    for change in (dict(prompt="a cat"), dict(steps=9), dict(seed=2), dict(width=768), dict(model="n"),
                   dict(guidance=1.0), dict(dtype="bf16")):
        assert _job(**change).key != base.key, change
    # the negative prompt does nothing without guidance, so it does not change the key
    assert _job(negative="blurry").key == base.key
    assert _job(negative="blurry", guidance=2.0).key != _job(guidance=2.0).key


def test_one_off_rule_keeps_the_keys_stores_hold():
    """Keys computed before the jobs were composed (pinned): an optional part that is off (no variance, no LoRA,
    no crop, no ControlNet, no mask) stays out of the key; a detail job keys as it did when it had its own fields."""
    from pipeline.core.jobs import ControlUse, DetailJob, LoraUse, RefineJob

    base = dict(model="m", prompt="p", negative="", width=512, height=512, steps=8, guidance=0.0, seed=1,
                dtype="fp32")
    plain = RenderJob(**base)
    assert plain.key == "627c6a96429c5cf51eb81417f8590c1a224d5e3579bce6e7314ee8763fceeea9"
    assert RenderJob(**base, loras=()).key == plain.key
    assert RenderJob(**base, loras=(LoraUse("ab", 0.8),)).key == \
        "973f736add19b555210b97f74c9b5fcf1af7d44856eb5badf40a5a02872ef2f3"
    hires = dict(mode="hires", strength=0.4, parent="x", enlarge="lanczos")
    assert RefineJob(**base, **hires).key == "b3b2cc4fa9766e02fe583bd017f3f50f2d8f5d5cbfcaee2ddf373d314b34c864"
    assert DetailJob(sr="k", **base, strength=0.3, tile=1024, overlap=128).key == \
        "e8851f012e1714a38be111f26e59838a5defe04204471e4a48d83b3b168791e5"
    assert "control" not in plain.describe() and "mask" not in plain.describe()
    controlled = RenderJob(**base, control=ControlUse(map="d", type="canny", strength=0.7, start=0.0, end=1.0,
                                                      model="cn"))
    masked = RenderJob(**base, mask="e")
    assert len({plain.key, controlled.key, masked.key}) == 3  # on, they enter the key
    assert controlled.describe()["control"] == {"map": "d", "type": "canny", "strength": 0.7, "start": 0.0, "end": 1.0,
                                                "model": "cn"}
