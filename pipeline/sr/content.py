"""Measurement groups (TID 1410 / TID 1501) built from analysis results.

One TID 1410 *Planar ROI Measurements* group per measured structure per
frame, each with its own Tracking Identifier and Tracking Unique Identifier,
Finding, Finding Site with laterality, Algorithm Identification and an Image
Region SCOORD on the exact source image (and frame, for multi-frame images):

- nerve: closed POLYLINE of the contour; Area, Perimeter, Major and Minor
  Axis (mm where calibrated), the flattening ratio (major / minor, with the
  mm values) and Echogenicity mean and SD; on a colour / power Doppler frame
  the vascularity index (%), intraneural vessel count and vascularity grade
  (local codes, :mod:`pipeline.sr.codes`);
- muscle: a thickness group (open 2-point POLYLINE of the caliper;
  Thickness, and its mean over the central half of the width), an
  echogenicity group (closed POLYLINE of the ROI; Echogenicity mean, SD and
  median; the ROI's vascularity index on a Doppler frame) and, where it was
  determined, a subcutaneous group (Finding Subcutaneous tissue; open
  2-point POLYLINE from the top of the tissue region to the superficial
  fascia at the caliper's column; Thickness).

Every measured group also carries the algorithm's confidence (0-1, local
code ``CONFIDENCE``, unit "1"; the ``confidence`` column of
measurements.csv) as one more NUM.

Doppler values sit in the structure's group (CONTRACT.md section 5), with a
"Colour flow" TEXT item naming the acquisition (Ultrasound Color Data
Present, Pulse Repetition Frequency); where they are absent the same item
says why ("no colour flow data" on greyscale frames).

A frame or image on which no measurement could be made gets a TID 1501
group that references the source image and says why in a TEXT item, so
nothing is dropped silently. Missing mm values (uncalibrated frames) are not
written; a TEXT item says why.

Coordinates: the pipeline uses pixel-centre coordinates (centre of the
top-left pixel at (0, 0)); DICOM SCOORD puts the top-left corner of the
top-left pixel at (0, 0), so :data:`SCOORD_OFFSET` (0.5) is added.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipeline.algorithm import AlgorithmIdentity, format_parameter, segmenter_identity
from pipeline.analysis import FrameResult, ImageResult
from pipeline.calibration import CalibrationSource
from pipeline.measurements import vascularity as vascularity_module
from pipeline.measurements.muscle import MuscleMeasurement
from pipeline.measurements.nerve import NerveMeasurement
from pipeline.measurements.vascularity import Vascularity
from pipeline.protocols import Laterality, Protocol
from pipeline.reference.flags import Flag, ReferenceReading
from pipeline.reference.keys import ReadingKey
from pipeline.sr import codes

#: Readings of the values of a study (``pipeline.reference.readings_for_rows``), by value.
Readings = Mapping[ReadingKey, ReferenceReading]
#: Values whose missing reference is said in the SR (the others have none to expect).
_FLAGGED_MEASUREMENTS = frozenset({"cross_sectional_area", "thickness", "echogenicity_mean"})

__all__ = [
    "SCOORD_OFFSET",
    "AlgorithmInfo",
    "MeasurementGroupTemplate",
    "SourceImage",
    "frame_groups",
    "image_groups",
    "image_library",
    "muscle_algorithm",
    "muscle_groups",
    "nerve_algorithm",
    "nerve_group",
    "not_measured_group",
    "subcutaneous_caliper",
    "to_scoord",
]

#: Added to pipeline pixel coordinates to get DICOM SCOORD image coordinates.
SCOORD_OFFSET = 0.5

_US_SINGLE_FRAME = "1.2.840.10008.5.1.4.1.1.6.1"
_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

MeasurementGroupTemplate = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
)
_Group = TypeVar("_Group", bound=MeasurementGroupTemplate)


@dataclass(frozen=True)
class SourceImage:
    """The image instance a measurement was made on.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid : str
        Identity of the source instance.
    number_of_frames : int
        Frames in the instance.
    multiframe : bool
        The instance is multi-frame (its IOD has Number of Frames): frame
        numbers are then referenced, even for a one-frame instance.
    label : str
        Short human-readable name (file name, else SOP Instance UID) used in
        tracking identifiers and TEXT items.
    """

    sop_class_uid: str
    sop_instance_uid: str
    number_of_frames: int = 1
    multiframe: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not self.sop_class_uid or not self.sop_instance_uid:
            raise ValueError("a source image needs a SOP Class UID and a SOP Instance UID")
        if self.number_of_frames < 1:
            raise ValueError(f"number_of_frames must be >= 1, got {self.number_of_frames}")

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, label: str = "") -> SourceImage:
        """Source reference from an image dataset (header only is enough)."""
        try:
            frames = int(dataset.get("NumberOfFrames", 1) or 1)
        except (TypeError, ValueError):
            frames = 1
        return cls(
            sop_class_uid=str(dataset.SOPClassUID),
            sop_instance_uid=str(dataset.SOPInstanceUID),
            number_of_frames=max(1, frames),
            multiframe="NumberOfFrames" in dataset or frames > 1,
            label=label or str(dataset.SOPInstanceUID),
        )

    @property
    def is_multiframe(self) -> bool:
        return self.multiframe or self.number_of_frames > 1

    def frame_numbers(self, frame_number: int | None) -> list[int] | None:
        """Referenced Frame Number value for ``frame_number`` (``None`` for single-frame images)."""
        if frame_number is None or not self.is_multiframe:
            return None
        if not 1 <= frame_number <= self.number_of_frames:
            raise ValueError(
                f"frame number {frame_number} outside 1..{self.number_of_frames} of {self.label or self.sop_instance_uid}"
            )
        return [int(frame_number)]

    def image_region(self, graphic_data: np.ndarray, frame_number: int | None) -> hd.sr.ImageRegion:
        """Image Region SCOORD (POLYLINE) on this image and frame.

        highdicom looks the SOP class up in its table of current IODs; the
        retired ultrasound classes the loader also accepts are not in it, so
        for those the region is built with the current equivalent class and
        the reference is then set to the image's own class.
        """
        def build(sop_class_uid: str) -> hd.sr.ImageRegion:
            return hd.sr.ImageRegion(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=graphic_data,
                source_image=hd.sr.SourceImageForRegion(
                    referenced_sop_class_uid=sop_class_uid,
                    referenced_sop_instance_uid=self.sop_instance_uid,
                    referenced_frame_numbers=self.frame_numbers(frame_number),
                ),
            )

        try:
            return build(self.sop_class_uid)
        except KeyError:  # SOP class unknown to highdicom's IOD table
            region = build(_US_MULTIFRAME if self.is_multiframe else _US_SINGLE_FRAME)
            region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPClassUID = self.sop_class_uid
            return region

    def for_group(self, frame_number: int | None) -> hd.sr.SourceImageForMeasurementGroup:
        return hd.sr.SourceImageForMeasurementGroup(
            referenced_sop_class_uid=self.sop_class_uid,
            referenced_sop_instance_uid=self.sop_instance_uid,
            referenced_frame_numbers=self.frame_numbers(frame_number),
        )


#: What TID 4019 Algorithm Identification records (name, version, parameters): the identity a
#: frame result carries (:class:`pipeline.algorithm.AlgorithmIdentity`), written as it is.
AlgorithmInfo = AlgorithmIdentity


def algorithm_template(info: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    """The TID 4019 items, built once per algorithm and shared by every group that cites it.

    A report repeats them in each group (up to ~20 TEXT items each); the
    items are never modified after construction, and pydicom writes a
    shared item wherever it appears, so building them once saves a
    fifth of the document's build time.
    """
    return _algorithm_template(info)


@functools.lru_cache(maxsize=16)
def _algorithm_template(info: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=info.name, version=info.version, parameters=list(info.parameters) or None)


def nerve_algorithm(segmenter: object) -> AlgorithmIdentity:
    """Algorithm Identification of the nerve measurement made by ``segmenter``
    (:func:`pipeline.algorithm.segmenter_identity`; what :func:`pipeline.analysis.analyze_frame` stamps)."""
    return segmenter_identity(segmenter)


def muscle_algorithm() -> AlgorithmIdentity:
    """Algorithm Identification of the muscle measurement (:func:`pipeline.analysis.muscle_identity`)."""
    from pipeline.analysis import muscle_identity

    return muscle_identity()


def _frame_algorithm(frame: FrameResult, override: AlgorithmIdentity | None) -> AlgorithmIdentity:
    """What measured ``frame``: the caller's override, else the identity the result carries."""
    algorithm = override or frame.algorithm
    if algorithm is None:
        raise ValueError(f"frame {frame.frame_number}: the result carries no algorithm identity")
    return algorithm


