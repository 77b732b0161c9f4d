"""Colour / power Doppler flow and intraneural or intramuscular vascularity (CONTRACT.md section 4).

Flow pixels
    A pixel is flow when its chroma (largest minus smallest RGB channel, on the
    displayed 8-bit RGB that every supported photometric decodes to: RGB,
    YBR_FULL / YBR_FULL_422 incl. JPEG, PALETTE COLOR through its lookup table)
    is clearly above the chroma the grey-scale image has at that grey level:

    ``chroma > tint * luma + max(CHROMA_FLOOR, NOISE_SIGMAS * noise)``

    where ``tint`` (a tinted B-mode map, e.g. sepia, has chroma proportional to
    luma) and ``noise`` (JPEG chroma noise) are estimated robustly (median, MAD)
    on the tissue pixels of the frame. An image whose R = G = B has chroma 0 and
    gives no flow. Flow components must hold a pixel ``SEED_MARGIN`` above the
    threshold (hysteresis). On lossy or chroma-subsampled frames a pixel must
    also reach half the chroma of the flow next to it (``LOSSY_HALF_MAX``; on
    4:2:2 frames along the row, and ``LOSSY_ROW_SHARE`` of the rows above and
    below): JPEG and 4:2:2 subsampling smear chroma one or two pixels beyond
    the flow, and the half-maximum places the edge where it was.

    Only the colour-flow region (Region Data Type 0x0002 of the Sequence of
    Ultrasound Regions: the colour box) is searched when the file declares one,
    else the tissue region. Colour-bar (0x000E) and gray-bar (0x000D) regions
    are never flow. Coloured annotations are removed by shape and colour:
    colour scales (a filled box whose colour changes along one axis only),
    thin uniform ticks and lines, glyphs (text, calipers, arrows: compact
    strokes one or two pixels wide of one hue) and markers on the flat black
    outside the image, with any piece inside them.

Per structure
    ``vascularity_index`` is the share (%) of the structure's area (pixels whose
    centres lie inside the nerve contour, or the muscle echogenicity ROI)
    covered by flow pixels. ``vessel_count`` is the number of separate
    (8-connected) flow components inside the contour of at least
    ``MIN_VESSEL_PX`` pixels (a vessel 4 px across has about 12). The grade
    follows :data:`GRADE_SCHEME`. A nerve must lie inside the colour box
    (``MIN_NERVE_COVERAGE``): flow is not sampled outside it, so a nerve outside
    gets no value (not zero), with the reason. A muscle ROI is measured over the
    part the box covers when that is at least ``MIN_ROI_COVERAGE`` of it.

No colour flow data
    Greyscale frames, and colour frames with no flow pixel, no colour-flow
    region and no Ultrasound Color Data Present (0028,0014) = 1, get no Doppler
    value at all: absent, with :data:`NO_COLOUR_FLOW` as the reason.

Results travel as small frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pipeline.calibration import FrameCalibration, PixelBox, RegionDataType

__all__ = [
    "GRADE_SCHEME",
    "NO_COLOUR_FLOW",
    "ColourFlowMap",
    "DopplerHeader",
    "FrameDoppler",
    "Vascularity",
    "detect_colour_flow",
    "measure_vascularity",
    "vascularity_grade",
]

#: Reason given for every Doppler value that is absent because the frame carries no colour flow.
NO_COLOUR_FLOW = "no colour flow data"

#: Chroma (gray levels of max - min channel) a flow pixel has at least above the grey-level baseline.
CHROMA_FLOOR = 24
#: ... or this many robust standard deviations of the frame's chroma noise, when that is larger.
NOISE_SIGMAS = 6.0
#: A flow component holds at least one pixel this much above the threshold (hysteresis seed).
SEED_MARGIN = 16
#: On lossy / chroma-subsampled frames a flow pixel reaches this share of the chroma of the flow
#: within ``LOSSY_WINDOW_PX`` of it (half maximum: the edge of a smeared step). 4:2:2 subsampling
#: halves the horizontal chroma resolution only: there the half maximum is taken along the row, and
#: the pixel needs ``LOSSY_ROW_SHARE`` of the chroma of the rows above and below.
LOSSY_HALF_MAX = 0.5
LOSSY_WINDOW_PX = 2
LOSSY_ROW_SHARE = 0.35
#: Smallest flow component counted as a vessel (pixels; a vessel 4 px across has about 12).
MIN_VESSEL_PX = 6
#: Share of the nerve inside the colour box needed for a vascularity value.
MIN_NERVE_COVERAGE = 0.95
#: Share of the muscle ROI inside the colour box needed for a vascularity value.
MIN_ROI_COVERAGE = 0.5
#: Tint slope estimated above this luma only (the chroma/luma ratio is noise on dark pixels).
TINT_MIN_LUMA = 32
#: Largest tint slope believed (a frame whose median pixel is that colourful is not a tinted B-mode).
MAX_TINT = 0.25
#: Flat colour: this share of a component's pixels within ``FLAT_TOLERANCE`` of its median colour.
FLAT_SHARE = 0.7
FLAT_TOLERANCE = 12
#: Glyph (coloured text, caliper, arrow): at least ``MIN_GLYPH_PX`` pixels, sparse in its box, compact,
#: box side in pixels, drawn in strokes one or two pixels wide (a 3x3 erosion leaves at most
#: ``MAX_GLYPH_CORE`` of it; a speck of flow is solid) and of one hue (circular SD in degrees).
MIN_GLYPH_PX = 12
MAX_GLYPH_FILL = 0.6
MAX_GLYPH_CORE = 0.05
MAX_GLYPH_HUE_SD_DEG = 3.0
MAX_GLYPH_ELONGATION = 4.0
GLYPH_SIDE_PX = (5, 40)
#: Straight bars and ticks: a filled box at most this thick and at least this long.
MAX_BAR_THICKNESS_PX = 3
MIN_BAR_LENGTH_PX = 8
#: Colour scale (velocity or power bar): a filled box at least this long whose colour changes along
#: one axis (by more than ``2 * FLAT_TOLERANCE``) and not across it.
SCALE_FILL = 0.95
MIN_SCALE_LENGTH_PX = 16
#: A marker sits on the flat black outside the image: its 2-px surround is darker than this (luma)
#: and flat (SD at most ``MARKER_SURROUND_SD``), unlike the speckle around a vessel.
MARKER_SURROUND_LUMA = 16
MARKER_SURROUND_SD = 3.0

#: The vessel-count grade (CONTRACT.md section 4).
GRADE_SCHEME = (
    "vessel-count grade: 0 no intraneural flow, 1 one vessel, 2 two or three vessels, 3 more than three "
    "(scoring by the number of intraneural vessels as in Akcar et al., Korean J Radiol 2010;11:632-639)"
)


@dataclass(frozen=True)
class DopplerHeader:
    """Doppler-related attributes of an ultrasound image.

    Attributes
    ----------
    color_data_present : bool or None
        Ultrasound Color Data Present (0028,0014); ``None`` when absent.
    prf_hz : float or None
        Pulse Repetition Frequency (0018,6032) in Hz; ``None`` when absent.
    lossy : bool
        The chroma may carry compression noise or subsampling smear: lossy
        compression (Lossy Image Compression 01 or a lossy transfer syntax) or
        a subsampled YBR photometric.
    subsampling : str
        ``"422"`` (horizontal only), ``"420"`` or ``""``.
    """

    color_data_present: bool | None = None
    prf_hz: float | None = None
    lossy: bool = False
    subsampling: str = ""

    @classmethod
    def from_dataset(cls, ds: Dataset) -> DopplerHeader:
        """Read the header attributes; malformed or multi-valued values count as absent."""
        present = _number(ds, "UltrasoundColorDataPresent")
        prf = _number(ds, "PulseRepetitionFrequency")
        photometric = str(_text(ds, "PhotometricInterpretation")).upper()
        subsampling = {"YBR_FULL_422": "422", "YBR_PARTIAL_422": "422", "YBR_PARTIAL_420": "420"}.get(photometric, "")
        ts = ""
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            ts = _text(meta, "TransferSyntaxUID")
        lossy_ts = bool(ts) and ts not in _LOSSLESS_TS and ts not in _NATIVE_TS
        lossy = _text(ds, "LossyImageCompression") == "01" or lossy_ts or bool(subsampling)
        return cls(
            color_data_present=None if present is None else present == 1,
            prf_hz=prf if prf is not None and prf > 0 else None,
            lossy=lossy,
            subsampling=subsampling,
        )

    def describe(self) -> str:
        """``"Ultrasound Color Data Present YES, PRF 1500 Hz"`` with the parts that are known."""
        parts = []
        if self.color_data_present is not None:
            parts.append(f"Ultrasound Color Data Present {'YES' if self.color_data_present else 'NO'}")
        if self.prf_hz is not None:
            parts.append(f"PRF {self.prf_hz:g} Hz")
        return ", ".join(parts)


_LOSSLESS_TS = frozenset(
    {
        "1.2.840.10008.1.2.5",  # RLE Lossless
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless P14
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
        "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    }
)


_NATIVE_TS = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.1.98",  # Encapsulated Uncompressed Explicit VR Little Endian
    }
)


def _number(ds: Dataset, keyword: str) -> float | None:
    """One finite number, or ``None`` when absent, empty, multi-valued or malformed."""
    try:
        value = ds.get(keyword)
        if value is None or isinstance(value, (bytes, list, tuple, MultiValue)) or str(value).strip() == "":
            return None
        number = float(value)
    except Exception:  # noqa: BLE001 - a malformed Doppler attribute is reported as absent, never fatal
        return None
    return number if np.isfinite(number) else None


def _text(ds: Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except Exception:  # noqa: BLE001 - as _number
        return ""


@dataclass(frozen=True)
class ColourFlowMap:
    """The colour-flow pixels of one frame, or why the frame has none.

    Attributes
    ----------
    mask : ndarray of bool or None
        Flow pixels (frame shape); ``None`` when the frame carries no colour flow data.
    reason : str
        Why there is no colour flow data (empty when there is).
    boxes : tuple of PixelBox
        The colour-flow regions (colour boxes) the file declares; empty when
        none is declared (the tissue region was searched).
    header : DopplerHeader
        The image's Doppler attributes.
    threshold : float
        The chroma threshold at luma 0 (gray levels).
    tint : float
        The grey-level chroma slope (chroma per luma level) of the B-mode.
    """

    mask: np.ndarray | None = field(repr=False)
    reason: str
    boxes: tuple[PixelBox, ...]
    header: DopplerHeader
    threshold: float = 0.0
    tint: float = 0.0

    @property
    def available(self) -> bool:
        return self.mask is not None

    @property
    def flow_pixel_count(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else 0

    def coverage_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Pixels where flow was sampled (the colour boxes); ``None``: everywhere searched."""
        if not self.boxes:
            return None
        covered = np.zeros(shape, dtype=bool)
        for box in self.boxes:
            covered[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = True
        return covered


@dataclass(frozen=True)
class Vascularity:
    """Doppler values of one structure (a nerve contour or a muscle ROI).

    The values are ``None`` when not measured; ``reason`` then says why
    (:data:`NO_COLOUR_FLOW` on greyscale frames).

    Attributes
    ----------
    vascularity_index : float or None
        Flow pixels / structure pixels, in %.
    vessel_count : int or None
        Flow components inside the structure of at least ``MIN_VESSEL_PX`` pixels.
    vascularity_grade : int or None
        0-3 from ``vessel_count`` (:data:`GRADE_SCHEME`).
    roi_px, flow_px : int
        Pixels of the structure (sampled part) and flow pixels inside it.
    coverage : float
        Share of the structure inside the colour box (1 when no box is declared).
    reason : str
        Why the values are absent; empty when measured.
    note : str
        What the output says next to measured values (Doppler header, partial coverage).
    flow_pixels : ndarray (N, 2) of int32
        ``(x, y)`` of the flow pixels counted, for the QA overlay.
    vessel_sizes_px : tuple of int
        Pixel counts of the vessels counted, largest first.
    """

    vascularity_index: float | None
    vessel_count: int | None
    vascularity_grade: int | None
    roi_px: int = 0
    flow_px: int = 0
    coverage: float = 0.0
    reason: str = ""
    note: str = ""
    flow_pixels: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int32), repr=False)
    vessel_sizes_px: tuple[int, ...] = ()

    @property
    def measured(self) -> bool:
        return self.vascularity_index is not None

    @classmethod
    def absent(cls, reason: str) -> Vascularity:
        return cls(None, None, None, reason=reason)


