"""params.yaml validation: every bad value fails at once with a ParamsError naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import PROJECT_ROOT

from midigen.errors import ParamsError
from midigen.params import load_params, validate

SECTIONS = ("data", "preprocess", "split")
GOOD = {
    "data": {"source": "music21:bach", "max_pieces": 0, "workers": 0},
    "preprocess": {
        "representation": "events",
        "time_unit": "auto",
        "time_step": 0.05,
        "max_shift_steps": 100,
        "velocity_bins": 0,
        "drums": "drop",
        "programs": False,
        "pitch_min": 21,
        "pitch_max": 108,
        "max_file_mb": 10,
        "max_notes": 200000,
        "max_duration_s": 3600,
        "max_memory_mb": 512,
        "timeout_s": 30,
        "steps_per_quarter": 4,
        "bars": 4,
        "hop_bars": 1,
        "chord_min_count": 5,
        "fixed_step_quarters": 0.0,
        "max_voices": 4,
        "bar_positions": False,
        "frame_runs": False,
        "key": "keep",
    },
    "split": {
        "val_ratio": 0.1,
        "test_ratio": 0.1,
        "seed": 1234,
        "from_metadata": True,
        "dedupe": "group",
        "dedupe_by": "file",
    },
}


def with_value(section: str, key: str, value) -> dict:
    raw = copy.deepcopy(GOOD)
    raw[section][key] = value
    return raw


def test_the_projects_params_yaml_is_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert set(SECTIONS) <= set(params)


def test_valid_params_pass_and_numbers_are_normalised():
    out = validate(with_value("preprocess", "max_file_mb", 10), SECTIONS)
    assert out["preprocess"]["max_file_mb"] == 10.0 and isinstance(out["preprocess"]["max_file_mb"], float)
    assert out["split"] == GOOD["split"]


def test_unknown_key_raises_params_error_naming_it():
    with pytest.raises(ParamsError, match=r"preprocess\.time_stpe"):
        validate(with_value("preprocess", "time_stpe", 0.05), SECTIONS)


def test_unknown_section_raises_params_error_naming_it():
    raw = copy.deepcopy(GOOD)
    raw["preprocessing"] = {}
    with pytest.raises(ParamsError, match="preprocessing"):
        validate(raw, SECTIONS)


def test_missing_key_raises_params_error_naming_it():
    raw = copy.deepcopy(GOOD)
    del raw["split"]["seed"]
    with pytest.raises(ParamsError, match=r"split\.seed"):
        validate(raw, SECTIONS)


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("preprocess", "time_step", "fast"),
        ("preprocess", "max_shift_steps", 100.5),
        ("preprocess", "max_shift_steps", True),  # a bool is not an integer
        ("preprocess", "velocity_bins", "32"),
        ("data", "source", 5),
        ("data", "max_pieces", None),
        ("split", "from_metadata", "yes"),
        ("split", "seed", 1.0),
    ],
)
def test_wrong_type_raises_params_error_naming_the_key(section, key, value):
    with pytest.raises(ParamsError, match=rf"{section}\.{key}\b"):
        validate(with_value(section, key, value), SECTIONS)


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("preprocess", "time_step", 0),
        ("preprocess", "time_step", -0.05),
        ("preprocess", "time_step", 1.5),
        ("preprocess", "time_step", float("nan")),
        ("preprocess", "time_step", float("inf")),
        ("preprocess", "max_shift_steps", 0),
        ("preprocess", "velocity_bins", 129),
        ("preprocess", "velocity_bins", -1),
        ("preprocess", "pitch_min", -1),
        ("preprocess", "pitch_max", 128),
        ("preprocess", "drums", "mute"),
        ("preprocess", "representation", "remi"),
        ("preprocess", "max_notes", 0),
        ("data", "workers", -2),
        ("split", "val_ratio", 1.0),
        ("split", "test_ratio", -0.1),
        ("split", "dedupe", "merge"),
        ("split", "dedupe_by", "sha1"),
    ],
)
def test_out_of_range_value_raises_params_error_naming_the_key(section, key, value):
    with pytest.raises(ParamsError, match=rf"{section}\.{key}\b"):
        validate(with_value(section, key, value), SECTIONS)


@pytest.mark.parametrize("val,test", [(0.5, 0.5), (0.7, 0.3), (0.9, 0.2), (0.6, 0.4)])
def test_val_plus_test_ratio_of_one_or_more_raises_params_error_naming_both(val, test):
    raw = copy.deepcopy(GOOD)
    raw["split"].update(val_ratio=val, test_ratio=test)
    with pytest.raises(ParamsError) as info:
        validate(raw, SECTIONS)
    assert "split.val_ratio" in str(info.value) and "split.test_ratio" in str(info.value)


def test_val_plus_test_ratio_just_below_one_is_accepted():
    raw = copy.deepcopy(GOOD)
    raw["split"].update(val_ratio=0.5, test_ratio=0.49)
    assert validate(raw, SECTIONS)["split"]["test_ratio"] == 0.49


def test_pitch_min_above_pitch_max_raises_params_error_naming_both():
    raw = copy.deepcopy(GOOD)
    raw["preprocess"].update(pitch_min=90, pitch_max=60)
    with pytest.raises(ParamsError, match=r"preprocess\.pitch_min.*preprocess\.pitch_max"):
        validate(raw, SECTIONS)


def test_load_params_reports_the_key_from_a_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value("preprocess", "velocity_bins", 500)))
    with pytest.raises(ParamsError, match=r"preprocess\.velocity_bins"):
        load_params(path, sections=SECTIONS)


def test_load_params_sections_checks_only_those_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_value("split", "val_ratio", 7)))
    assert load_params(path, sections=("preprocess",))["preprocess"]["time_step"] == 0.05
    with pytest.raises(ParamsError, match=r"split\.val_ratio"):
        load_params(path, sections=("split",))


def test_load_params_missing_file_and_bad_yaml_raise_params_error(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML") as info:
        load_params(bad)
    assert "\n" not in str(info.value)
    bad.write_text("- a list\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(bad)


DUPLICATED = """\
split:
  val_ratio: 0.1
  test_ratio: 0.1
  seed: 1234
  from_metadata: true
  dedupe: group
  dedupe_by: file
  test_ratio: 0.3
