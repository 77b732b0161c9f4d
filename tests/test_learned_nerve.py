"""The learned nerve segmenter: OpenCV-only inference, recorded validation figures, vessels, fallback.

Needs no torch: the model runs through ``cv2.dnn`` (one test proves it in a
process where importing torch fails).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pipeline.analysis import analyze_frame, measurement_rows
from pipeline.loading import load_ultrasound
from pipeline.measurements.nerve import contour_mask
from pipeline.protocols import Laterality, Protocol
from pipeline.segmentation import (
    AutoNerveSegmenter,
    ClassicalFallbackSegmenter,
    ClassicalNerveSegmenter,
    LearnedNerveSegmenter,
    NerveNet,
    NerveSegmentation,
    RimFeatures,
    factory,
    load_segmentation_config,
    make_segmenter,
)
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, file_sha256, metadata_path
from pipeline.settings import build_analyzer, load_analysis_settings
from pipeline.sr.algorithm_items import nerve_algorithm
from pipeline.sr.content import frame_groups
from pipeline.sr.source_image import SourceImage
from tests.analysis_helpers import analyze_image, shipped_analyzer
from tests.conftest import REPO, SAMPLE_DATA, TEST_DATA

# Every 5th validation image with its mask (tests/data/usgra-seg/SOURCE.md).
USGRA_SUBSET = TEST_DATA / "usgra-seg"
META = json.loads(metadata_path(DEFAULT_MODEL_PATH).read_text())


@pytest.fixture(scope="module")
def net() -> NerveNet:
    return NerveNet(DEFAULT_MODEL_PATH)


@pytest.fixture(scope="module")
def auto(net) -> AutoNerveSegmenter:
    return AutoNerveSegmenter(LearnedNerveSegmenter(net))


def nerve_files() -> list:
    out = []
    for path in sorted(SAMPLE_DATA.glob("*.dcm")):
        truth = json.loads(path.with_suffix(".json").read_text())
        if truth["kind"] == "nerve":
            out.append((path, truth))
    return out


# --------------------------------------------------------------------------------------
# The committed model
# --------------------------------------------------------------------------------------


def test_committed_model_is_small_and_identified(net):
    assert DEFAULT_MODEL_PATH.stat().st_size < 10_000_000
    assert net.sha256 == META["sha256"] == file_sha256(DEFAULT_MODEL_PATH)
    assert META["parameters"] <= 2_100_000
    assert net.input_size == META["input_size"]
    split = META["split"]
    assert len(split["validation"]) == 40 and not set(split["validation"]) & set(split["train"])
    card = (REPO / "models" / "MODEL_CARD.md").read_text()
    assert net.sha256[:12] in card and "CC-BY-4.0" in card and "tmkand/usgra-seg" in card
    assert all(name in card for name in split["validation"]), "the model card lists the validation split"


def test_validation_split_is_the_seeded_one():
    """The recorded split is the seeded permutation of the recorded names (no the shared data folder needed)."""
    from training.data import split_names

    names = META["split"]["train"] + META["split"]["validation"]
    train, val = split_names(names)
    assert val == META["split"]["validation"] and train == META["split"]["train"]


def test_opencv_inference_reproduces_recorded_subset_figures(net):
    """The model gives the figures recorded for the in-repo validation subset, with both outlines.

    ``learned``: the shipped segmenter (configs/segmentation.yaml, ``outline: refined``) as the
    pipeline reports it (calibrated confidence, floor applied); ``learned_network_outline``: the
    same with the network's own outline.
    """
    from training.evaluate_nerve import FlooredSegmenter, evaluate

    recorded = META["validation_subset"]
    names = sorted(p.name for p in (USGRA_SUBSET / "images").glob("*.png"))
    assert names == recorded["files"] and set(names) <= set(META["split"]["validation"])
    shipped = make_segmenter()
    assert isinstance(shipped, LearnedNerveSegmenter) and shipped.settings.outline == recorded["learned"]["outline"] == "refined"
    assert shipped.settings.as_dict() == recorded["learned"]["settings"], "recorded with the shipped settings"
    network = LearnedNerveSegmenter(net, dataclasses.replace(shipped.settings, outline="network"))
    for key, seg in (("learned", shipped), ("learned_network_outline", network)):
        want = recorded[key]
        assert want["min_confidence"] == seg.min_confidence
        got = evaluate(FlooredSegmenter(seg, seg.min_confidence), names, folder=USGRA_SUBSET)
        assert got["reported_nerves"] == want["reported_nerves"], key
        for figure in ("nerve_dice", "dice_on_hits", "hit_rate"):
            assert got[figure] == pytest.approx(want[figure], abs=0.01), (key, figure)
        for figure in ("median_abs_relative", "mean_signed_relative"):
            assert got["area_error_px"][figure] == pytest.approx(want["area_error_px"][figure], abs=0.01), (key, figure)


def test_inference_needs_no_torch(tmp_path):
    """Load and run the model in a process where ``import torch`` / ``onnxruntime`` fail (OpenCV DNN fallback)."""
    script = textwrap.dedent(
        f"""
        import sys

        class NoDeepLearning:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "onnxruntime", "onnx"):
                    raise ImportError(f"{{name}} is not available")
                return None

        sys.meta_path.insert(0, NoDeepLearning())
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from pipeline.calibration import PixelBox
        from pipeline.segmentation.factory import make_segmenter
        seg = make_segmenter("auto")
        assert type(seg).__name__ == "AutoNerveSegmenter", type(seg)
        gray = (np.random.default_rng(0).random((300, 320)) * 255).astype(np.uint8)
        seg.segment(gray, PixelBox(0, 0, 319, 299), mm_per_px=0.08)
        print("ok", seg.version, seg.parameters.as_dict()["model_runtime"])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
    assert "opencv-dnn" in proc.stdout, proc.stdout


