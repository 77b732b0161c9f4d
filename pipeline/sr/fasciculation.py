"""The fasciculation values of a muscle cine in the SR (CONTRACT.md section 5: in the muscle's group).

One TID 1501 *Measurements and Qualitative Evaluations* group per analysed
clip: Finding "Skeletal muscle", Finding Site with laterality, Algorithm
Identification (the detector's settings), the clip as source image (all
frames) and, as NUM items (local codes, :mod:`pipeline.sr.codes`; no
standard concept exists for them):

- "Fasciculation count" (UCUM ``1``), "Fasciculation rate" (``/min``),
  "Analysed duration" and "Excluded duration" (``s``);
- one "Fasciculation time" (``s``, from the first frame) per event, whose
  TID 300 children locate it: INFERRED FROM a TCOORD POINT (Referenced Time
  Offsets = the time, PS3.3 C.18.7) SELECTED FROM the clip's frame of peak
  displacement (TID 321 Waveform or Temporal Coordinates), INFERRED FROM an
  SCOORD POINT on that frame (TID 320), and HAS PROPERTIES NUM items for
  the event's duration (s), peak local speed (mm/s) and confidence (1).
  Comprehensive (3D) SR allows these relationships (PS3.3 A.35.3-2,
  A.35.13-2); highdicom has no TID 300 builder for TCOORD, so the items are
  appended to highdicom's Measurement by hand.

A refused clip (no frame timing, uncalibrated) gets the same group with no
NUM and a TEXT "Reason no measurement was made".
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code

from pipeline import __version__
from pipeline.algorithm import AlgorithmIdentity
from pipeline.cine.result import FasciculationEvent, FasciculationResult
from pipeline.protocols import Laterality
from pipeline.sr import codes
from pipeline.sr.algorithm_items import algorithm_template
from pipeline.sr.items import SCOORD_OFFSET, finding_site, side_label, text_item, tracking_uid, with_texts
from pipeline.sr.source_image import SourceImage

__all__ = ["fasciculation_algorithm", "fasciculation_group"]

_REL = hd.sr.RelationshipTypeValues


def fasciculation_algorithm(result: FasciculationResult) -> AlgorithmIdentity:
    """Algorithm Identification of the detector, with its settings and the clip's timing source."""
    params = [f"mskus={__version__}", *result.parameters]
    if result.timing_source:
        params.append(f"frame_timing={result.timing_source}")
    return AlgorithmIdentity(name="mskus-fasciculation", version=__version__, parameters=tuple(params))


def _num(name: Code, value: float, unit: Code, relationship: hd.sr.RelationshipTypeValues) -> hd.sr.NumContentItem:
    if not np.isfinite(value):
        raise ValueError(f"{name.meaning}: value {value} is not finite")
    return hd.sr.NumContentItem(name=name, value=float(value), unit=unit, relationship_type=relationship)


def _selected_from(source: SourceImage, frame_number: int) -> hd.sr.ImageContentItem:
    return hd.sr.ImageContentItem(
        name=codes.SOURCE,
        referenced_sop_class_uid=source.sop_class_uid,
        referenced_sop_instance_uid=source.sop_instance_uid,
        referenced_frame_numbers=source.frame_numbers(frame_number),
        relationship_type=_REL.SELECTED_FROM,
    )


def _event_measurement(event: FasciculationEvent, source: SourceImage) -> hd.sr.Measurement:
    """The event's time (s) with its temporal and spatial coordinates and properties."""
    measurement = hd.sr.Measurement(name=codes.FASCICULATION_TIME, value=float(event.time_s), unit=codes.SECOND)
    when = hd.sr.TcoordContentItem(
        name=codes.TEMPORAL_EXTENT,
        temporal_range_type=hd.sr.TemporalRangeTypeValues.POINT,
        referenced_time_offsets=[float(event.time_s)],
        relationship_type=_REL.INFERRED_FROM,
    )
    when.ContentSequence = hd.sr.ContentSequence([_selected_from(source, event.frame_number)])
    where = hd.sr.ScoordContentItem(
        name=codes.IMAGE_REGION,
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[event.x_px + SCOORD_OFFSET, event.y_px + SCOORD_OFFSET]], dtype=np.float32),
        relationship_type=_REL.INFERRED_FROM,
    )
    where.ContentSequence = hd.sr.ContentSequence([_selected_from(source, event.frame_number)])
    properties = [
        _num(codes.FASCICULATION_DURATION, event.duration_s, codes.SECOND, _REL.HAS_PROPERTIES),
        _num(codes.FASCICULATION_PEAK_SPEED, event.peak_speed_mm_s, codes.MM_PER_SECOND, _REL.HAS_PROPERTIES),
        _num(codes.FASCICULATION_CONFIDENCE, event.confidence, codes.NO_UNITS, _REL.HAS_PROPERTIES),
    ]
    item = measurement[0]
    if "ContentSequence" not in item:
        item.ContentSequence = hd.sr.ContentSequence()
    item.ContentSequence.extend([when, where, *properties])
    return measurement


def fasciculation_group(
    result: FasciculationResult,
    source: SourceImage,
    *,
    site: str,
    laterality: Laterality,
    algorithm: AlgorithmIdentity | None = None,
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """TID 1501 group of one clip's fasciculation values (or the reason there are none).

    Parameters
    ----------
    result : FasciculationResult
        From :func:`pipeline.cine.clip.analyze_clip`.
    source : SourceImage
        The clip.
    site : str
        The protocol's muscle (Finding Site).
    laterality : Laterality
        Side of the muscle.
    algorithm : AlgorithmIdentity, optional
        Default :func:`fasciculation_algorithm`.
    """
    side = side_label(laterality)
    tracking = hd.sr.TrackingIdentifier(
        uid=tracking_uid(source.sop_instance_uid, 0, "fasciculation"),
        identifier=f"fasciculation: {f'{side} {site}'.strip()} ({source.label}, cine)",
    )
    measurements: list[hd.sr.Measurement] = []
    if result.measured:
        assert result.count is not None
        measurements.append(hd.sr.Measurement(name=codes.FASCICULATION_COUNT, value=float(result.count), unit=codes.NO_UNITS))
        if result.rate_per_min is not None:
            measurements.append(
                hd.sr.Measurement(name=codes.FASCICULATION_RATE, value=float(result.rate_per_min), unit=codes.PER_MINUTE)
            )
        measurements.append(hd.sr.Measurement(name=codes.ANALYSED_DURATION, value=float(result.analysed_seconds), unit=codes.SECOND))
        measurements.append(hd.sr.Measurement(name=codes.EXCLUDED_DURATION, value=float(result.excluded_seconds), unit=codes.SECOND))
        measurements.extend(_event_measurement(event, source) for event in result.events)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=codes.SKELETAL_MUSCLE,
        finding_sites=[finding_site(site, laterality)],
        algorithm_id=algorithm_template(algorithm or fasciculation_algorithm(result)),
        measurements=measurements or None,
        source_images=[source.for_group(None)],
    )
    texts: list[hd.sr.TextContentItem] = []
    if not result.measured:
        texts.append(text_item(codes.NOT_MEASURED_REASON, result.refusal_reason or "not analysed"))
    elif result.exclusions:
        excluded = ", ".join(f"{reason} {count} frame(s)" for reason, count in result.exclusions)
        texts.append(text_item(codes.FASCICULATION_EXCLUSIONS, f"excluded: {excluded}"))
    return with_texts(group, texts)
