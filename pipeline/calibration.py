"""Pixel-to-millimetre calibration of ultrasound frames.

Implements CONTRACT.md section 6. Millimetres per pixel come from the
Sequence of Ultrasound Regions (0018,6011): the region that contains the
measured pixels, with Region Spatial Format 1 (2D) and Physical Units X and
Y = 3 (cm); Physical Delta X/Y are centimetres per pixel. Without such a
region the Pixel Spacing (0028,0030) is used and flagged as a fallback; with
neither the frame is explicitly *uncalibrated* and every mm request raises
:class:`~pipeline.errors.UncalibratedError`.

Coordinates are frame pixel coordinates: ``x`` is the column, ``y`` the row,
both 0-based, with the centre of the top-left pixel at (0, 0). Region bounds
are inclusive, as in the DICOM attributes Region Location Min/Max.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pipeline.errors import CalibrationError, UncalibratedError

__all__ = [
    "CalibrationSource",
    "FrameCalibration",
    "PhysicalUnits",
    "PixelBox",
    "RegionDataType",
    "RegionSpatialFormat",
    "UltrasoundRegion",
    "calibration_for_frame",
    "regions_from_sequence",
]


class RegionSpatialFormat(enum.IntEnum):
    """Region Spatial Format (0018,6012)."""

    NONE = 0
    TWO_D = 1
    M_MODE = 2
    SPECTRAL = 3
    WAVEFORM = 4
    GRAPHICS = 5


class RegionDataType(enum.IntEnum):
    """Region Data Type (0018,6014); values not listed are kept as plain ints."""

    NONE = 0
    TISSUE = 1
    COLOR_FLOW = 2
    PW_SPECTRAL_DOPPLER = 3
    CW_SPECTRAL_DOPPLER = 4
    DOPPLER_MEAN_TRACE = 5
    DOPPLER_MODE_TRACE = 6
    DOPPLER_MAX_TRACE = 7
    VOLUME_TRACE = 8
    ECG_TRACE = 10
    GRAY_BAR = 13
    COLOR_BAR = 14


class PhysicalUnits(enum.IntEnum):
    """Physical Units X/Y Direction (0018,6024 / 0018,6026)."""

    NONE = 0
    PERCENT = 1
    DB = 2
    CM = 3
    SECONDS = 4
    HERTZ = 5
    DB_PER_SECOND = 6
    CM_PER_SECOND = 7
    CM2 = 8
    CM2_PER_SECOND = 9
    CM3 = 10
    CM3_PER_SECOND = 11
    DEGREES = 12


class CalibrationSource(str, enum.Enum):
    """Where a frame's millimetre scale came from."""

    ULTRASOUND_REGION = "ultrasound_region"
    PIXEL_SPACING = "pixel_spacing"
    UNCALIBRATED = "uncalibrated"


@overload
def _number(item: Dataset, keyword: str, kind: type[int]) -> int: ...
@overload
def _number(item: Dataset, keyword: str, kind: type[float]) -> float: ...
def _number(item: Dataset, keyword: str, kind: type[int] | type[float]) -> int | float:
    """One numeric region attribute (0 when absent or empty); a list or text raises ``TypeError``/``ValueError``.

    A value with more than one item (VM > 1 where the standard says 1) is
    refused rather than guessed: ``TypeError`` names the attribute.
    """
    value = item.get(keyword, 0)
    if value is None or value == "":
        return kind(0)
    if isinstance(value, (list, tuple, MultiValue)):
        raise TypeError(f"{keyword} has {len(value)} values, expected one")
    return kind(value)


def _enum_or_int(enum_type: type[enum.IntEnum], value: int) -> enum.IntEnum | int:
    try:
        return enum_type(value)
    except ValueError:
        return int(value)


