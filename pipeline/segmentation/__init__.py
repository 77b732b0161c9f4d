"""Segmenters: find structures in frames behind small interfaces."""

from pipeline.segmentation.auto_nerve import AutoNerveParameters, AutoNerveSegmenter
from pipeline.segmentation.base import NerveSegmentation, NerveSegmenter, RimFeatures
from pipeline.segmentation.classical_nerve import ClassicalNerveParameters, ClassicalNerveSegmenter
from pipeline.segmentation.factory import (
    ClassicalFallbackSegmenter,
    ModelMismatchError,
    SegmentationConfig,
    SegmenterSpec,
    load_segmentation_config,
    make_segmenter,
)
from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter
from pipeline.segmentation.nerve_model import NerveNet

__all__ = [
    "AutoNerveParameters",
    "AutoNerveSegmenter",
    "ClassicalFallbackSegmenter",
    "ClassicalNerveParameters",
    "ClassicalNerveSegmenter",
    "LearnedNerveParameters",
    "LearnedNerveSegmenter",
    "ModelMismatchError",
    "NerveNet",
    "NerveSegmentation",
    "NerveSegmenter",
    "RimFeatures",
    "SegmentationConfig",
    "SegmenterSpec",
    "load_segmentation_config",
    "make_segmenter",
]
