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

The items the groups are made of are in :mod:`pipeline.sr.items`, the
referenced image in :mod:`pipeline.sr.source_image`, the Algorithm
Identification in :mod:`pipeline.sr.algorithm_items` and the Image Library
in :mod:`pipeline.sr.image_library`.
"""

from __future__ import annotations

import dataclasses

import highdicom as hd
import numpy as np

from pipeline.algorithm import format_parameter
from pipeline.analysis import FrameResult, ImageResult
from pipeline.measurements import vascularity as vascularity_module
from pipeline.measurements.muscle import MuscleMeasurement
from pipeline.measurements.nerve import NerveMeasurement
from pipeline.measurements.vascularity import Vascularity
from pipeline.protocols import Laterality, Protocol
from pipeline.reference.flags import ReferenceReading
from pipeline.sr import codes
from pipeline.sr.algorithm_items import AlgorithmInfo, algorithm_template, frame_algorithm
from pipeline.sr.fasciculation import fasciculation_group
from pipeline.sr.items import (
    MeasurementGroupTemplate,
    Readings,
    confidence_item,
    finding_site,
    frame_notes,
    measurement_item,
    reading_for,
    reference_notes,
    text_item,
    to_scoord,
    tracking_identifier,
    with_texts,
)
from pipeline.sr.source_image import SourceImage

__all__ = [
    "frame_groups",
    "image_groups",
    "muscle_groups",
    "nerve_group",
    "not_measured_group",
    "subcutaneous_caliper",
]


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
        return reading_for(readings, source, frame, structure, name)

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
            measurement_item(name, value, unit, reading=reading(key)) for name, value, unit, key in mm_values  # type: ignore[arg-type]
        )
        # With the mm values, as measurements.csv has it (pipeline.analysis._nerve_values); a degenerate
        # contour (minor axis 0) has no finite ratio and none is written.
        if np.isfinite(nerve.flattening_ratio):
            measurements.append(
                measurement_item(codes.FLATTENING_RATIO, nerve.flattening_ratio, codes.NO_UNITS, reading=reading("flattening_ratio"))
            )
    echo = nerve.echogenicity
    measurements.append(measurement_item(codes.ECHOGENICITY, echo.mean, codes.NO_UNITS, codes.MEAN, reading("echogenicity_mean")))
    measurements.append(
        measurement_item(codes.ECHOGENICITY, echo.sd, codes.NO_UNITS, codes.STANDARD_DEVIATION, reading("echogenicity_sd"))
    )
    doppler = getattr(frame, "doppler", None)
    vascularity = doppler.nerve(index - 1) if doppler is not None else None
    doppler_notes: list[hd.sr.TextContentItem] = []
    if vascularity is not None:
        measurements.extend(_vascularity_measurements(vascularity, nerve=True))
        doppler_notes = _vascularity_notes(vascularity)
        if vascularity.measured:
            algorithm = _with_vascularity_parameters(algorithm)
    measurements.append(confidence_item(nerve.confidence))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking_identifier(source, frame, "nerve contour" if index == 1 else f"nerve contour {index}"),
        referenced_region=region,
        finding_type=codes.NERVE,
        finding_sites=[finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))],
        algorithm_id=algorithm_template(algorithm),
        measurements=measurements,
    )
    references = reference_notes(readings, source, frame, structure, ("cross_sectional_area",)) if mm_reported else []
    return with_texts(group, frame_notes(frame, mm_reported=mm_reported) + doppler_notes + references)


def _vascularity_measurements(value: Vascularity, *, nerve: bool) -> list[hd.sr.Measurement]:
    """Vascularity index (%), and for a nerve the vessel count and grade (1); none when absent."""
    if not value.measured:
        return []
    assert value.vascularity_index is not None
    out = [measurement_item(codes.VASCULARITY_INDEX, value.vascularity_index, codes.PERCENT)]
    if nerve and value.vessel_count is not None and value.vascularity_grade is not None:
        out.append(measurement_item(codes.VESSEL_COUNT, value.vessel_count, codes.NO_UNITS))
        out.append(measurement_item(codes.VASCULARITY_GRADE, value.vascularity_grade, codes.NO_UNITS))
    return out


def _vascularity_notes(value: Vascularity) -> list[hd.sr.TextContentItem]:
    """The "Colour flow" TEXT: the acquisition next to measured values, or why they are absent."""
    if value.measured:
        text = f"colour flow data: {value.note}" if value.note else ""
    else:
        text = f"vascularity not measured: {value.reason}" if value.reason else ""
    return [text_item(codes.COLOUR_FLOW, text)] if text else []


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
    site = [finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))]
    groups: list[MeasurementGroupTemplate] = []

    def reading(name: str) -> ReferenceReading | None:
        return reading_for(readings, source, frame, frame.site, name)

    caliper = source.image_region(
        to_scoord(np.asarray(muscle.caliper_px, dtype=np.float64), closed=False), frame.frame_number
    )
    thickness: list[hd.sr.Measurement] = []
    if muscle.thickness_mm is not None:
        thickness.append(measurement_item(codes.THICKNESS, muscle.thickness_mm, codes.MM, reading=reading("thickness")))
    mm_reported = bool(thickness)
    if muscle.thickness_mean_central_half_mm is not None:
        thickness.append(_mean_central_half(muscle.thickness_mean_central_half_mm, reading("thickness_mean_central_half")))
    if thickness:
        thickness.append(confidence_item(muscle.confidence))
    thickness_group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking_identifier(source, frame, "thickness caliper"),
        referenced_region=caliper,
        finding_type=codes.SKELETAL_MUSCLE,
        finding_sites=site,
        algorithm_id=algorithm_template(algorithm),
        measurements=thickness or None,
    )
    thickness_notes = frame_notes(frame, mm_reported=mm_reported)
    if thickness:
        thickness_notes += reference_notes(readings, source, frame, frame.site, ("thickness",))
    groups.append(with_texts(thickness_group, thickness_notes))
    subcutaneous = _subcutaneous_group(frame, muscle, source, algorithm, reading("subcutaneous_thickness"))
    if subcutaneous is not None:
        groups.append(subcutaneous)

    echo = muscle.echogenicity
    if echo is not None:
        echo_measurements = [
            measurement_item(codes.ECHOGENICITY, echo.mean, codes.NO_UNITS, codes.MEAN, reading("echogenicity_mean")),
            measurement_item(codes.ECHOGENICITY, echo.sd, codes.NO_UNITS, codes.STANDARD_DEVIATION, reading("echogenicity_sd")),
            measurement_item(codes.ECHOGENICITY, echo.median, codes.NO_UNITS, codes.MEDIAN, reading("echogenicity_median")),
        ]
        confidence = confidence_item(muscle.confidence)
        notes = [text_item(codes.CALIBRATION_NOTE, frame.reason)] if frame.reason else []
        notes += reference_notes(readings, source, frame, frame.site, ("echogenicity_mean",))
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
                tracking_identifier=tracking_identifier(source, frame, "echogenicity ROI"),
                referenced_region=source.image_region(to_scoord(roi, closed=True), frame.frame_number),
                finding_type=codes.SKELETAL_MUSCLE,
                finding_sites=site,
                algorithm_id=algorithm_template(algorithm),
                measurements=echo_measurements,
            )
        else:  # no outline to draw: keep the values, referenced to the image
            echo_group = hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=tracking_identifier(source, frame, "echogenicity"),
                finding_type=codes.SKELETAL_MUSCLE,
                finding_sites=site,
                algorithm_id=algorithm_template(algorithm),
                measurements=echo_measurements,
                source_images=[source.for_group(frame.frame_number)],
            )
        groups.append(with_texts(echo_group, notes))
    return groups


def _mean_central_half(value: float, reading: ReferenceReading | None) -> hd.sr.Measurement:
    """Thickness (LN 59089-3) with Derivation Mean and Measurement Method "central half of the width"."""
    return measurement_item(codes.THICKNESS, value, codes.MM, codes.MEAN, reading, method=codes.CENTRAL_HALF)


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
        measurement_item(codes.THICKNESS, muscle.subcutaneous_thickness_mm, codes.MM, reading=reading),
        confidence_item(muscle.confidence),
    ]
    site = [finding_site(codes.SUBCUTANEOUS_TISSUE, frame.laterality, getattr(frame, "level", ""))]
    what = "subcutaneous caliper"
    points = subcutaneous_caliper(muscle)
    group: MeasurementGroupTemplate
    if points is not None:
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking_identifier(source, frame, what),
            referenced_region=source.image_region(to_scoord(points, closed=False), frame.frame_number),
            finding_type=codes.SUBCUTANEOUS_TISSUE,
            finding_sites=site,
            algorithm_id=algorithm_template(algorithm),
            measurements=measurements,
        )
    else:  # no edge point at the caliper's column: keep the value, referenced to the image
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking_identifier(source, frame, what),
            finding_type=codes.SUBCUTANEOUS_TISSUE,
            finding_sites=site,
            algorithm_id=algorithm_template(algorithm),
            measurements=measurements,
            source_images=[source.for_group(frame.frame_number)],
        )
    notes = [text_item(codes.CALIBRATION_NOTE, frame.reason)] if frame.reason else []
    return with_texts(group, notes)


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
        sites = [finding_site(frame.site, frame.laterality, getattr(frame, "level", ""))]
        if source is not None:
            tracking = tracking_identifier(source, frame, "not measured")
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
    return with_texts(group, [text_item(codes.NOT_MEASURED_REASON, reason)])


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
            nerve_group(frame, n, source, frame_algorithm(frame, nerve_algo), index=k, readings=readings)
            for k, n in enumerate(nerves, start=1)
        ]
    if frame.muscle is not None:
        return muscle_groups(frame, frame.muscle, source, frame_algorithm(frame, muscle_algo), readings=readings)
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
        laterality = result.frames[0].laterality if result.frames else Laterality.UNKNOWN
        groups.append(fasciculation_group(fasciculation, source, site=result.protocol.site, laterality=laterality))
    if result.failed:
        label = source.label if source is not None else (result.source_file or result.sop_instance_uid)
        groups.append(not_measured_group(source, result.error, label=label))
    return groups
