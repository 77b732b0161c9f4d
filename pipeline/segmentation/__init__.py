"""Segmenters: find structures in frames behind small interfaces."""

from pipeline.segmentation.base import NerveSegmentation, NerveSegmenter, RimFeatures
from pipeline.segmentation.classical_nerve import ClassicalNerveParameters, ClassicalNerveSegmenter

__all__ = [
    "ClassicalNerveParameters",
    "ClassicalNerveSegmenter",
    "NerveSegmentation",
    "NerveSegmenter",
    "RimFeatures",
]
