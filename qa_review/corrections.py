"""A finding corrected in the browser, measured again by the pipeline's own code.

The reviewer redraws a nerve contour (a polygon), moves the two ends of a
thickness caliper or moves the echogenicity ROI. The new region arrives as
DICOM SCOORD points (the top-left corner of the image at (0, 0)); it is
measured on the source frame with that frame's calibration
(:func:`pipeline.loading.load_ultrasound`, :class:`pipeline.calibration.FrameCalibration`)
by the same functions the analysis uses:

- contour: :func:`pipeline.measurements.nerve.measure_nerve` (area, perimeter,
  moment axes in mm; echogenicity with colour pixels and burned-in annotations
  left out, as in :func:`pipeline.analysis.analyze_frame`);
- caliper: :meth:`FrameCalibration.distance_mm` (the physical length, checked
  to lie in one calibrated region, as ``thickness_mm``);
- ROI: :func:`pipeline.measurements.echogenicity.echogenicity_stats` over the
  pixels whose centres lie inside the polygon and inside the tissue region.

On a colour-flow frame the vascularity values of the finding are measured
again too (:func:`pipeline.measurements.vascularity.measure_vascularity`).
A value the new region cannot give is dropped, not kept: the muscle's mean
thickness over the central half of the width (it follows the automated fascia
edges across the width, not the two caliper ends) and the group's confidence
(the algorithm's, in what it drew); :class:`qa_review.model.Correction` lists
them in ``dropped``.
A region the calibration cannot support (spanning two regions, outside the
image) is refused with the calibration's reason: nothing is invented. A
redrawn contour must lie inside the frame's tissue region (the calibration's
``tissue_box``, where the analysis looks for nerves): one reaching into the
scanner's text, scale or margins is refused with a sentence naming the region.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.annotations import burned_in_annotation_mask
from pipeline.errors import MskusInputError
from pipeline.loading import UltrasoundFrame, load_ultrasound
from pipeline.measurements.echogenicity import colour_pixel_mask, echogenicity_stats
from pipeline.measurements.nerve import contour_mask, measure_nerve
from pipeline.measurements.vascularity import (
    MIN_ROI_COVERAGE,
    NO_COLOUR_FLOW,
    Vascularity,
    detect_colour_flow,
    measure_vascularity,
)
from pipeline.sr.items import SCOORD_OFFSET
from qa_review.model import Correction, Finding

__all__ = ["MAX_POINTS", "CorrectionError", "FrameMeasurer", "parse_points", "recompute"]

logger = logging.getLogger(__name__)

#: The most points a redrawn contour may have.
MAX_POINTS = 2000
_HOW = {"contour": "contour redrawn", "caliper": "caliper ends moved", "roi": "ROI moved"}
#: Values of a caliper group that two caliper ends cannot give (they follow the automated edges).
NOT_FROM_CALIPER = frozenset({"Thickness (Mean, central half of width)"})
_UNITS = {
    "Area": "mm2", "Perimeter": "mm", "Major Axis": "mm", "Minor Axis": "mm", "Thickness": "mm",
    "Flattening ratio": "1",
    "Vascularity index": "%", "Intraneural vessel count": "1", "Vascularity grade": "1",
}


class CorrectionError(ValueError):
    """The correction cannot be measured (the message says why, for the reviewer)."""


def parse_points(text: str, kind: str) -> tuple[tuple[float, float], ...]:
    """Points from the form's JSON (``[[x, y], ...]``, SCOORD), checked for ``kind``.

    Raises
    ------
    CorrectionError
        Not a JSON list of finite number pairs, too few or too many points.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise CorrectionError("the corrected region is not readable: draw it again") from None
    if not isinstance(data, list) or len(data) > MAX_POINTS:
        raise CorrectionError(f"the corrected region must be a list of at most {MAX_POINTS} points")
    points: list[tuple[float, float]] = []
    for point in data:
        if (
            not isinstance(point, list) or len(point) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            or not all(np.isfinite(point))
        ):
            raise CorrectionError("each point of the corrected region must be two finite numbers [column, row]")
        points.append((float(point[0]), float(point[1])))
    if len(points) > 2 and points[0] == points[-1]:
        points.pop()  # closed: the first point repeated
    need = {"caliper": (2, 2), "contour": (3, MAX_POINTS), "roi": (3, MAX_POINTS)}.get(kind)
    if need is None:
        raise CorrectionError("this finding has no region that can be corrected")
    if not need[0] <= len(points) <= need[1]:
        what = "exactly 2 points" if kind == "caliper" else "at least 3 points"
        raise CorrectionError(f"a corrected {kind} needs {what}, got {len(points)}")
    return tuple(points)