# --------------------------------------------------------------------------------------
# Small builders
# --------------------------------------------------------------------------------------


def to_scoord(points_px: np.ndarray | Sequence[Sequence[float]], *, closed: bool) -> np.ndarray:
    """Pipeline pixel coordinates -> SCOORD graphic data (float32, (N, 2)).

    ``closed`` repeats the first point at the end (a closed POLYLINE), unless
    it is already repeated.

    Raises
    ------
    ValueError
        Not an (N, 2) array of finite numbers, or too few points.
    """
    pts = np.asarray(points_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be an (N, 2) array, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite")
    if closed:
        if len(pts) < 3:
            raise ValueError(f"a closed outline needs at least 3 points, got {len(pts)}")
        if not np.array_equal(pts[0], pts[-1]):
            pts = np.vstack([pts, pts[:1]])
    elif len(pts) < 2:
        raise ValueError(f"a polyline needs at least 2 points, got {len(pts)}")
    return (pts + SCOORD_OFFSET).astype(np.float32)


def _text(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=" ".join(str(value).split()), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _measurement(
    name: Code,
    value: float,
    unit: Code,
    derivation: Code | None = None,
    reading: ReferenceReading | None = None,
    method: Code | None = None,
) -> hd.sr.Measurement:
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name.meaning}: value {value} is not finite")
    return hd.sr.Measurement(
        name=name, value=value, unit=unit, derivation=derivation, method=method,
        properties=reference_properties(reading, unit),
    )


def _confidence(value: float) -> hd.sr.Measurement:
    """The group's confidence NUM (local code, unit "1"; why not a standard concept: :data:`codes.CONFIDENCE`)."""
    return _measurement(codes.CONFIDENCE, value, codes.NO_UNITS)


def _interval_text(reading: ReferenceReading, unit: Code) -> str:
    low, high = reading.reference_low, reading.reference_high
    edge = "at a limit normal" if reading.at_cutoff.value == "normal" else "at a limit abnormal"
    if low is not None and high is not None:
        interval = f"{low:.4g} to {high:.4g} {unit.value}"
    elif high is not None:
        interval = f"up to {high:.4g} {unit.value}"
    elif low is not None:
        interval = f"from {low:.4g} {unit.value}"
    else:
        interval = "no interval"
    if reading.z_score is None:
        interval += f" ({edge})"
    return f"Normal range {interval}. Source: {reading.reference_source}"


def reference_properties(reading: ReferenceReading | None, unit: Code) -> hd.sr.MeasurementProperties | None:
    """TID 310 Measurement Properties of a flagged value: Normality (CID 222), the Normal Range
    (TID 312: lower / upper limit, CID 223, and its source as the description) and, for a z-score
    model, the population mean and SD at the patient's covariates and the z-score (TID 311).
    ``None`` when the value has no reference (flag ``none``)."""
    if reading is None or reading.flag is Flag.NONE:
        return None
    has_props = hd.sr.RelationshipTypeValues.HAS_PROPERTIES
    limits = [
        hd.sr.NumContentItem(name=code, value=float(limit), unit=unit, relationship_type=has_props)
        for code, limit in (
            (codes.NORMAL_RANGE_LOWER_LIMIT, reading.reference_low),
            (codes.NORMAL_RANGE_UPPER_LIMIT, reading.reference_high),
        )
        if limit is not None
    ]
    normal_range = hd.sr.NormalRangeProperties(values=limits, description=_interval_text(reading, unit)) if limits else None
    statistics = None
    if reading.z_score is not None and reading.population_mean is not None and reading.population_sd is not None:
        statistics = hd.sr.MeasurementStatisticalProperties(
            values=[
                hd.sr.NumContentItem(
                    name=codes.MEAN_VALUE_OF_POPULATION, value=reading.population_mean, unit=unit, relationship_type=has_props
                ),
                hd.sr.NumContentItem(
                    name=codes.STANDARD_DEVIATION_OF_POPULATION, value=reading.population_sd, unit=unit,
                    relationship_type=has_props,
                ),
                hd.sr.NumContentItem(
                    name=codes.Z_SCORE, value=reading.z_score, unit=codes.NO_UNITS, relationship_type=has_props
                ),
            ],
            description=" ".join(f"{reading.reason} {reading.reference_source}".split()),
        )
    return hd.sr.MeasurementProperties(
        normality=codes.normality_code(reading.flag.value),
        normal_range_properties=normal_range,
        measurement_statistical_properties=statistics,
    )


def _reading(
    readings: Readings | None, source: SourceImage, frame: FrameResult, structure: str, measurement: str
) -> ReferenceReading | None:
    if not readings:
        return None
    return readings.get(ReadingKey(source.sop_instance_uid, frame.frame_number, structure, measurement))


def _reference_notes(
    readings: Readings | None, source: SourceImage, frame: FrameResult, structure: str, measurements: Iterable[str]
) -> list[hd.sr.TextContentItem]:
    """TEXT items saying why a value that is usually flagged has no reference here."""
    notes = []
    for name in measurements:
        reading = _reading(readings, source, frame, structure, name)
        if reading is not None and reading.flag is Flag.NONE and name in _FLAGGED_MEASUREMENTS and reading.reason:
            notes.append(_text(codes.REFERENCE_NOT_APPLIED, f"{name}: {reading.reason}"))
    return notes


def _finding_site(site: str, laterality: Laterality, level: str = "") -> hd.sr.FindingSite:
    """Finding Site: the structure, its laterality and (as Topographical Modifier) the level, when known."""
    return hd.sr.FindingSite(
        anatomic_location=codes.site_code(site),
        laterality=codes.laterality_code(laterality),
        topographical_modifier=codes.level_code(level),
    )


def _side_label(laterality: Laterality) -> str:
    return {Laterality.RIGHT: "right", Laterality.LEFT: "left", Laterality.BOTH: "both sides"}.get(
        Laterality(laterality), ""
    )


def tracking_uid(source_sop_instance_uid: str, frame_number: int, what: str) -> str:
    """The Tracking Unique Identifier of a finding: the same for the same structure on the same image frame
    in every run, so a viewer can follow it from one report version to the next (2.25 UID of a hash)."""
    digest = hashlib.sha256("\x1f".join(["mskus-tracking", source_sop_instance_uid, str(frame_number), what]).encode())
    return f"2.25.{int.from_bytes(digest.digest()[:16], 'big')}"


def _tracking(source: SourceImage, frame: FrameResult, what: str) -> hd.sr.TrackingIdentifier:
    side = _side_label(frame.laterality)
    site = f"{side} {frame.site}".strip()
    frame_part = f" frame {frame.frame_number}" if source.is_multiframe else ""
    return hd.sr.TrackingIdentifier(
        uid=tracking_uid(source.sop_instance_uid, frame.frame_number, what),
        identifier=f"{what}: {site} ({source.label}{frame_part})",
    )


def _with_texts(group: _Group, texts: Iterable[hd.sr.TextContentItem]) -> _Group:
    """Append TEXT qualitative evaluations (TID 1501 row 12 / TID 1410) to a group."""
    items = list(texts)
    if items:
        group[0].ContentSequence.extend(items)
    return group


def _notes(frame: FrameResult, *, mm_reported: bool) -> list[hd.sr.TextContentItem]:
    """The frame's reason as a TEXT item: calibration fallback or why mm values are missing."""
    if not frame.reason:
        return []
    if frame.calibration.source is CalibrationSource.PIXEL_SPACING or mm_reported:
        return [_text(codes.CALIBRATION_NOTE, frame.reason)]
    return [_text(codes.NOT_MEASURED_REASON, frame.reason)]


# --------------------------------------------------------------------------------------
# Image Library (TID 1600)
# --------------------------------------------------------------------------------------


def _modality_code(dataset: Dataset) -> Code:
    modality = str(dataset.get("Modality", "") or "").strip().upper()
    if not modality and str(dataset.SOPClassUID) in _ULTRASOUND_CLASSES:
        modality = "US"
    return codes.MODALITY_CODES.get(modality) or Code(modality or "OT", "DCM", modality or "Other")


_ULTRASOUND_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.3"}
)