@dataclass(frozen=True)
class PixelBox:
    """Axis-aligned rectangle of frame pixels, bounds inclusive.

    Parameters
    ----------
    x0, y0 : int
        Column and row of the top-left pixel.
    x1, y1 : int
        Column and row of the bottom-right pixel (inclusive).
    """

    x0: int
    y0: int
    x1: int
    y1: int

    def __post_init__(self) -> None:
        if self.x1 < self.x0 or self.y1 < self.y0:
            raise ValueError(f"empty pixel box {self.as_tuple()}")

    @property
    def width(self) -> int:
        return self.x1 - self.x0 + 1

    @property
    def height(self) -> int:
        return self.y1 - self.y0 + 1

    @property
    def center_x(self) -> float:
        return (self.x0 + self.x1) / 2.0

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)

    def contains(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Boolean per (x, y) point: inside the box (pixel-centre convention).

        A point belongs to a pixel when it is within half a pixel of its centre,
        so the box spans ``[x0 - 0.5, x1 + 0.5]``.
        """
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        return (
            (pts[:, 0] >= self.x0 - 0.5)
            & (pts[:, 0] <= self.x1 + 0.5)
            & (pts[:, 1] >= self.y0 - 0.5)
            & (pts[:, 1] <= self.y1 + 0.5)
        )

    def clipped(self, rows: int, columns: int) -> PixelBox:
        """This box restricted to a frame of ``rows`` x ``columns`` pixels.

        Raises
        ------
        CalibrationError
            The box lies entirely outside the frame (nothing of it is left).
        """
        x0, y0, x1, y1 = max(0, self.x0), max(0, self.y0), min(columns - 1, self.x1), min(rows - 1, self.y1)
        if x1 < x0 or y1 < y0:
            raise CalibrationError(
                f"ultrasound region {list(self.as_tuple())} lies outside the {columns}x{rows} frame"
            )
        return PixelBox(x0, y0, x1, y1)


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of the Sequence of Ultrasound Regions (0018,6011).

    ``delta_x_cm`` / ``delta_y_cm`` are Physical Delta X/Y in the region's
    physical units per pixel (centimetres per pixel when the units are cm).
    """

    box: PixelBox
    spatial_format: RegionSpatialFormat | int
    data_type: RegionDataType | int
    flags: int
    units_x: PhysicalUnits | int
    units_y: PhysicalUnits | int
    delta_x: float
    delta_y: float
    reference_pixel: tuple[int, int] | None = None

    @classmethod
    def from_item(cls, item: Dataset) -> UltrasoundRegion:
        """Parse one sequence item; raise :class:`CalibrationError` if bounds are missing."""
        try:
            box = PixelBox(
                int(item.RegionLocationMinX0),
                int(item.RegionLocationMinY0),
                int(item.RegionLocationMaxX1),
                int(item.RegionLocationMaxY1),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise CalibrationError(f"ultrasound region with missing or invalid bounds: {exc}") from None
        ref = None
        if "ReferencePixelX0" in item and "ReferencePixelY0" in item:
            try:
                ref = (int(item.ReferencePixelX0), int(item.ReferencePixelY0))
            except (TypeError, ValueError):
                ref = None
        try:
            return cls(
                box=box,
                spatial_format=_enum_or_int(RegionSpatialFormat, _number(item, "RegionSpatialFormat", int)),
                data_type=_enum_or_int(RegionDataType, _number(item, "RegionDataType", int)),
                flags=_number(item, "RegionFlags", int),
                units_x=_enum_or_int(PhysicalUnits, _number(item, "PhysicalUnitsXDirection", int)),
                units_y=_enum_or_int(PhysicalUnits, _number(item, "PhysicalUnitsYDirection", int)),
                delta_x=_number(item, "PhysicalDeltaX", float),
                delta_y=_number(item, "PhysicalDeltaY", float),
                reference_pixel=ref,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise CalibrationError(f"ultrasound region with an invalid value: {exc}") from None

    @property
    def is_2d(self) -> bool:
        return self.spatial_format == RegionSpatialFormat.TWO_D

    @property
    def is_tissue(self) -> bool:
        return self.data_type == RegionDataType.TISSUE

    @property
    def is_color_flow(self) -> bool:
        return self.data_type == RegionDataType.COLOR_FLOW

    @property
    def has_cm_units(self) -> bool:
        """Both axes in centimetres with positive deltas: usable for mm."""
        return (
            self.units_x == PhysicalUnits.CM
            and self.units_y == PhysicalUnits.CM
            and self.delta_x > 0
            and self.delta_y > 0
        )

    @property
    def mm_per_px_x(self) -> float:
        self._require_cm()
        return self.delta_x * 10.0

    @property
    def mm_per_px_y(self) -> float:
        self._require_cm()
        return self.delta_y * 10.0

    def _require_cm(self) -> None:
        if not self.has_cm_units:
            raise CalibrationError(f"ultrasound region {self.describe()} is not in centimetres")

    def describe(self) -> str:
        """Short human-readable description for messages."""
        dtype = self.data_type.name.lower() if isinstance(self.data_type, enum.Enum) else self.data_type
        ux = self.units_x.name.lower() if isinstance(self.units_x, enum.Enum) else self.units_x
        uy = self.units_y.name.lower() if isinstance(self.units_y, enum.Enum) else self.units_y
        return f"[{self.box.x0},{self.box.y0}-{self.box.x1},{self.box.y1}] data type {dtype}, units {ux}/{uy}"


def regions_from_sequence(sequence: Sequence[Dataset] | None) -> tuple[UltrasoundRegion, ...]:
    """Parse every item of a Sequence of Ultrasound Regions."""
    if not sequence:
        return ()
    return tuple(UltrasoundRegion.from_item(item) for item in sequence)


@dataclass(frozen=True)
class FrameCalibration:
    """Calibration of one frame.

    Attributes
    ----------
    source : CalibrationSource
        Ultrasound region, Pixel Spacing fallback, or uncalibrated.
    mm_per_px_x, mm_per_px_y : float or None
        Millimetres per pixel along columns (x) and rows (y) of the tissue
        region; ``None`` when uncalibrated.
    tissue_box : PixelBox
        The frame pixels holding the B-mode image. All analysis happens inside
        it. From the tissue region when the file declares one, otherwise
        estimated from the image (see ``tissue_box_estimated``).
    tissue_box_estimated : bool
        True when ``tissue_box`` was estimated from the pixels rather than
        read from the file.
    regions : tuple of UltrasoundRegion
        Every region of the frame, for refusing measurements that span two.
    tissue_region : UltrasoundRegion or None
        The selected tissue region (2D, tissue, cm units) when there is one.
    note : str
        One line for the output: why a fallback or no calibration was used;
        empty when calibrated from an ultrasound region.
    """

    source: CalibrationSource
    mm_per_px_x: float | None
    mm_per_px_y: float | None
    tissue_box: PixelBox
    tissue_box_estimated: bool = False
    regions: tuple[UltrasoundRegion, ...] = ()
    tissue_region: UltrasoundRegion | None = None
    note: str = ""

    def __post_init__(self) -> None:
        calibrated = self.source is not CalibrationSource.UNCALIBRATED
        if calibrated and not (self.mm_per_px_x and self.mm_per_px_y):
            raise ValueError("a calibrated frame needs positive mm_per_px_x and mm_per_px_y")
        if not calibrated and (self.mm_per_px_x is not None or self.mm_per_px_y is not None):
            raise ValueError("an uncalibrated frame cannot carry a pixel size")

    @property
    def is_calibrated(self) -> bool:
        return self.source is not CalibrationSource.UNCALIBRATED

    @property
    def is_isotropic(self) -> bool:
        self.require_calibrated()
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        return abs(self.mm_per_px_x - self.mm_per_px_y) <= 1e-3 * max(self.mm_per_px_x, self.mm_per_px_y)

    @property
    def mm_per_px(self) -> float:
        """Isotropic pixel size in mm (geometric mean of x and y)."""
        self.require_calibrated()
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        return float(np.sqrt(self.mm_per_px_x * self.mm_per_px_y))

    @property
    def pixel_area_mm2(self) -> float:
        self.require_calibrated()
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        return self.mm_per_px_x * self.mm_per_px_y

    def require_calibrated(self) -> None:
        """Raise :class:`UncalibratedError` (with the reason) when uncalibrated."""
        if not self.is_calibrated:
            raise UncalibratedError(self.note or "image has no calibration")

    def check_measurement(self, points: np.ndarray | Sequence[Sequence[float]]) -> None:
        """Refuse a mm measurement over ``points`` the calibration cannot support.

        Raises
        ------
        UncalibratedError
            The frame has no calibration.
        CalibrationError
            The points span two ultrasound regions, lie outside every region,
            or lie in a region whose units are not cm or that is not 2D.
        """
        self.require_calibrated()
        pts = np.asarray(points, dtype=float).reshape(-1, 2)
        if pts.size == 0:
            raise ValueError("no points to check")
        if self.source is CalibrationSource.PIXEL_SPACING:
            if not self.tissue_box.contains(pts).all():
                raise CalibrationError("measurement extends outside the tissue area")
            return
        containing = [r for r in self.regions if r.box.contains(pts).all()]
        usable = [r for r in containing if r.is_2d and r.has_cm_units and self._same_scale(r)]
        if usable:
            return
        if containing:
            raise CalibrationError(
                f"measurement lies in a region without 2D cm calibration ({containing[0].describe()})"
            )
        in_any = np.zeros(len(pts), dtype=bool)
        for region in self.regions:
            in_any |= region.box.contains(pts)
        if in_any.all():
            raise CalibrationError("measurement spans two ultrasound regions")
        raise CalibrationError("measurement lies outside every calibrated ultrasound region")

    def _same_scale(self, region: UltrasoundRegion) -> bool:
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        return bool(
            np.isclose(region.mm_per_px_x, self.mm_per_px_x, rtol=1e-6)
            and np.isclose(region.mm_per_px_y, self.mm_per_px_y, rtol=1e-6)
        )

    def distance_mm(self, p0: Sequence[float], p1: Sequence[float]) -> float:
        """Physical distance between two frame points, after :meth:`check_measurement`."""
        self.check_measurement([p0, p1])
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        dx = (float(p1[0]) - float(p0[0])) * self.mm_per_px_x
        dy = (float(p1[1]) - float(p0[1])) * self.mm_per_px_y
        return float(np.hypot(dx, dy))

    def describe(self) -> str:
        """One line for tables and logs."""
        if not self.is_calibrated:
            return f"uncalibrated ({self.note})" if self.note else "uncalibrated"
        assert self.mm_per_px_x is not None and self.mm_per_px_y is not None
        scale = (
            f"{self.mm_per_px_x:.5f} mm/px"
            if self.is_isotropic
            else f"{self.mm_per_px_x:.5f} x {self.mm_per_px_y:.5f} mm/px"
        )
        if self.source is CalibrationSource.PIXEL_SPACING:
            return f"{scale} (Pixel Spacing fallback)"
        return f"{scale} (ultrasound region)"


def _pixel_spacing_mm(ds: Dataset) -> tuple[float, float] | None:
    """(x, y) mm/px from Pixel Spacing, if present and positive."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None:
            try:
                row_spacing, col_spacing = (float(v) for v in value)
            except (TypeError, ValueError):
                continue
            if row_spacing > 0 and col_spacing > 0:
                # Pixel Spacing is (row spacing = y, column spacing = x).
                return col_spacing, row_spacing
    return None


def select_tissue_region(regions: Sequence[UltrasoundRegion]) -> UltrasoundRegion | None:
    """The 2D tissue region with cm units, the largest if there are several."""
    candidates = [r for r in regions if r.is_2d and r.is_tissue and r.has_cm_units]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r.box.width * r.box.height)


def calibration_for_frame(
    ds: Dataset,
    regions: Sequence[UltrasoundRegion],
    rows: int,
    columns: int,
    *,
    estimated_tissue_box: PixelBox | None = None,
) -> FrameCalibration:
    """Build the calibration of one frame from its regions and the dataset.

    Parameters
    ----------
    ds : Dataset
        The image dataset (for the Pixel Spacing fallback).
    regions : sequence of UltrasoundRegion
        The regions that apply to this frame (per-frame or shared).
    rows, columns : int
        Frame size in pixels.
    estimated_tissue_box : PixelBox, optional
        Tissue area estimated from the pixels, used when the file declares no
        tissue region. Defaults to the whole frame.
    """
    full_frame = PixelBox(0, 0, columns - 1, rows - 1)
    fallback_box = estimated_tissue_box or full_frame
    tissue = select_tissue_region(regions)
    if tissue is not None:
        return FrameCalibration(
            source=CalibrationSource.ULTRASOUND_REGION,
            mm_per_px_x=tissue.mm_per_px_x,
            mm_per_px_y=tissue.mm_per_px_y,
            tissue_box=tissue.box.clipped(rows, columns),
            regions=tuple(regions),
            tissue_region=tissue,
        )
    # A tissue region without usable units still bounds the analysis area.
    uncal_tissue = [r for r in regions if r.is_2d and r.is_tissue]
    box = uncal_tissue[0].box.clipped(rows, columns) if uncal_tissue else fallback_box
    estimated = not uncal_tissue and estimated_tissue_box is not None
    if regions:
        why = "no 2D tissue ultrasound region in cm"
    else:
        why = "Sequence of Ultrasound Regions missing"
    spacing = _pixel_spacing_mm(ds)
    if spacing is not None:
        return FrameCalibration(
            source=CalibrationSource.PIXEL_SPACING,
            mm_per_px_x=spacing[0],
            mm_per_px_y=spacing[1],
            tissue_box=box,
            tissue_box_estimated=estimated,
            regions=tuple(regions),
            note=f"calibrated from Pixel Spacing: {why}",
        )
    return FrameCalibration(
        source=CalibrationSource.UNCALIBRATED,
        mm_per_px_x=None,
        mm_per_px_y=None,
        tissue_box=box,
        tissue_box_estimated=estimated,
        regions=tuple(regions),
        note=f"no ultrasound calibration: {why} and no Pixel Spacing",
    )