@dataclass(frozen=True)
class _FrameData:
    frame: UltrasoundFrame
    exclude: np.ndarray


class FrameMeasurer:
    """Measures corrected regions on one source frame (loaded once).

    Parameters
    ----------
    image_path : str
        The source image file.
    frame_number : int
        1-based frame.

    Raises
    ------
    CorrectionError
        The image cannot be loaded or has no such frame.
    """

    def __init__(self, image_path: str, frame_number: int) -> None:
        try:
            frame = next(load_ultrasound(image_path).iter_frames([frame_number - 1]))
        except (MskusInputError, OSError, IndexError, StopIteration) as exc:
            raise CorrectionError(f"the source image of this finding cannot be read: {exc}") from None
        exclude = burned_in_annotation_mask(frame.gray, frame.calibration.tissue_box)
        colour = colour_pixel_mask(frame.color)
        if colour is not None:
            exclude = exclude | colour
        self._data = _FrameData(frame, exclude)

    @property
    def frame(self) -> UltrasoundFrame:
        return self._data.frame

    def _inside_image(self, px: np.ndarray) -> None:
        rows, cols = self.frame.gray.shape
        if (px[:, 0] < -0.5).any() or (px[:, 1] < -0.5).any() or (px[:, 0] > cols - 0.5).any() or (
            px[:, 1] > rows - 0.5
        ).any():
            raise CorrectionError("the corrected region extends outside the image")

    def _inside_tissue(self, px: np.ndarray, kind: str) -> None:
        box = self.frame.calibration.tissue_box
        # Pixel centres are integers; a vertex may sit on the outer edge of the box's border pixels.
        inside = (
            (px[:, 0] >= box.x0 - 0.5) & (px[:, 0] <= box.x1 + 0.5)
            & (px[:, 1] >= box.y0 - 0.5) & (px[:, 1] <= box.y1 + 0.5)
        )
        if not inside.all():
            outside = int((~inside).sum())
            raise CorrectionError(
                f"the corrected {kind} leaves the tissue region of the image ({outside} of {len(px)} points outside "
                f"columns {box.x0}-{box.x1}, rows {box.y0}-{box.y1}, SCOORD {box.x0}-{box.x1 + 1}, "
                f"{box.y0}-{box.y1 + 1}): draw it inside the ultrasound image"
            )

    def _vascularity(self, mask: np.ndarray, *, nerve: bool) -> Vascularity:
        frame = self.frame
        flow = detect_colour_flow(frame.color, frame.calibration, frame.doppler, gray=frame.gray)
        if flow.mask is None:
            return Vascularity.absent(flow.reason or NO_COLOUR_FLOW)
        if nerve:
            return measure_vascularity(flow, mask)
        return measure_vascularity(
            flow, mask, count_vessels=False, min_coverage=MIN_ROI_COVERAGE, whole_roi=False, what="muscle ROI"
        )

    def measure(self, kind: str, points: Sequence[tuple[float, float]], wanted: Sequence[str]) -> dict[str, float]:
        """The values named in ``wanted`` for the region ``points`` (SCOORD) of a ``kind`` finding.

        Raises
        ------
        CorrectionError
            The region is outside the image, the calibration refuses it, or
            no pixel is left to measure.
        """
        frame = self.frame
        cal = frame.calibration
        px = np.asarray(points, dtype=np.float64) - SCOORD_OFFSET
        self._inside_image(px)
        if kind == "contour":
            self._inside_tissue(px, kind)
        values: dict[str, float] = {}
        try:
            if kind == "caliper":
                values["Thickness"] = cal.distance_mm(px[0], px[1])
            elif kind == "contour":
                nerve = measure_nerve(frame.gray, px, cal, confidence=0.0, exclude=self._data.exclude)
                mm = {
                    "Area": nerve.cross_sectional_area_mm2, "Perimeter": nerve.perimeter_mm,
                    "Major Axis": nerve.major_axis_mm, "Minor Axis": nerve.minor_axis_mm,
                }
                values.update({k: v for k, v in mm.items() if v is not None})
                if nerve.cross_sectional_area_mm2 is not None and np.isfinite(nerve.flattening_ratio):
                    values["Flattening ratio"] = nerve.flattening_ratio
                values["Echogenicity (Mean)"] = nerve.echogenicity.mean
                values["Echogenicity (Standard Deviation)"] = nerve.echogenicity.sd
            elif kind == "roi":
                box = cal.tissue_box
                mask = contour_mask(px, frame.gray.shape)
                inside = np.zeros_like(mask)
                inside[box.y0:box.y1 + 1, box.x0:box.x1 + 1] = True
                stats = echogenicity_stats(frame.gray, mask & inside, exclude=self._data.exclude)
                values["Echogenicity (Mean)"] = stats.mean
                values["Echogenicity (Standard Deviation)"] = stats.sd
                values["Echogenicity (Median)"] = stats.median
            else:
                raise CorrectionError("this finding has no region that can be corrected")
        except MskusInputError as exc:  # calibration refusals: the reason, as the analysis gives it
            raise CorrectionError(f"the corrected {kind} cannot be measured: {exc}") from None
        except ValueError as exc:
            raise CorrectionError(f"the corrected {kind} cannot be measured: {exc}") from None
        if kind != "caliper" and any(name.startswith(("Vascularity", "Intraneural")) for name in wanted):
            vasc = self._vascularity(contour_mask(px, frame.gray.shape), nerve=kind == "contour")
            if vasc.measured and vasc.vascularity_index is not None:
                values["Vascularity index"] = float(vasc.vascularity_index)
                if vasc.vessel_count is not None and vasc.vascularity_grade is not None:
                    values["Intraneural vessel count"] = float(vasc.vessel_count)
                    values["Vascularity grade"] = float(vasc.vascularity_grade)
        return {name: value for name, value in values.items() if name in wanted}