"""


def test_a_key_given_twice_is_refused_naming_the_key_and_both_lines(tmp_path):
    # plain YAML loading keeps the last test_ratio silently: a stage run outside DVC would use it
    path = tmp_path / "params.yaml"
    path.write_text(DUPLICATED, encoding="utf-8")
    with pytest.raises(ParamsError) as info:
        load_params(path, sections=("split",))
    message = str(info.value)
    assert "split.test_ratio" in message and "lines 3 and 8" in message and str(path) in message
    assert "\n" not in message


def test_a_section_given_twice_is_refused_too(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(DUPLICATED.replace("  test_ratio: 0.3\n", "") + "split:\n  seed: 1\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"\bsplit is given twice \(lines 1 and 8\)"):
        load_params(path, sections=("split",))


def test_the_same_key_in_two_sections_is_no_duplicate():
    params = load_params(PROJECT_ROOT / "params.yaml")  # seed is a key of split, train and generate
    assert {params[s]["seed"] for s in ("split", "train", "generate")} == {1234, 42, 7}


def test_the_shipped_params_yaml_holds_exactly_the_schema_defaults():
    """One source of defaults: params.yaml in the repository equals midigen.params.DEFAULTS."""
    from midigen.params import DEFAULTS

    shipped = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert validate(shipped) == DEFAULTS
    assert validate(DEFAULTS) == DEFAULTS  # every default passes its own check


@pytest.mark.parametrize(("section", "key"), [("generate", "seed"), ("generate", "max_steps"), ("train", "seed")])
def test_an_integer_too_large_for_the_generators_is_a_params_error_not_an_overflow(section, key):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw[section][key] = 10**22
    with pytest.raises(ParamsError, match=rf"{section}\.{key} = 10000000000000000000000: expected an integer"):
        validate(raw)