@dataclass(frozen=True)
class FrameDoppler:
    """What the frame says about colour flow, and the values of each measured structure.

    ``nerves`` follows :attr:`pipeline.analysis.FrameResult.nerves` (best first);
    ``muscle`` is the muscle echogenicity ROI's value.
    """

    header: DopplerHeader
    available: bool
    reason: str = ""
    flow_pixel_count: int = 0
    boxes: tuple[PixelBox, ...] = ()
    inpainted: bool = False
    nerves: tuple[Vascularity, ...] = ()
    muscle: Vascularity | None = None

    def nerve(self, index: int) -> Vascularity:
        """The values of the ``index``-th nerve (0-based), or an absent value with the frame's reason."""
        if 0 <= index < len(self.nerves):
            return self.nerves[index]
        return Vascularity.absent(self.reason or NO_COLOUR_FLOW)


def vascularity_grade(vessel_count: int) -> int:
    """0 none, 1 one vessel, 2 two or three, 3 more than three (:data:`GRADE_SCHEME`)."""
    if vessel_count < 0:
        raise ValueError(f"vessel count must not be negative, got {vessel_count}")
    if vessel_count == 0:
        return 0
    if vessel_count == 1:
        return 1
    if vessel_count <= 3:
        return 2
    return 3


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------