def recompute(measurer: FrameMeasurer, finding: Finding, points: Sequence[tuple[float, float]]) -> Correction:
    """The correction of ``finding`` to the region ``points``: every value of the finding measured again.

    Raises
    ------
    CorrectionError
        The finding cannot be corrected, or a value it holds cannot be
        measured on the new region (the reviewer should then reject it).
    """
    if not finding.correctable:
        raise CorrectionError(f"{finding.label}: this finding has no region that can be corrected")
    dropped = tuple(item.name for item in finding.items if finding.kind == "caliper" and item.name in NOT_FROM_CALIPER)
    wanted = [item.name for item in finding.items if item.name not in dropped]
    values = measurer.measure(finding.kind, points, wanted)
    missing = [name for name in wanted if name not in values]
    if missing:
        raise CorrectionError(
            f"{finding.label}: {', '.join(missing)} cannot be measured on the corrected {finding.kind}; reject it instead"
        )
    units = {item.name: item.unit for item in finding.items}
    return Correction(
        points=tuple((float(x), float(y)) for x, y in points),
        values=tuple((name, float(values[name]), units.get(name) or _UNITS.get(name, "1")) for name in wanted),
        replaced=tuple((item.name, item.value, item.unit) for item in finding.items),
        how=_HOW[finding.kind],
        dropped=dropped,
    )
