"""Run the measurement protocol on every frame of an ultrasound image.

:func:`analyze_file` / :func:`analyze_image` tie the library together:
loading, protocol selection, segmentation and measurement. Results travel
as frozen dataclasses; :func:`measurement_rows` flattens them into the rows
of CONTRACT.md section 2 for tables and CSV.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import __version__
from pipeline.algorithm import AlgorithmIdentity, muscle_identity, segmenter_identity
from pipeline.annotations import burned_in_annotation_mask
from pipeline.calibration import CalibrationSource, FrameCalibration
from pipeline.cine.clip import start_clip_analysis
from pipeline.cine.detector import FasciculationDetector
from pipeline.cine.result import FasciculationResult
from pipeline.errors import INTERNAL_ERROR, CalibrationError, MskusInputError, internal_error
from pipeline.inpaint import inpaint_missing
from pipeline.loading import UltrasoundFrame, UltrasoundImage, load_ultrasound
from pipeline.measurements.echogenicity import colour_pixel_mask
from pipeline.measurements.muscle import MuscleMeasurement, measure_muscle
from pipeline.measurements.nerve import NerveMeasurement, contour_mask, measure_nerve
from pipeline.measurements.vascularity import (
    MIN_ROI_COVERAGE,
    NO_COLOUR_FLOW,
    ColourFlowMap,
    DopplerHeader,
    FrameDoppler,
    Vascularity,
    detect_colour_flow,
    measure_vascularity,
)
from pipeline.protocols import Laterality, Protocol, ProtocolChoice, ProtocolRules, laterality_of
from pipeline.segmentation import NerveSegmenter

if TYPE_CHECKING:
    from pipeline.settings import Analyzer
from pipeline.segmentation.muscle_bands import BoundaryFinder

__all__ = [
    "FrameResult",
    "ImageResult",
    "MeasurementRow",
    "RowStatus",
    "analyze_file",
    "analyze_frame",
    "analyze_image",
    "measurement_rows",
    "muscle_identity",
]

logger = logging.getLogger(__name__)


class RowStatus(str, enum.Enum):
    MEASURED = "measured"
    REFUSED = "refused"


@dataclass(frozen=True)
class FrameResult:
    """What was measured on one frame, or why nothing was.

    Exactly one of ``nerve`` / ``muscle`` is set when the frame was measured;
    ``reason`` says why a measurement (or part of it) was not made. A
    segmenter that finds several nerves (the learned one reports each
    connected nerve region) gives the best as ``nerve`` and the others, best
    first, as ``extra_nerves``; each is its own set of rows and its own SR
    measurement group. ``doppler`` holds the frame's colour flow and the
    vascularity of each nerve (``doppler.nerves``, in ``nerves`` order) or of
    the muscle ROI (``doppler.muscle``); on a greyscale frame it says
    "no colour flow data" and holds no value.
    """

    frame_index: int
    protocol: Protocol
    site: str
    laterality: Laterality
    calibration: FrameCalibration = field(repr=False)
    nerve: NerveMeasurement | None = None
    muscle: MuscleMeasurement | None = None
    reason: str = ""
    extra_nerves: tuple[NerveMeasurement, ...] = ()
    doppler: FrameDoppler | None = None
    #: Where along the structure (``"wrist"``), from the protocol's level rules; "" unknown.
    level: str = ""
    #: What measured the frame (the SR's Algorithm Identification); ``None`` only for hand-built results.
    algorithm: AlgorithmIdentity | None = None

    @property
    def nerves(self) -> tuple[NerveMeasurement, ...]:
        """All nerves measured on the frame, best first."""
        return ((self.nerve,) if self.nerve is not None else ()) + tuple(self.extra_nerves)

    @property
    def frame_number(self) -> int:
        return self.frame_index + 1

    @property
    def measured(self) -> bool:
        return self.nerve is not None or self.muscle is not None


@dataclass(frozen=True)
class ImageResult:
    """All frames of one source image, or the reason the image was refused."""

    source_file: str | None
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    number_of_frames: int = 0
    protocol: ProtocolChoice | None = None
    frames: tuple[FrameResult, ...] = ()
    error: str = ""
    error_code: str = ""
    #: Fasciculation values of a muscle cine (:func:`pipeline.cine.clip.analyze_clip`); None for other images.
    fasciculation: FasciculationResult | None = None

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass(frozen=True)
class MeasurementRow:
    """One row of the measurements table (CONTRACT.md section 2)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    frame: int
    source_file: str
    protocol: str
    structure: str
    laterality: str
    measurement: str
    value: float | None
    unit: str
    status: RowStatus
    reason: str = ""
    confidence: float | None = None
    mm_per_px: float | None = None
    calibration: str = ""
    software_version: str = __version__
    #: Where along the structure (``"wrist"``); "" when the rules named no level.
    level: str = ""