def image_library(datasets: Sequence[Dataset]) -> hd.sr.ContainerContentItem:
    """TID 1600 Image Library listing every source image.

    One Image Library Group per modality (and Frame of Reference), each image
    with its Modality, Pixel Data Rows and Columns (TID 1602). Built here
    rather than by highdicom so that every ultrasound SOP class the loader
    accepts (the retired ones and Secondary Capture included) can be listed.

    Raises
    ------
    ValueError
        No datasets, or a dataset without SOP Class/Instance UID, Rows or Columns.
    """
    if not datasets:
        raise ValueError("the Image Library needs at least one image")
    rel = hd.sr.RelationshipTypeValues
    groups: dict[tuple[str, str], list[hd.sr.ImageContentItem]] = {}
    for ds in datasets:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "Rows", "Columns"):
            if not ds.get(keyword):
                raise ValueError(f"image {ds.get('SOPInstanceUID', '?')} has no {keyword}")
        modality = _modality_code(ds)
        entry = hd.sr.ImageContentItem(
            name=codes.SOURCE,
            referenced_sop_class_uid=str(ds.SOPClassUID),
            referenced_sop_instance_uid=str(ds.SOPInstanceUID),
            relationship_type=rel.CONTAINS,
        )
        entry.ContentSequence = hd.sr.ContentSequence(
            [
                hd.sr.CodeContentItem(name=codes.MODALITY, value=modality, relationship_type=rel.HAS_ACQ_CONTEXT),
                hd.sr.NumContentItem(
                    name=codes.PIXEL_DATA_ROWS, value=int(ds.Rows), unit=codes.PIXELS,
                    relationship_type=rel.HAS_ACQ_CONTEXT,
                ),
                hd.sr.NumContentItem(
                    name=codes.PIXEL_DATA_COLUMNS, value=int(ds.Columns), unit=codes.PIXELS,
                    relationship_type=rel.HAS_ACQ_CONTEXT,
                ),
            ]
        )
        key = (modality.value, str(ds.get("FrameOfReferenceUID", "") or ""))
        groups.setdefault(key, []).append(entry)
    library = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY, relationship_type=rel.CONTAINS)
    library.ContentSequence = hd.sr.ContentSequence()
    for (_, frame_of_reference), entries in groups.items():
        group = hd.sr.ContainerContentItem(name=codes.IMAGE_LIBRARY_GROUP, relationship_type=rel.CONTAINS)
        items: list[hd.sr.ContentItem] = []
        if frame_of_reference:
            items.append(
                hd.sr.UIDRefContentItem(
                    name=codes.FRAME_OF_REFERENCE_UID, value=frame_of_reference, relationship_type=rel.HAS_ACQ_CONTEXT
                )
            )
        items.extend(entries)
        group.ContentSequence = hd.sr.ContentSequence(items)
        library.ContentSequence.append(group)
    return library


