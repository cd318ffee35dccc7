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