def _chroma(color: np.ndarray) -> np.ndarray:
    r, g, b = cv2.split(np.ascontiguousarray(color))
    return cv2.subtract(cv2.max(cv2.max(r, g), b), cv2.min(cv2.min(r, g), b))


def _box_mask(shape: tuple[int, int], boxes: tuple[PixelBox, ...] | list[PixelBox]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        mask[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1] = True
    return mask


def _baseline(chroma: np.ndarray, luma: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """(tint slope, noise sigma) of the B-mode chroma over the ``sample`` pixels (robust)."""
    c = chroma[sample].astype(np.float32)
    y = luma[sample].astype(np.float32)
    if c.size > 200_000:  # a regular subsample is plenty for two medians
        step = c.size // 200_000 + 1
        c, y = c[::step], y[::step]
    if c.size == 0:
        return 0.0, 0.0
    bright = y >= TINT_MIN_LUMA
    tint = float(np.median(c[bright] / y[bright])) if bright.sum() >= 100 else 0.0
    tint = min(max(tint, 0.0), MAX_TINT)
    residual = c - tint * y
    centre = float(np.median(residual))
    sigma = 1.4826 * float(np.median(np.abs(residual - centre)))
    return tint, sigma


def _annotation_components(
    labels: np.ndarray, stats: np.ndarray, n: int, color: np.ndarray, luma: np.ndarray
) -> np.ndarray:
    """Per component label: True where it is a coloured annotation, colour scale or marker, not flow."""
    drop = np.zeros(n, dtype=bool)
    for k in range(1, n):
        x, y, w, h, count = (int(v) for v in stats[k])
        sub = labels[y : y + h, x : x + w] == k
        fill = count / float(w * h)
        pixels = color[y : y + h, x : x + w][sub].astype(np.int16)
        median = np.median(pixels, axis=0)
        flat = float(np.mean(np.abs(pixels - median).max(axis=1) <= FLAT_TOLERANCE)) >= FLAT_SHARE
        long_side, short_side = max(w, h), min(w, h)
        # Straight ticks and lines: a filled box one to three pixels thick.
        if fill >= 0.8 and short_side <= MAX_BAR_THICKNESS_PX and long_side >= MIN_BAR_LENGTH_PX and flat:
            drop[k] = True
            continue
        # Colour scale: a filled box whose colour changes along one axis but not across it.
        if fill >= SCALE_FILL and long_side >= MIN_SCALE_LENGTH_PX and _is_scale(color[y : y + h, x : x + w]):
            drop[k] = True
            continue
        # Glyphs (text, calipers, arrows): compact strokes one or two pixels wide, all of one hue (the
        # drawing colour, anti-aliased into the grey around it); flow has a velocity / power texture.
        if count >= MIN_GLYPH_PX and fill <= MAX_GLYPH_FILL and GLYPH_SIDE_PX[0] <= long_side <= GLYPH_SIDE_PX[1]:
            core = int(cv2.erode(np.pad(sub.astype(np.uint8), 1), np.ones((3, 3), np.uint8)).sum())
            if core <= MAX_GLYPH_CORE * count and _hue_sd_deg(pixels) <= MAX_GLYPH_HUE_SD_DEG:
                ys, xs = np.nonzero(sub)
                eig = np.linalg.eigvalsh(np.cov(np.vstack([xs, ys])) + 0.25 * np.eye(2))
                if float(np.sqrt(eig[1] / eig[0])) <= MAX_GLYPH_ELONGATION:
                    drop[k] = True
                    continue
        # Markers (body marks, probe orientation) drawn on the flat black outside the image.
        if long_side <= GLYPH_SIDE_PX[1]:
            y0, y1 = max(0, y - 3), min(labels.shape[0], y + h + 3)
            x0, x1 = max(0, x - 3), min(labels.shape[1], x + w + 3)
            comp = _filled((labels[y0:y1, x0:x1] == k).astype(np.uint8))
            # the surround 2 px out, past the anti-aliased fringe
            ring = (cv2.dilate(comp, np.ones((5, 5), np.uint8)) > 0) & ~(cv2.dilate(comp, np.ones((3, 3), np.uint8)) > 0)
            ring &= labels[y0:y1, x0:x1] == 0
            around = luma[y0:y1, x0:x1][ring].astype(np.float32)
            if around.size and float(around.mean()) < MARKER_SURROUND_LUMA and float(around.std()) <= MARKER_SURROUND_SD:
                drop[k] = True
    # Pieces inside (or touching) an annotation, e.g. the anti-aliased letter of a marker, go with it.
    if drop[1:].any():
        dropped = np.zeros(labels.shape, np.uint8)
        for d in np.nonzero(drop)[0]:
            x, y, w, h, _ = (int(v) for v in stats[d])
            dropped[y : y + h, x : x + w] |= _filled((labels[y : y + h, x : x + w] == d).astype(np.uint8))
        near = cv2.dilate(dropped, np.ones((5, 5), np.uint8)) > 0
        for k in range(1, n):
            if drop[k]:
                continue
            x, y, w, h, _ = (int(v) for v in stats[k])
            if near[y : y + h, x : x + w][labels[y : y + h, x : x + w] == k].all():
                drop[k] = True
    return drop


def _clipped(boxes: list[PixelBox], rows: int, cols: int) -> tuple[PixelBox, ...]:
    """The boxes that reach into the frame, clipped to it."""
    out = []
    for box in boxes:
        x0, y0, x1, y1 = max(0, box.x0), max(0, box.y0), min(cols - 1, box.x1), min(rows - 1, box.y1)
        if x1 >= x0 and y1 >= y0:
            out.append(PixelBox(x0, y0, x1, y1))
    return tuple(out)


def _hue_sd_deg(pixels: np.ndarray) -> float:
    """Circular standard deviation (degrees) of the hue of RGB pixels ``(N, 3)``."""
    rgb = np.clip(pixels, 0, 255).astype(np.uint8).reshape(-1, 1, 3)
    hue = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL)[:, 0, 0].astype(np.float64) * (2 * np.pi / 256)
    length = float(np.hypot(np.cos(hue).mean(), np.sin(hue).mean()))
    return float(np.degrees(np.sqrt(max(0.0, -2.0 * np.log(max(length, 1e-12))))))


def _filled(component: np.ndarray) -> np.ndarray:
    """The component (uint8 0/1) with its holes filled (a marker's letter is part of the marker)."""
    padded = np.pad(component, 1)
    outside = padded.copy()
    cv2.floodFill(outside, np.zeros((padded.shape[0] + 2, padded.shape[1] + 2), np.uint8), (0, 0), 2)
    return (outside[1:-1, 1:-1] != 2).astype(np.uint8)


def _is_scale(block: np.ndarray) -> bool:
    """A colour scale: rows (or columns) of one colour each, changing along the other axis."""
    block = block.astype(np.int16)
    for across in (0, 1):  # 0: each column uniform (horizontal bar), 1: each row uniform (vertical bar)
        if block.shape[across] < 2 or block.shape[1 - across] < MIN_SCALE_LENGTH_PX:
            continue
        spread_across = float(np.median(block.max(axis=across) - block.min(axis=across)))
        along = block.mean(axis=across)
        spread_along = float((along.max(axis=0) - along.min(axis=0)).max())
        if spread_across <= FLAT_TOLERANCE and spread_along > 2 * FLAT_TOLERANCE:
            return True
    return False


def detect_colour_flow(
    color: np.ndarray | None,
    calibration: FrameCalibration,
    header: DopplerHeader | None = None,
    *,
    gray: np.ndarray | None = None,
) -> ColourFlowMap:
    """Find the colour-flow pixels of a frame.

    Parameters
    ----------
    color : ndarray of uint8 (rows, columns, 3) or None
        The displayed RGB frame; ``None`` for greyscale frames (no colour flow data).
    calibration : FrameCalibration
        Tissue box and ultrasound regions (colour-flow box, colour bar).
    header : DopplerHeader, optional
        The image's Doppler attributes (lossy compression switches the half-maximum edge on).
    gray : ndarray of uint8, optional
        The frame's luma (computed from ``color`` when not given).

    Returns
    -------
    ColourFlowMap
        ``mask`` is ``None`` (with :data:`NO_COLOUR_FLOW` as the reason) when
        the frame carries no colour flow data.
    """
    header = header or DopplerHeader()
    if color is None:
        return ColourFlowMap(None, NO_COLOUR_FLOW, (), header)
    rows, cols = color.shape[:2]
    luma = gray if gray is not None else cv2.cvtColor(np.ascontiguousarray(color), cv2.COLOR_RGB2GRAY)
    regions = calibration.regions
    boxes = _clipped([r.box for r in regions if r.data_type == RegionDataType.COLOR_FLOW], rows, cols)
    tissue = _box_mask((rows, cols), [calibration.tissue_box])
    search = _box_mask((rows, cols), boxes) if boxes else tissue.copy()
    scales = _clipped(
        [r.box for r in regions if r.data_type in (RegionDataType.COLOR_BAR, RegionDataType.GRAY_BAR)], rows, cols
    )
    if scales:
        search &= ~_box_mask((rows, cols), scales)
    chroma = _chroma(color)
    mask = np.zeros((rows, cols), dtype=bool)
    tint = sigma = 0.0
    threshold = float(CHROMA_FLOOR)
    if search.any() and int(chroma[search].max()) > CHROMA_FLOOR:
        # Baseline of the grey-scale image: tissue pixels outside the colour boxes when they leave enough.
        sample = tissue & ~search if boxes else tissue
        if sample.sum() < 0.2 * tissue.sum():
            sample = tissue
        tint, sigma = _baseline(chroma, luma, sample)
        threshold = max(float(CHROMA_FLOOR), NOISE_SIGMAS * sigma)
        ys, xs = np.nonzero(search)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        c = chroma[y0:y1, x0:x1].astype(np.float32)
        excess = c - tint * luma[y0:y1, x0:x1].astype(np.float32)
        candidate = (excess > threshold) & search[y0:y1, x0:x1]
        if header.lossy and candidate.any():
            # Half maximum of the neighbouring flow: chroma smeared by compression / subsampling is not flow.
            flow_chroma = np.where(candidate, c, 0).astype(np.float32)
            if header.subsampling == "422":
                # 4:2:2 halves the horizontal chroma resolution: half maximum across columns; compression
                # smears rows less (a weaker share of the chroma above and below).
                along = cv2.dilate(flow_chroma, np.ones((1, 2 * LOSSY_WINDOW_PX + 1), np.uint8))
                across = cv2.dilate(flow_chroma, np.ones((3, 1), np.uint8))
                candidate &= (c >= LOSSY_HALF_MAX * along) & (c >= LOSSY_ROW_SHARE * across)
            else:
                size = 2 * LOSSY_WINDOW_PX + 1
                candidate &= c >= LOSSY_HALF_MAX * cv2.dilate(flow_chroma, np.ones((size, size), np.uint8))
        if candidate.any():
            n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate.astype(np.uint8), connectivity=8)
            seeded = np.zeros(n, dtype=bool)
            seeded[np.unique(labels[candidate & (excess > threshold + SEED_MARGIN)])] = True
            seeded[0] = False
            drop = _annotation_components(labels, stats, n, color[y0:y1, x0:x1], luma[y0:y1, x0:x1])
            keep = seeded & ~drop
            mask[y0:y1, x0:x1] = keep[labels]
    found = bool(mask.any())
    if not (found or boxes or header.color_data_present):
        return ColourFlowMap(None, NO_COLOUR_FLOW, (), header, threshold, tint)
    return ColourFlowMap(mask, "", boxes, header, threshold, tint)