# --------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------


def nerve_group(
    frame: FrameResult,
    nerve: NerveMeasurement,
    source: SourceImage,
    algorithm: AlgorithmInfo,
    *,
    index: int = 1,
    readings: Readings | None = None,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """TID 1410 group of one nerve: closed contour, CSA and shape (mm) and echogenicity.

    ``index`` numbers the nerves of a frame (best first); the second and
    later are tracked as "nerve contour k".
    """
    region = source.image_region(to_scoord(nerve.contour_px, closed=True), frame.frame_number)
    structure = frame.site if index == 1 else f"{frame.site} (nerve {index})"

    def reading(name: str) -> ReferenceReading | None:
        return _reading(readings, source, frame, structure, name)

    measurements: list[hd.sr.Measurement] = []
    mm_values = (
        (codes.AREA, nerve.cross_sectional_area_mm2, codes.MM2, "cross_sectional_area"),
        (codes.PERIMETER, nerve.perimeter_mm, codes.MM, "perimeter"),
        (codes.MAJOR_AXIS, nerve.major_axis_mm, codes.MM, "major_axis"),
        (codes.MINOR_AXIS, nerve.minor_axis_mm, codes.MM, "minor_axis"),
    )
    mm_reported = all(value is not None for _, value, _, _ in mm_values)
    if mm_reported:
        measurements.extend(
            _measurement(name, value, unit, reading=reading(key)) for name, value, unit, key in mm_values  # type: ignore[arg-type]
        )
        # With the mm values, as measurements.csv has it (pipeline.analysis._nerve_values); a degenerate
        # contour (minor axis 0) has no finite ratio and none is written.
        if np.isfinite(nerve.flattening_ratio):
            measurements.append(
                _measurement(codes.FLATTENING_RATIO, nerve.flattening_ratio, codes.NO_UNITS, reading=reading("flattening_ratio"))
            )
    echo = nerve.echogenicity
    measurements.append(_measurement(codes.ECHOGENICITY, echo.mean, codes.NO_UNITS, codes.MEAN, reading("echogenicity_mean")))
    measurements.append(
        _measurement(codes.ECHOGENICITY, echo.sd, codes.NO_UNITS, codes.STANDARD_DEVIATION, reading("echogenicity_sd"))
    )
    doppler = getattr(frame, "doppler", None)
    vascularity = doppler.nerve(index - 1) if doppler is not None else None
    doppler_notes: list[hd.sr.TextContentItem] = []
    if vascularity is not None:
        measurements.extend(_vascularity_measurements(vascularity, nerve=True))
        doppler_notes = _vascularity_notes(vascularity)
        if vascularity.measured:
            algorithm = _with_vascularity_parameters(algorithm)
    measurements.append(_confidence(nerve.confidence))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source, frame, "nerve contour" if index == 1 else f"nerve contour {index}"),
        referenced_region=region,
        finding_type=codes.NERVE,
        finding_sites=[_finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))],
        algorithm_id=algorithm_template(algorithm),
        measurements=measurements,
    )
    references = _reference_notes(readings, source, frame, structure, ("cross_sectional_area",)) if mm_reported else []
    return _with_texts(group, _notes(frame, mm_reported=mm_reported) + doppler_notes + references)


