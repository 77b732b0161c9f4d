"""The networks' runtime: onnxruntime where it loads the model, OpenCV DNN as the stated fallback.

The runtime used is named in the segmenters' parameters (``model_runtime``, the
SR's Algorithm Identification for the nerve); both runtimes give the same
contours on the in-repo fixtures.
"""

from __future__ import annotations

import logging
import pickle
import sys

import numpy as np
import pytest

from pipeline.calibration import PixelBox
from pipeline.measurements.nerve import contour_mask
from pipeline.segmentation import LearnedNerveSegmenter, make_segmenter, nerve_model
from pipeline.segmentation.aponeurosis import AponeurosisNet, LearnedAponeurosisFinder
from pipeline.segmentation.factory import make_boundary_finder
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, RUNTIME_ENV, NerveNet, requested_runtime
from pipeline.sr.algorithm_items import nerve_algorithm
from tests.conftest import TEST_DATA

ort = pytest.importorskip("onnxruntime")

USGRA_IMAGES = TEST_DATA / "usgra-seg" / "images"


@pytest.fixture(autouse=True)
def _no_runtime_override(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)


def _gray(name: str) -> np.ndarray:
    from training.evaluate_nerve import load_example

    gray, _ = load_example(name, TEST_DATA / "usgra-seg")
    return gray


def test_onnxruntime_is_used_and_named_in_the_parameters():
    seg = make_segmenter("learned")
    runtime = seg.parameters.as_dict()["model_runtime"]
    assert runtime == f"onnxruntime {ort.__version__} CPUExecutionProvider" == seg.net.runtime
    assert f"model_runtime={runtime}" in nerve_algorithm(seg).parameters
    auto = make_segmenter("auto")
    assert auto.parameters.as_dict()["model_runtime"] == runtime
    finder = make_boundary_finder("learned")
    assert isinstance(finder, LearnedAponeurosisFinder)
    assert finder.parameters["model_runtime"] == runtime


def test_environment_variable_chooses_opencv(monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "opencv")
    seg = make_segmenter("learned")
    assert seg.parameters.as_dict()["model_runtime"].startswith("opencv-dnn ")
    assert any(p.startswith("model_runtime=opencv-dnn ") for p in nerve_algorithm(seg).parameters)
    assert make_boundary_finder("learned").parameters["model_runtime"].startswith("opencv-dnn ")


def test_runtime_choice_is_checked(monkeypatch, caplog):
    assert requested_runtime("OpenCV-DNN") == "opencv"
    with pytest.raises(ValueError, match="model runtime"):
        NerveNet(DEFAULT_MODEL_PATH, runtime="tensorrt")
    monkeypatch.setenv(RUNTIME_ENV, "bogus")
    with caplog.at_level(logging.WARNING, logger="pipeline.segmentation.nerve_model"):
        assert requested_runtime() == "auto"
    assert RUNTIME_ENV in caplog.text


def test_falls_back_to_opencv_without_onnxruntime(monkeypatch):
    """onnxruntime that cannot be imported: OpenCV DNN (auto), an error when onnxruntime is demanded."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    net = NerveNet(DEFAULT_MODEL_PATH)
    assert net.runtime.startswith("opencv-dnn ")
    assert AponeurosisNet().runtime.startswith("opencv-dnn ")
    with pytest.raises(ValueError, match="onnxruntime is not available"):
        NerveNet(DEFAULT_MODEL_PATH, runtime="onnxruntime")


def test_falls_back_to_opencv_when_onnxruntime_cannot_load(monkeypatch, caplog):
    def refuse(self, path):
        raise RuntimeError("simulated: unsupported operator")

    monkeypatch.setattr(nerve_model._OnnxRuntimeBackend, "__init__", refuse)
    with caplog.at_level(logging.WARNING, logger="pipeline.segmentation.nerve_model"):
        net = NerveNet(DEFAULT_MODEL_PATH)
    assert net.runtime.startswith("opencv-dnn ")
    assert "falling back to OpenCV DNN" in caplog.text
    with pytest.raises(ValueError, match="onnxruntime cannot read"):
        NerveNet(DEFAULT_MODEL_PATH, runtime="onnxruntime")


def test_unreadable_model_is_still_a_value_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError):
        NerveNet(bad)


def test_pickled_net_keeps_its_runtime():
    net = NerveNet(DEFAULT_MODEL_PATH, runtime="opencv")
    copy = pickle.loads(pickle.dumps(net))
    assert copy.runtime == net.runtime and copy.requested_runtime == "opencv"
    assert pickle.loads(pickle.dumps(NerveNet(DEFAULT_MODEL_PATH))).runtime.startswith("onnxruntime ")


def test_both_runtimes_give_the_same_contours():
    """Same logits to ~1e-5 and the same contours (areas within 0.5 %) on the usgra-seg fixtures."""
    fast, fallback = NerveNet(DEFAULT_MODEL_PATH, runtime="onnxruntime"), NerveNet(DEFAULT_MODEL_PATH, runtime="opencv")
    names = sorted(p.name for p in USGRA_IMAGES.glob("*.png"))[:4]
    assert names
    found = 0
    for name in names:
        gray = _gray(name)
        assert np.abs(fast.probabilities(gray) - fallback.probabilities(gray)).max() < 1e-3
        box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1)
        a = LearnedNerveSegmenter(fast).segment(gray, box, mm_per_px=None)
        b = LearnedNerveSegmenter(fallback).segment(gray, box, mm_per_px=None)
        assert len(a) == len(b), name
        for x, y in zip(a, b, strict=True):
            found += 1
            ma, mb = contour_mask(x.contour_px, gray.shape), contour_mask(y.contour_px, gray.shape)
            assert abs(int(ma.sum()) - int(mb.sum())) <= 0.005 * mb.sum() + 2, name
            assert x.confidence == pytest.approx(y.confidence, abs=1e-3)
    assert found, "the fixtures hold nerves the network finds"
