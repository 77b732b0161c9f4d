"""DICOM Structured Reports: TID 1500 Imaging Measurement Reports (CONTRACT.md section 5).

- :mod:`pipeline.sr.codes`: the coded concepts used, as constants;
- :mod:`pipeline.sr.content`: measurement groups (TID 1410 / 1501) from analysis results, made of the
  items of :mod:`pipeline.sr.items` on a :mod:`pipeline.sr.source_image`, with the Algorithm
  Identification of :mod:`pipeline.sr.algorithm_items`; :mod:`pipeline.sr.image_library` (TID 1600);
- :mod:`pipeline.sr.sop`: the SR document of one study (:func:`build_measurement_report`);
- :mod:`pipeline.sr.reader`: a generic reader for any TID 1500 SR (:func:`read_measurement_report`).
"""

from pipeline.sr.algorithm_items import AlgorithmInfo, muscle_algorithm, nerve_algorithm
from pipeline.sr.reader import (
    CodedValue,
    ImageReference,
    MeasurementGroup,
    MeasurementReport,
    NumericMeasurement,
    SpatialCoordinates,
    TextObservation,
    read_measurement_report,
)
from pipeline.sr.sop import build_measurement_report, report_file_name
from pipeline.sr.source_image import SourceImage
from pipeline.sr.sources import ReportError, group_by_study, header_dataset, study_completeness

__all__ = [
    "AlgorithmInfo",
    "CodedValue",
    "ImageReference",
    "MeasurementGroup",
    "MeasurementReport",
    "NumericMeasurement",
    "ReportError",
    "SourceImage",
    "SpatialCoordinates",
    "TextObservation",
    "build_measurement_report",
    "group_by_study",
    "header_dataset",
    "muscle_algorithm",
    "nerve_algorithm",
    "read_measurement_report",
    "report_file_name",
    "study_completeness",
]