# --------------------------------------------------------------------------------------
# Vessels are never nerves; sample_data nerves are found
# --------------------------------------------------------------------------------------


def _vessel_disk(vessel: dict, shape: tuple[int, int]) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cx, cy = vessel["center_px"]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= vessel["radius_px"] ** 2


def test_auto_never_reports_a_vessel_on_sample_data(auto):
    checked_vessels = found_true = frames = 0
    for path, truth in nerve_files():
        image = load_ultrasound(path)
        result = analyze_image(image, protocol=Protocol.NERVE, segmenter=auto)
        shape = (image.rows, image.columns)
        for frame, t in zip(result.frames, truth["frames"]):
            frames += 1
            true_mask = contour_mask(np.asarray(t["contour_px"]), shape)
            vessel = _vessel_disk(t["vessel"], shape) if t.get("vessel") else None
            for nerve in frame.nerves:
                mask = contour_mask(nerve.contour_px, shape)
                if vessel is not None:
                    checked_vessels += 1
                    cx, cy = t["vessel"]["center_px"]
                    assert not mask[int(round(cy)), int(round(cx))], f"{path.name}: vessel centre inside a nerve"
                    assert (mask & vessel).sum() <= 0.05 * mask.sum(), f"{path.name}: nerve contour on the vessel"
            dices = [2 * (contour_mask(n.contour_px, shape) & true_mask).sum()
                     / (contour_mask(n.contour_px, shape).sum() + true_mask.sum()) for n in frame.nerves]
            found_true += bool(dices) and max(dices) >= 0.8
    assert checked_vessels > 0
    assert found_true == frames, f"auto found {found_true} of {frames} sample_data nerves"


# --------------------------------------------------------------------------------------
# Configuration, fallback, SR identification
# --------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_segmenter_overrides(monkeypatch):
    for name in (factory.ENV_CONFIG, factory.ENV_KIND, factory.ENV_MODEL):
        monkeypatch.delenv(name, raising=False)