def _vascularity_measurements(value: Vascularity, *, nerve: bool) -> list[hd.sr.Measurement]:
    """Vascularity index (%), and for a nerve the vessel count and grade (1); none when absent."""
    if not value.measured:
        return []
    assert value.vascularity_index is not None
    out = [_measurement(codes.VASCULARITY_INDEX, value.vascularity_index, codes.PERCENT)]
    if nerve and value.vessel_count is not None and value.vascularity_grade is not None:
        out.append(_measurement(codes.VESSEL_COUNT, value.vessel_count, codes.NO_UNITS))
        out.append(_measurement(codes.VASCULARITY_GRADE, value.vascularity_grade, codes.NO_UNITS))
    return out


def _vascularity_notes(value: Vascularity) -> list[hd.sr.TextContentItem]:
    """The "Colour flow" TEXT: the acquisition next to measured values, or why they are absent."""
    if value.measured:
        text = f"colour flow data: {value.note}" if value.note else ""
    else:
        text = f"vascularity not measured: {value.reason}" if value.reason else ""
    return [_text(codes.COLOUR_FLOW, text)] if text else []


def _with_vascularity_parameters(algorithm: AlgorithmInfo) -> AlgorithmInfo:
    """The algorithm's parameters plus the colour-flow detection and grading settings."""
    v = vascularity_module
    setting = (
        f"vascularity=chroma>{v.CHROMA_FLOOR}+tint*luma (or {v.NOISE_SIGMAS:g} noise SD), seed +{v.SEED_MARGIN}, "
        f"lossy half-max {v.LOSSY_HALF_MAX:g}, min vessel {v.MIN_VESSEL_PX} px, nerve coverage >= {v.MIN_NERVE_COVERAGE:g}, "
        f"muscle ROI coverage >= {v.MIN_ROI_COVERAGE:g}; grade 0 none, 1 one, 2 two-three, 3 more vessels"
    )
    return dataclasses.replace(algorithm, parameters=(*algorithm.parameters, setting))