def analyze_frame(
    frame: UltrasoundFrame,
    choice: ProtocolChoice,
    laterality: Laterality,
    *,
    segmenter: NerveSegmenter,
    boundary_finder: BoundaryFinder | None = None,
    algorithm: AlgorithmIdentity | None = None,
) -> FrameResult:
    """Measure one frame with the chosen protocol.

    ``boundary_finder`` proposes the muscle's boundary bands (the learned
    aponeurosis finder); ``None``: the classical band search. ``algorithm``
    is the identity stamped on the result (default: that of ``segmenter``
    for a nerve, :func:`muscle_identity` for a muscle); pass it to save
    recomputing it per frame.
    """
    if algorithm is None:
        algorithm = segmenter_identity(segmenter) if choice.protocol is Protocol.NERVE else muscle_identity()
    cal = frame.calibration
    # Never measured: colour Doppler pixels and burned-in text, calipers and markers.
    annotations = burned_in_annotation_mask(frame.gray, cal.tissue_box)
    exclude = annotations.copy()
    colour = colour_pixel_mask(frame.color)
    if colour is not None:
        exclude |= colour
    # Colour flow (colour / power Doppler): measured as vascularity, never as tissue.
    header = getattr(frame, "doppler", None) or DopplerHeader()
    try:
        flow = detect_colour_flow(frame.color, cal, header, gray=frame.gray)
    except Exception as exc:  # noqa: BLE001 - a colour-flow fault costs the Doppler values, not the frame
        logger.exception("frame %d: colour flow detection failed", frame.index)
        flow = ColourFlowMap(None, f"colour flow not analysed: {type(exc).__name__}: {exc}", (), header)
    if flow.mask is not None:
        exclude |= flow.mask
    doppler = FrameDoppler(
        header=header, available=flow.available, reason=flow.reason, flow_pixel_count=flow.flow_pixel_count,
        boxes=flow.boxes,
    )
    base: dict[str, Any] = dict(
        frame_index=frame.index, protocol=choice.protocol, site=choice.site, laterality=laterality, calibration=cal,
        doppler=doppler, level=getattr(choice, "level", ""), algorithm=algorithm,
    )
    # A Pixel Spacing fallback or a missing calibration is said next to every value.
    if not cal.is_calibrated:
        uncalibrated_note = f"{cal.note}: mm values not reported"
    else:
        uncalibrated_note = cal.note
    scale = cal.mm_per_px if cal.is_calibrated else None
    if choice.protocol is Protocol.NERVE:
        # Colour pixels are missing B-mode data, not bright tissue: the segmenter sees them in-painted
        # from the grey around them (annotations stay excluded).
        seg_gray, seg_exclude = frame.gray, exclude
        if colour is not None:
            missing = colour if flow.mask is None else colour | flow.mask
            seg_gray = inpaint_missing(frame.gray, missing, cal.tissue_box)
            if seg_gray is not frame.gray:
                seg_exclude = annotations
                base["doppler"] = doppler = dataclasses.replace(doppler, inpainted=True)
        candidates = segmenter.segment(seg_gray, cal.tissue_box, mm_per_px=scale, exclude=seg_exclude)
        if not candidates:
            return FrameResult(**base, reason="no nerve found: no structure with a bright rim around a non-anechoic interior")
        # A segmenter with a calibrated confidence names a floor; below it a nerve is refused, not reported.
        floor = float(getattr(segmenter, "min_confidence", 0.0))
        found = [seg for seg in candidates if seg.confidence >= floor]
        if not found:
            best = max(seg.confidence for seg in candidates)
            return FrameResult(
                **base,
                reason=f"no nerve found with confidence: best candidate {best:.2f}, below the floor {floor:.2f}",
            )
        nerves: list[NerveMeasurement] = []
        refused: list[str] = []
        for seg in found:
            try:
                nerves.append(measure_nerve(frame.gray, seg.contour_px, cal, confidence=seg.confidence, exclude=exclude))
            except CalibrationError as exc:
                refused.append(str(exc))
        if not nerves:
            return FrameResult(**base, reason=f"nerve measurement refused: {refused[0]}")
        if refused:
            logger.info("frame %d: %d of %d nerves refused: %s", frame.index, len(refused), len(found), refused[0])
        values = tuple(_nerve_vascularity(flow, n, frame.gray.shape) for n in nerves)
        base["doppler"] = dataclasses.replace(doppler, nerves=values)
        return FrameResult(**base, nerve=nerves[0], extra_nerves=tuple(nerves[1:]), reason=uncalibrated_note)
    try:
        muscle = measure_muscle(
            frame.gray,
            cal.tissue_box,
            mm_per_px_x=cal.mm_per_px_x,
            mm_per_px_y=cal.mm_per_px_y,
            exclude=exclude,
            boundary_finder=boundary_finder,
            site=choice.thickness_site,
            layer=choice.muscle_layer,
        )
        if cal.is_calibrated:
            cal.check_measurement(muscle.caliper_px)
    except MskusInputError as exc:
        return FrameResult(**base, reason=f"muscle measurement refused: {exc}")
    base["doppler"] = dataclasses.replace(doppler, muscle=_muscle_vascularity(flow, muscle, frame.gray.shape))
    return FrameResult(**base, muscle=muscle, reason=uncalibrated_note)