def test_config_chooses_the_segmenter(tmp_path, monkeypatch):
    cfg = load_segmentation_config()
    assert cfg.segmenter in factory.KINDS and cfg.model == DEFAULT_MODEL_PATH
    for kind, cls in (("classical", ClassicalNerveSegmenter), ("learned", LearnedNerveSegmenter), ("auto", AutoNerveSegmenter)):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(f"nerve:\n  segmenter: {kind}\n  auto:\n    min_agreement: 0.5\n")
        seg = make_segmenter(config=load_segmentation_config(path))
        assert type(seg) is cls
    bad = tmp_path / "bad.yaml"
    bad.write_text("nerve:\n  segmenter: deep\n")
    with pytest.raises(ValueError, match="unknown nerve segmenter"):
        load_segmentation_config(bad)
    monkeypatch.setenv(factory.ENV_KIND, "learned")
    assert load_segmentation_config().segmenter == "learned"
    assert type(build_analyzer(load_analysis_settings()).segmenter) is LearnedNerveSegmenter


def test_sr_names_model_version_and_hash(auto, net):
    for seg in (auto, LearnedNerveSegmenter(net)):
        info = nerve_algorithm(seg)
        assert info.name == seg.name
        assert net.short_hash in info.version and META["model_version"] in info.version
        assert f"model={DEFAULT_MODEL_PATH.name}" in info.parameters
        assert f"model_sha256={net.short_hash}" in info.parameters


def test_pipeline_falls_back_to_classical_without_the_model(tmp_path, monkeypatch, caplog):
    missing = tmp_path / "nerve_unet.onnx"
    with caplog.at_level(logging.WARNING):
        seg = make_segmenter("auto", model=missing)
    assert isinstance(seg, ClassicalFallbackSegmenter) and seg.name == ClassicalNerveSegmenter.name
    assert any("model file not found" in r.getMessage() for r in caplog.records)
    info = nerve_algorithm(seg)
    assert info.name == "mskus-classical-nerve"
    assert any(p.startswith("fallback=auto segmenter unavailable (model file not found") for p in info.parameters)

    # The configured default falls back the same way, measures as before, and its results say so.
    monkeypatch.setenv(factory.ENV_KIND, "auto")
    monkeypatch.setenv(factory.ENV_MODEL, str(missing))
    path, truth = nerve_files()[0]
    image = load_ultrasound(path)
    configured = build_analyzer(load_analysis_settings())
    assert isinstance(configured.segmenter, ClassicalFallbackSegmenter)
    fallback = configured.analyze(image)
    classical = analyze_image(image, protocol=Protocol.NERVE, segmenter=ClassicalNerveSegmenter())
    assert [r.value for r in measurement_rows(fallback)] == [r.value for r in measurement_rows(classical)]
    assert fallback.frames[0].nerve is not None
    assert any(p.startswith("fallback=") for p in fallback.frames[0].algorithm.parameters)


def test_each_nerve_is_its_own_rows_and_group():
    """A segmenter that reports two nerves gives two sets of rows and two SR groups."""
    path, truth = nerve_files()[0]
    image = load_ultrasound(path)
    frame = next(iter(image.iter_frames()))
    t = truth["frames"][0]
    first = np.asarray(t["contour_px"])
    second = first + np.array([0.0, 60.0])
    features = RimFeatures(1.0, 3.0, 2.0, 0.8, 3.0, 2.0)

    class Two:
        name, version = "two", "1"

        def segment(self, gray, box, *, mm_per_px, exclude=None):
            return [NerveSegmentation(c, c, 0.9, features) for c in (first, second)]

    choice = shipped_analyzer().rules.choose(image.dataset)
    assert choice.protocol is Protocol.NERVE
    result = analyze_frame(frame, choice, Laterality.RIGHT, segmenter=Two())
    assert result.nerve is not None and len(result.extra_nerves) == 1 and len(result.nerves) == 2
    image_result = dataclasses.replace(
        analyze_image(image, protocol=Protocol.NERVE, segmenter=ClassicalNerveSegmenter()), frames=(result,)
    )
    rows = [r for r in measurement_rows(image_result) if r.measurement == "cross_sectional_area"]
    assert len(rows) == 2 and rows[0].structure == choice.site and rows[1].structure == f"{choice.site} (nerve 2)"
    source = SourceImage.from_dataset(image.dataset, label=path.name)
    groups = frame_groups(result, source, nerve_algo=nerve_algorithm(Two()), muscle_algo=nerve_algorithm(Two()))
    assert len(groups) == 2