def muscle_groups(
    frame: FrameResult,
    muscle: MuscleMeasurement,
    source: SourceImage,
    algorithm: AlgorithmInfo,
    *,
    readings: Readings | None = None,
) -> list[MeasurementGroupTemplate]:
    """The thickness group (caliper) and the echogenicity group (ROI) of one muscle frame."""
    # The boundary finder that placed this caliper (learned model and hash, or the classical search
    # with the reason it stands in) is part of the algorithm's identity.
    algorithm = dataclasses.replace(
        algorithm, parameters=(*algorithm.parameters, format_parameter("boundaries", muscle.boundaries))
    )
    if muscle.layer != 1:
        algorithm = dataclasses.replace(
            algorithm, parameters=(*algorithm.parameters, format_parameter("muscle_layer", muscle.layer))
        )
    if not muscle.site.is_default:
        algorithm = dataclasses.replace(
            algorithm, parameters=(*algorithm.parameters, format_parameter("thickness_site", muscle.site.describe()))
        )
    site = [_finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))]
    groups: list[MeasurementGroupTemplate] = []

    def reading(name: str) -> ReferenceReading | None:
        return _reading(readings, source, frame, frame.site, name)

    caliper = source.image_region(
        to_scoord(np.asarray(muscle.caliper_px, dtype=np.float64), closed=False), frame.frame_number
    )
    thickness: list[hd.sr.Measurement] = []
    if muscle.thickness_mm is not None:
        thickness.append(_measurement(codes.THICKNESS, muscle.thickness_mm, codes.MM, reading=reading("thickness")))
    mm_reported = bool(thickness)
    if muscle.thickness_mean_central_half_mm is not None:
        thickness.append(_mean_central_half(muscle.thickness_mean_central_half_mm, reading("thickness_mean_central_half")))
    if thickness:
        thickness.append(_confidence(muscle.confidence))
    thickness_group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(source, frame, "thickness caliper"),
        referenced_region=caliper,
        finding_type=codes.SKELETAL_MUSCLE,
        finding_sites=site,
        algorithm_id=algorithm_template(algorithm),
        measurements=thickness or None,
    )
    thickness_notes = _notes(frame, mm_reported=mm_reported)
    if thickness:
        thickness_notes += _reference_notes(readings, source, frame, frame.site, ("thickness",))
    groups.append(_with_texts(thickness_group, thickness_notes))
    subcutaneous = _subcutaneous_group(frame, muscle, source, algorithm, reading("subcutaneous_thickness"))
    if subcutaneous is not None:
        groups.append(subcutaneous)

    echo = muscle.echogenicity
    if echo is not None:
        echo_measurements = [
            _measurement(codes.ECHOGENICITY, echo.mean, codes.NO_UNITS, codes.MEAN, reading("echogenicity_mean")),
            _measurement(codes.ECHOGENICITY, echo.sd, codes.NO_UNITS, codes.STANDARD_DEVIATION, reading("echogenicity_sd")),
            _measurement(codes.ECHOGENICITY, echo.median, codes.NO_UNITS, codes.MEDIAN, reading("echogenicity_median")),
        ]
        confidence = _confidence(muscle.confidence)
        notes = [_text(codes.CALIBRATION_NOTE, frame.reason)] if frame.reason else []
        notes += _reference_notes(readings, source, frame, frame.site, ("echogenicity_mean",))
        # The ROI's vascularity (Doppler frames) sits in the same group: it is measured over the same ROI.
        doppler = getattr(frame, "doppler", None)
        if doppler is not None and doppler.muscle is not None:
            echo_measurements.extend(_vascularity_measurements(doppler.muscle, nerve=False))
            notes.extend(_vascularity_notes(doppler.muscle))
            if doppler.muscle.measured:
                algorithm = _with_vascularity_parameters(algorithm)
        echo_measurements.append(confidence)
        roi = np.asarray(muscle.roi_polygon_px, dtype=np.float64).reshape(-1, 2)
        if len(roi) >= 3:
            echo_group: MeasurementGroupTemplate = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(source, frame, "echogenicity ROI"),
                referenced_region=source.image_region(to_scoord(roi, closed=True), frame.frame_number),
                finding_type=codes.SKELETAL_MUSCLE,
                finding_sites=site,
                algorithm_id=algorithm_template(algorithm),
                measurements=echo_measurements,
            )
        else:  # no outline to draw: keep the values, referenced to the image
            echo_group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(source, frame, "echogenicity"),
                finding_type=codes.SKELETAL_MUSCLE,
                finding_sites=site,
                algorithm_id=algorithm_template(algorithm),
                measurements=echo_measurements,
                source_images=[source.for_group(frame.frame_number)],
            )
        groups.append(_with_texts(echo_group, notes))
    return groups