# --------------------------------------------------------------------------------------
# Per structure
# --------------------------------------------------------------------------------------


def measure_vascularity(
    flow: ColourFlowMap,
    roi: np.ndarray,
    *,
    count_vessels: bool = True,
    min_coverage: float = MIN_NERVE_COVERAGE,
    whole_roi: bool = True,
    what: str = "nerve",
) -> Vascularity:
    """Vascularity index, vessel count and grade of one structure.

    Parameters
    ----------
    flow : ColourFlowMap
        The frame's flow pixels (:func:`detect_colour_flow`).
    roi : ndarray of bool
        The structure: pixels whose centres lie inside the nerve contour, or the muscle ROI.
    count_vessels : bool
        Count the vessels and grade them (nerves); the index only otherwise.
    min_coverage : float
        Share of the structure that must lie inside the colour box.
    whole_roi : bool
        Divide by the whole structure (nerve: CONTRACT.md's "share of the
        contour area") rather than by its part inside the colour box (muscle ROI).
    what : str
        The structure's name, for reasons.
    """
    if flow.mask is None:
        return Vascularity.absent(flow.reason or NO_COLOUR_FLOW)
    roi = np.asarray(roi, dtype=bool)
    total = int(roi.sum())
    if total == 0:
        return Vascularity.absent(f"empty {what} region")
    covered = flow.coverage_mask(roi.shape)
    sampled = roi if covered is None else roi & covered
    n_sampled = int(sampled.sum())
    coverage = n_sampled / total
    if coverage < min_coverage:
        if n_sampled == 0:
            reason = f"{what} outside the colour-flow box: flow not sampled there"
        else:
            reason = f"colour-flow box covers only {100 * coverage:.0f} % of the {what} (at least {100 * min_coverage:.0f} % needed)"
        return Vascularity(None, None, None, roi_px=total, coverage=coverage, reason=reason)
    inside = flow.mask & sampled
    flow_px = int(inside.sum())
    denominator = total if whole_roi else n_sampled
    index = 100.0 * flow_px / denominator
    ys, xs = np.nonzero(inside)
    sizes: tuple[int, ...] = ()
    count = grade = None
    if count_vessels:
        if flow_px:
            y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
            _, _, stats, _ = cv2.connectedComponentsWithStats(inside[y0:y1, x0:x1].astype(np.uint8), connectivity=8)
            sizes = tuple(sorted((int(a) for a in stats[1:, cv2.CC_STAT_AREA] if a >= MIN_VESSEL_PX), reverse=True))
        count = len(sizes)
        grade = vascularity_grade(count)
    notes = []
    described = flow.header.describe()
    if described:
        notes.append(described)
    if coverage < 1.0:
        notes.append(f"colour-flow box covers {100 * coverage:.0f} % of the {what}")
    return Vascularity(
        vascularity_index=index,
        vessel_count=count,
        vascularity_grade=grade,
        roi_px=denominator,
        flow_px=flow_px,
        coverage=coverage,
        note="; ".join(notes),
        flow_pixels=np.column_stack([xs, ys]).astype(np.int32),
        vessel_sizes_px=sizes,
    )