def _nerve_vascularity(flow: ColourFlowMap, nerve: NerveMeasurement, shape: tuple[int, int]) -> Vascularity:
    """Vascularity index, vessel count and grade inside a nerve contour (absent without colour flow)."""
    if flow.mask is None:
        return Vascularity.absent(flow.reason or NO_COLOUR_FLOW)
    return measure_vascularity(flow, contour_mask(nerve.contour_px, shape))


def _muscle_vascularity(flow: ColourFlowMap, muscle: MuscleMeasurement, shape: tuple[int, int]) -> Vascularity:
    """Vascularity index of the muscle echogenicity ROI (absent without colour flow)."""
    if flow.mask is None:
        return Vascularity.absent(flow.reason or NO_COLOUR_FLOW)
    if muscle.roi_mask.shape != tuple(shape) or not muscle.roi_mask.any():
        return Vascularity.absent("no muscle ROI to measure")
    return measure_vascularity(
        flow, muscle.roi_mask, count_vessels=False, min_coverage=MIN_ROI_COVERAGE, whole_roi=False, what="muscle ROI"
    )


def analyze_image(
    image: UltrasoundImage,
    *,
    rules: ProtocolRules,
    segmenter: NerveSegmenter,
    boundary_finder: BoundaryFinder,
    protocol: Protocol | str | None = None,
    frames: Iterable[int] | None = None,
    on_frame: Callable[[UltrasoundFrame, FrameResult], None] | None = None,
) -> ImageResult:
    """Choose the protocol and measure every frame (or the given 0-based frames).

    The rules, segmenter and boundary finder are given, never loaded here:
    :meth:`pipeline.settings.Analyzer.analyze` passes the run's. Any failure
    of this one image becomes its refusal (``error`` set), never an exception.
    ``on_frame(frame, result)`` is called with each decoded frame and its
    result (for overlays), so no frame has to be decoded twice.
    """
    common: dict[str, Any] = dict(
        source_file=image.source,
        sop_instance_uid=image.sop_instance_uid,
        sop_class_uid=image.sop_class_uid,
        study_instance_uid=image.study_instance_uid,
        series_instance_uid=image.series_instance_uid,
        number_of_frames=image.number_of_frames,
    )
    try:
        choice = rules.choose(image.dataset, override=protocol)
        laterality = laterality_of(image.dataset)
    except MskusInputError as exc:
        return ImageResult(**common, error=str(exc), error_code=exc.code)
    except Exception as exc:  # noqa: BLE001 - one image's fault must not cost the others
        return ImageResult(**common, error=internal_error(image.source, "choosing the protocol", exc), error_code=INTERNAL_ERROR)
    results = []
    algorithm = segmenter_identity(segmenter) if choice.protocol is Protocol.NERVE else muscle_identity()
    # A muscle cine is also a clip: its frames go through the fasciculation detector as they are decoded.
    clip: Any = None
    try:
        for frame in image.iter_frames(frames):
            frame_result = analyze_frame(
                frame, choice, laterality, segmenter=segmenter, boundary_finder=boundary_finder, algorithm=algorithm
            )
            results.append(frame_result)
            if on_frame is not None:
                on_frame(frame, frame_result)
            if frames is None:
                if not results[1:]:
                    clip = start_clip_analysis(image, choice, frame.calibration)
                if isinstance(clip, FasciculationDetector):
                    clip.push(frame.gray)
    except MskusInputError as exc:
        return ImageResult(**common, protocol=choice, frames=tuple(results), error=str(exc), error_code=exc.code)
    except Exception as exc:  # noqa: BLE001 - one image's fault must not cost the others
        reason = internal_error(image.source, f"analysing frame {len(results) + 1}", exc)
        return ImageResult(**common, protocol=choice, frames=tuple(results), error=reason, error_code=INTERNAL_ERROR)
    try:
        fasciculation = clip.finish() if isinstance(clip, FasciculationDetector) else clip
    except Exception as exc:  # noqa: BLE001 - a detector fault costs the clip values, not the frames
        logger.warning("%s: fasciculation not analysed: %s: %s", image.source, type(exc).__name__, exc)
        fasciculation = FasciculationResult.refused(
            internal_error(image.source, "detecting fasciculations", exc), number_of_frames=image.number_of_frames
        )
    return ImageResult(**common, protocol=choice, frames=tuple(results), fasciculation=fasciculation)


