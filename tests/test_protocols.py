"""Protocol selection and laterality (CONTRACT.md section 3)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from pipeline.errors import UsageError
from pipeline.protocols import (
    Laterality,
    NoProtocolMatchedError,
    Protocol,
    ProtocolRules,
    laterality_of,
    load_protocol_rules,
)


def _ds(**attrs: str) -> Dataset:
    ds = Dataset()
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


NERVE_NAMES = ["median", "Ulnar n.", "RADIAL", "tibial", "peroneal", "Fibular", "SURAL", "sciatic",
               "femoral nerve", "brachial plexus", "nerve"]
MUSCLE_NAMES = ["rectus femoris", "VASTUS lateralis", "quadriceps", "tibialis anterior", "Gastrocnemius",
                "soleus", "biceps", "triceps", "deltoid", "forearm flexors", "muscle"]


@pytest.mark.parametrize("name", NERVE_NAMES)
def test_nerve_names_choose_nerve_protocol(name):
    choice = load_protocol_rules().choose(_ds(SeriesDescription=f"R {name} wrist"))
    assert choice.protocol is Protocol.NERVE
    assert choice.attribute == "SeriesDescription"


@pytest.mark.parametrize("name", MUSCLE_NAMES)
def test_muscle_names_choose_muscle_protocol(name):
    assert load_protocol_rules().choose(_ds(StudyDescription=name.lower())).protocol is Protocol.MUSCLE


def test_word_boundaries_keep_similar_names_apart():
    rules = load_protocol_rules()
    assert rules.choose(_ds(SeriesDescription="TIBIALIS ANTERIOR")).protocol is Protocol.MUSCLE
    assert rules.choose(_ds(SeriesDescription="TIBIAL N ANKLE")).protocol is Protocol.NERVE
    assert rules.choose(_ds(SeriesDescription="RECTUS FEMORIS")).protocol is Protocol.MUSCLE


def test_series_description_wins_over_study_description():
    ds = _ds(SeriesDescription="L GASTROCNEMIUS", StudyDescription="US PERIPHERAL NERVES")
    choice = load_protocol_rules().choose(ds)
    assert choice.protocol is Protocol.MUSCLE and choice.site == "gastrocnemius muscle"


def test_no_match_names_the_attributes_looked_at():
    ds = _ds(SeriesDescription="ABDOMEN", BodyPartExamined="LIVER")
    with pytest.raises(NoProtocolMatchedError, match="no protocol matched") as info:
        load_protocol_rules().choose(ds)
    assert "SeriesDescription='ABDOMEN'" in str(info.value) and "BodyPartExamined='LIVER'" in str(info.value)


def test_override_forces_the_protocol():
    rules = load_protocol_rules()
    assert rules.choose(_ds(SeriesDescription="ABDOMEN"), override="muscle").protocol is Protocol.MUSCLE
    forced = rules.choose(_ds(SeriesDescription="R MEDIAN NERVE"), override=Protocol.MUSCLE)
    assert forced.protocol is Protocol.MUSCLE and forced.attribute == "override"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": 2, "attributes": ["SeriesDescription"], "rules": []}, "version"),
        ({"version": 1, "attributes": ["PatientName"], "rules": [{"protocol": "nerve", "site": "x", "pattern": "X"}]}, "PatientName"),
        ({"version": 1, "attributes": ["SeriesDescription"], "rules": [{"protocol": "bone", "site": "x", "pattern": "X"}]}, "nerve' or 'muscle"),
        ({"version": 1, "attributes": ["SeriesDescription"], "rules": [{"protocol": "nerve", "site": "x", "pattern": "("}]}, "invalid pattern"),
        ({"version": 1, "attributes": ["SeriesDescription"], "rules": [{"protocol": "nerve", "pattern": "X"}]}, "site"),
    ],
)
def test_invalid_rules_are_refused_on_load(data, message):
    with pytest.raises(UsageError, match=message):
        ProtocolRules.from_mapping(data)


def test_invalid_yaml_file_is_one_line(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("version: 1\nrules: [unclosed\n")
    with pytest.raises(UsageError, match="invalid YAML") as info:
        load_protocol_rules(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"ImageLaterality": "L", "Laterality": "R", "SeriesDescription": "RIGHT MEDIAN"}, Laterality.LEFT),
        ({"Laterality": "R", "SeriesDescription": "LEFT MEDIAN"}, Laterality.RIGHT),
        ({"SeriesDescription": "median nerve left wrist"}, Laterality.LEFT),
        ({"SeriesDescription": "R ULNAR NERVE"}, Laterality.RIGHT),
        ({"SeriesDescription": "L BICEPS"}, Laterality.LEFT),
        ({"SeriesDescription": "LATERAL VASTUS"}, Laterality.UNKNOWN),
    ],
)
def test_laterality_order(attrs, expected):
    assert laterality_of(_ds(**attrs)) is expected