def _mean_central_half(value: float, reading: ReferenceReading | None) -> hd.sr.Measurement:
    """Thickness (LN 59089-3) with Derivation Mean and Measurement Method "central half of the width"."""
    return _measurement(codes.THICKNESS, value, codes.MM, codes.MEAN, reading, method=codes.CENTRAL_HALF)


def subcutaneous_caliper(muscle: MuscleMeasurement) -> np.ndarray | None:
    """The subcutaneous caliper in frame pixels: top of the tissue region, then the outer edge of the
    superficial fascia, both at the muscle caliper's column; ``None`` when not determined.

    ``subcutaneous_thickness_px`` is the vertical distance from the tissue region's top row to that edge
    at the centre column (:func:`pipeline.measurements.muscle.measure_muscle`), so the top end is the
    edge's point at that column moved up by it.
    """
    if muscle.subcutaneous_thickness_px is None:
        return None
    edge = np.asarray(muscle.superficial_outer_edge_px, dtype=np.float64).reshape(-1, 2)
    x = float(muscle.caliper_px[0][0])
    if len(edge) < 1 or not edge[:, 0].min() <= x <= edge[:, 0].max():
        return None
    order = np.argsort(edge[:, 0])
    y_edge = float(np.interp(x, edge[order, 0], edge[order, 1]))
    return np.array([[x, y_edge - float(muscle.subcutaneous_thickness_px)], [x, y_edge]])