def analyze_file(path: str | os.PathLike[str], analyzer: Analyzer) -> ImageResult:
    """Load and analyse one file with ``analyzer``; refusals become an :class:`ImageResult` with ``error`` set."""
    try:
        image = load_ultrasound(path)
    except MskusInputError as exc:
        return ImageResult(source_file=str(path), error=str(exc), error_code=exc.code)
    except OSError as exc:
        return ImageResult(source_file=str(path), error=f"cannot read file: {exc.strerror or exc}", error_code="unreadable")
    except Exception as exc:  # noqa: BLE001 - a reader bug refuses this file only
        return ImageResult(source_file=str(path), error=internal_error(path, "loading", exc), error_code=INTERNAL_ERROR)
    return analyzer.analyze(image)


def _rows_for_frame(result: ImageResult, frame: FrameResult) -> Iterator[MeasurementRow]:
    cal = frame.calibration
    common: dict[str, Any] = dict(
        study_uid=result.study_instance_uid,
        series_uid=result.series_instance_uid,
        sop_instance_uid=result.sop_instance_uid,
        frame=frame.frame_number,
        source_file=result.source_file or "",
        protocol=frame.protocol.value,
        structure=frame.site,
        laterality=frame.laterality.value,
        level=frame.level,
        mm_per_px=cal.mm_per_px if cal.is_calibrated else None,
        calibration=cal.source.value,
    )
    if not frame.measured:
        yield MeasurementRow(**common, measurement="", value=None, unit="", status=RowStatus.REFUSED, reason=frame.reason)
        return
    if frame.nerve is not None:
        # One set of rows per nerve; the second and later are named "<site> (nerve k)".
        for k, n in enumerate(frame.nerves, start=1):
            named = common if k == 1 else {**common, "structure": f"{frame.site} (nerve {k})"}
            yield from _value_rows(frame, named, _nerve_values(n), n.confidence)
            if frame.doppler is not None:
                yield from _doppler_rows(named, frame.doppler.nerve(k - 1), n.confidence, nerve=True)
        return
    m = frame.muscle
    assert m is not None
    assert m.echogenicity is not None  # measure_muscle always sets it
    values = [
        ("thickness", m.thickness_mm, "mm"),
        ("thickness_mean_central_half", m.thickness_mean_central_half_mm, "mm"),
        ("subcutaneous_thickness", m.subcutaneous_thickness_mm, "mm"),
        ("echogenicity_mean", m.echogenicity.mean, "1"),
        ("echogenicity_sd", m.echogenicity.sd, "1"),
        ("echogenicity_median", m.echogenicity.median, "1"),
    ]
    yield from _value_rows(frame, common, values, m.confidence)
    if frame.doppler is not None and frame.doppler.muscle is not None:
        yield from _doppler_rows(common, frame.doppler.muscle, m.confidence, nerve=False)


