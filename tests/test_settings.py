"""One validated settings object, loaded at the entry point, travelling unchanged to workers."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from pipeline.errors import UsageError
from pipeline.resources import shipped_config
from pipeline.settings import ModelMismatchError, build_analyzer, load_analysis_settings

MSKUS = [sys.executable, "-m", "mskus"]


def test_settings_pickle_and_build_the_same_analysis():
    settings = load_analysis_settings()
    again = pickle.loads(pickle.dumps(settings))
    assert again == settings and again.fingerprint == settings.fingerprint
    analyzer = build_analyzer(again)
    assert analyzer.settings.fingerprint == settings.fingerprint
    assert build_analyzer(settings) is analyzer  # built once per process
    assert settings.nerve.kind == "learned" and settings.nerve.model == "nerve_unet.onnx"
    assert settings.reference.nerve_limits, "the shipped reference tables are loaded"


def test_fingerprint_follows_what_changes_results(tmp_path):
    base = load_analysis_settings()
    rules = tmp_path / "rules.yaml"
    rules.write_text(shipped_config("protocols.yaml").read_text() + "\n# a comment changes the text\n")
    assert load_analysis_settings(rules=rules).fingerprint != base.fingerprint
    assert load_analysis_settings(protocol="nerve").fingerprint != base.fingerprint
    assert load_analysis_settings().fingerprint == base.fingerprint


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("segmentation.yaml", "nerve:\n  segmenter: learned\n  colour: red\n", "nerve: unknown keys colour"),
        ("segmentation.yaml", "muscle:\n  boundaries: magic\n", "unknown muscle boundaries 'magic'"),
        ("segmentation.yaml", "nerve: [1, 2\n", "invalid YAML"),
        ("segmentation.yaml", "optics:\n  x: 1\n", "unknown keys optics"),  # no section: the nerve section
    ],
)
def test_a_bad_segmentation_file_is_one_line_naming_file_and_key(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_analysis_settings(segmentation=path)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert str(path) in message or "segmentation configuration" in message


def test_bad_rules_and_missing_files_are_usage_errors(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nattributes: [SeriesDescription]\nrules:\n  - {protocol: lungs, pattern: X}\n")
    with pytest.raises(UsageError, match=str(rules)):
        load_analysis_settings(rules=rules)
    with pytest.raises(UsageError, match="cannot read protocol rules"):
        load_analysis_settings(rules=tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="segmentation config not found"):
        load_analysis_settings(segmentation=tmp_path / "missing.yaml")


def test_the_command_says_which_file_and_key_in_one_line(tmp_path):
    path = tmp_path / "seg.yaml"
    path.write_text("nerve:\n  segmenter: learned\n  colour: red\n")
    proc = subprocess.run([*MSKUS, "analyze", "--segmentation", str(path), str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(path) in line and "colour" in line


def test_a_worker_with_another_model_refuses(tmp_path):
    settings = load_analysis_settings()
    import dataclasses

    other = dataclasses.replace(settings, nerve=dataclasses.replace(settings.nerve, model_sha256="0" * 64))
    with pytest.raises(ModelMismatchError, match="SHA-256"):
        build_analyzer(other)


def test_a_preset_specific_model_applies_only_with_that_preset(tmp_path):
    """A clinic's z-score table for its own scanner and preset, loaded at the entry point, reaches the rows."""
    from pipeline.study import StudyFile, analyze_study
    from tests.conftest import SAMPLE_DATA

    table = tmp_path / "clinic_zscores.yaml"
    table.write_text(
        "version: 1\nkind: zscore_models\n"
        "sources:\n  clinic:\n    paper: our own normal values\n    table: none\n    population: 60 volunteers\n"
        "    method: mean and SD\n    verified: true\n"
        "rows:\n  - structure: rectus femoris muscle\n    measurement: echogenicity_mean\n    unit: '1'\n"
        "    device: SYN-L12\n    preset: MSK-SUPERFICIAL\n    mean: {intercept: 60.0}\n    sd: 10.0\n"
        "    z_limit: 2.0\n    source: clinic\n"
    )
    files = [StudyFile(str(SAMPLE_DATA / "04_muscle_mono.dcm"), "04.dcm")]

    def echogenicity(preset: str):
        settings = load_analysis_settings(reference=[table], preset=preset)
        study = analyze_study(files, build_analyzer(settings))
        (reading,) = [r for row, _, r in study.measurement_rows() if row.measurement == "echogenicity_mean"]
        return reading

    with_preset, without = echogenicity("MSK-SUPERFICIAL"), echogenicity("")
    assert with_preset is not None and with_preset.z_score is not None
    assert without is not None and without.z_score is None and without.flag.value == "none"