def _subcutaneous_group(
    frame: FrameResult,
    muscle: MuscleMeasurement,
    source: SourceImage,
    algorithm: AlgorithmInfo,
    reading: ReferenceReading | None,
) -> MeasurementGroupTemplate | None:
    """The subcutaneous thickness of a muscle frame, in a group of its own (Finding and Finding Site
    Subcutaneous tissue, with the frame's side and level) so that no reader takes it for the muscle's
    thickness; ``None`` when it was not determined (or the frame is uncalibrated)."""
    if muscle.subcutaneous_thickness_mm is None:
        return None
    measurements = [
        _measurement(codes.THICKNESS, muscle.subcutaneous_thickness_mm, codes.MM, reading=reading),
        _confidence(muscle.confidence),
    ]
    site = [
        hd.sr.FindingSite(
            anatomic_location=codes.SUBCUTANEOUS_TISSUE,
            laterality=codes.laterality_code(frame.laterality),
            topographical_modifier=codes.level_code(getattr(frame, "level", "")),
        )
    ]
    what = "subcutaneous caliper"
    points = subcutaneous_caliper(muscle)
    group: MeasurementGroupTemplate
    if points is not None:
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(source, frame, what),
            referenced_region=source.image_region(to_scoord(points, closed=False), frame.frame_number),
            finding_type=codes.SUBCUTANEOUS_TISSUE,
            finding_sites=site,
            algorithm_id=algorithm_template(algorithm),
            measurements=measurements,
        )
    else:  # no edge point at the caliper's column: keep the value, referenced to the image
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(source, frame, what),
            finding_type=codes.SUBCUTANEOUS_TISSUE,
            finding_sites=site,
            algorithm_id=algorithm_template(algorithm),
            measurements=measurements,
            source_images=[source.for_group(frame.frame_number)],
        )
    notes = [_text(codes.CALIBRATION_NOTE, frame.reason)] if frame.reason else []
    return _with_texts(group, notes)


def not_measured_group(
    source: SourceImage | None,
    reason: str,
    *,
    frame: FrameResult | None = None,
    label: str = "",
    algorithm: AlgorithmInfo | None = None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group for a frame (or a whole image) where nothing was measured.

    It references the source image (and frame) when known, names the finding
    and site when a protocol was chosen, and gives ``reason`` as TEXT.
    """
    if not reason:
        raise ValueError("a not-measured group needs a reason")
    finding = None
    sites = None
    if frame is not None:
        finding = codes.NERVE if frame.protocol is Protocol.NERVE else codes.SKELETAL_MUSCLE
        sites = [_finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))]
        if source is not None:
            tracking = _tracking(source, frame, "not measured")
        else:
            tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"not measured: {frame.site} ({label})")
    else:
        name = label or (source.label if source is not None else "image")
        tracking = hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"not measured: {name}")
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=finding,
        finding_sites=sites,
        algorithm_id=algorithm_template(algorithm) if algorithm is not None else None,
        source_images=[source.for_group(frame.frame_number if frame is not None else None)] if source else None,
    )
    return _with_texts(group, [_text(codes.NOT_MEASURED_REASON, reason)])


def frame_groups(
    frame: FrameResult,
    source: SourceImage,
    *,
    nerve_algo: AlgorithmInfo | None = None,
    muscle_algo: AlgorithmInfo | None = None,
    readings: Readings | None = None,
) -> list[MeasurementGroupTemplate]:
    """All groups of one analysed frame (measured or not); ``readings`` add reference intervals and normality."""
    if frame.nerve is not None:
        # One group per nerve: the best, then any further nerve regions of the frame.
        nerves = [frame.nerve, *getattr(frame, "extra_nerves", ())]
        return [
            nerve_group(frame, n, source, _frame_algorithm(frame, nerve_algo), index=k, readings=readings)
            for k, n in enumerate(nerves, start=1)
        ]
    if frame.muscle is not None:
        return muscle_groups(frame, frame.muscle, source, _frame_algorithm(frame, muscle_algo), readings=readings)
    algorithm = frame.algorithm or (nerve_algo if frame.protocol is Protocol.NERVE else muscle_algo)
    return [
        not_measured_group(source, frame.reason or "not measured", frame=frame, algorithm=algorithm)
    ]


def image_groups(
    result: ImageResult,
    source: SourceImage | None,
    *,
    nerve_algo: AlgorithmInfo | None = None,
    muscle_algo: AlgorithmInfo | None = None,
    readings: Readings | None = None,
) -> list[MeasurementGroupTemplate]:
    """Groups of one image: per frame, plus one for an image-level error."""
    groups: list[MeasurementGroupTemplate] = []
    if source is not None:
        for frame in result.frames:
            groups.extend(frame_groups(frame, source, nerve_algo=nerve_algo, muscle_algo=muscle_algo, readings=readings))
    fasciculation = getattr(result, "fasciculation", None)
    if fasciculation is not None and source is not None and result.protocol is not None:
        # Imported here: pipeline.sr.fasciculation builds on this module.
        from pipeline.sr.fasciculation import fasciculation_group

        laterality = result.frames[0].laterality if result.frames else Laterality.UNKNOWN
        groups.append(fasciculation_group(fasciculation, source, site=result.protocol.site, laterality=laterality))
    if result.failed:
        label = source.label if source is not None else (result.source_file or result.sop_instance_uid)
        groups.append(not_measured_group(source, result.error, label=label))
    return groups