def _doppler_rows(common: dict, value: Vascularity, confidence: float, *, nerve: bool) -> Iterator[MeasurementRow]:
    """Vascularity rows (CONTRACT.md section 2 names and units); absent values are refused rows with the reason.

    A nerve gets ``vascularity_index`` (%), ``vessel_count`` and ``vascularity_grade`` (1);
    a muscle ROI the index only.
    """
    values: list[tuple[str, float | None, str]] = [("vascularity_index", value.vascularity_index, "%")]
    if nerve:
        values += [("vessel_count", value.vessel_count, "1"), ("vascularity_grade", value.vascularity_grade, "1")]
    for name, number, unit in values:
        if number is None:
            yield MeasurementRow(
                **common, measurement=name, value=None, unit=unit, status=RowStatus.REFUSED,
                reason=value.reason or NO_COLOUR_FLOW, confidence=confidence,
            )
        else:
            yield MeasurementRow(
                **common, measurement=name, value=float(number), unit=unit, status=RowStatus.MEASURED,
                reason=value.note, confidence=confidence,
            )


def _nerve_values(n: NerveMeasurement) -> list[tuple[str, float | None, str]]:
    return [
        ("cross_sectional_area", n.cross_sectional_area_mm2, "mm2"),
        ("perimeter", n.perimeter_mm, "mm"),
        ("major_axis", n.major_axis_mm, "mm"),
        ("minor_axis", n.minor_axis_mm, "mm"),
        ("flattening_ratio", n.flattening_ratio if n.cross_sectional_area_mm2 is not None else None, "1"),
        ("echogenicity_mean", n.echogenicity.mean, "1"),
        ("echogenicity_sd", n.echogenicity.sd, "1"),
    ]


def _value_rows(
    frame: FrameResult, common: dict, values: list[tuple[str, float | None, str]], confidence: float
) -> Iterator[MeasurementRow]:
    cal = frame.calibration
    for name, value, unit in values:
        if value is None:
            if name == "subcutaneous_thickness" and cal.is_calibrated:
                continue  # optional measurement; absent when not determinable
            reason = frame.reason or "not determinable"
            yield MeasurementRow(
                **common, measurement=name, value=None, unit=unit, status=RowStatus.REFUSED, reason=reason, confidence=confidence
            )
        else:
            note = frame.reason if cal.source is CalibrationSource.PIXEL_SPACING else ""
            yield MeasurementRow(
                **common,
                measurement=name,
                value=float(value),
                unit=unit,
                status=RowStatus.MEASURED,
                reason=note,
                confidence=confidence,
            )


def measurement_rows(result: ImageResult) -> Iterator[MeasurementRow]:
    """Flatten an image result into measurement rows (refused frames give one refused row).

    A muscle clip's fasciculation values follow its frames' rows (frame cell empty).
    """
    for frame in result.frames:
        yield from _rows_for_frame(result, frame)
    if result.fasciculation is not None and result.protocol is not None:
        from pipeline.cine.rows import fasciculation_rows  # it builds on this module's row type

        first = result.frames[0] if result.frames else None
        yield from fasciculation_rows(
            result.fasciculation,
            study_uid=result.study_instance_uid,
            series_uid=result.series_instance_uid,
            sop_instance_uid=result.sop_instance_uid,
            source_file=result.source_file or "",
            structure=result.protocol.site,
            laterality=first.laterality.value if first is not None else Laterality.UNKNOWN.value,
            calibration=first.calibration.source.value if first is not None else "",
        )
