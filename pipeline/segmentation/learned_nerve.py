"""Learned nerve segmentation, run through OpenCV's DNN module.

A compact U-Net (``models/nerve_unet.onnx``, trained by
``training/train_nerve_segmenter.py``; see ``models/MODEL_CARD.md``) labels
every pixel of the tissue region as background, nerve or blood vessel. Only
OpenCV and NumPy are needed at run time: no deep-learning runtime.

Two segmenters use the network:

- :class:`LearnedNerveSegmenter` reports each connected nerve region as its
  own nerve, with a sub-pixel contour on the network's decision boundary.
- :class:`AutoNerveSegmenter` uses each learned nerve region as a proposal and
  lets the classical rim tracer place the border (CONTRACT.md section 4: the
  inner border of the epineurial rim, half the blur-corrected rim width inside
  the rim's ridge). Regions the network calls vessel are never reported.

Input preparation (shared with training so both see the same thing): the
tissue region is letterboxed into a square of ``input_size`` pixels (aspect
kept, black padding, :func:`cv2.resize` with ``INTER_AREA``) and standardised
with the mean and SD of the tissue pixels (:func:`normalize_input`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from skimage.measure import find_contours

from pipeline.calibration import PixelBox
from pipeline.crop import Crop
from pipeline.geometry import dice_coefficient, polygon_area, polygon_mask
from pipeline.segmentation.base import NerveSegmentation, RimFeatures
from pipeline.segmentation.classical_nerve import ClassicalNerveParameters, ClassicalNerveSegmenter

__all__ = [
    "AutoNerveParameters",
    "AutoNerveSegmenter",
    "CLASSES",
    "ConfidenceCalibration",
    "DEFAULT_MODEL_PATH",
    "LabelRegion",
    "LearnedFrame",
    "LearnedNerveParameters",
    "LearnedNerveSegmenter",
    "Letterbox",
    "NerveNet",
    "file_sha256",
    "letterbox",
    "metadata_path",
    "normalize_input",
]

logger = logging.getLogger(__name__)

#: The shipped model (repository ``models/`` folder).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "nerve_unet.onnx"

#: Output channels of the network, in order.
CLASSES = ("background", "nerve", "vessel")
NERVE, VESSEL = 1, 2

#: Lower bound of the SD used to standardise the input (gray levels / 255).
MIN_INPUT_SD = 0.02


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(model_path: str | Path) -> Path:
    """The JSON written next to a model (``nerve_unet.onnx`` -> ``nerve_unet.json``)."""
    return Path(model_path).with_suffix(".json")


# --------------------------------------------------------------------------------------
# Input preparation (also used by training)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letterbox:
    """Where a ``(h, w)`` crop sits in the square network input.

    The crop is resized by ``scale`` to ``(rows, cols)`` and placed with its
    top-left pixel at ``(x0, y0)`` of the ``size`` x ``size`` input.
    """

    size: int
    scale: float
    x0: int
    y0: int
    cols: int
    rows: int

    @classmethod
    def fit(cls, shape: tuple[int, int], size: int) -> Letterbox:
        h, w = shape
        scale = size / max(h, w)
        cols = max(1, min(size, int(round(w * scale))))
        rows = max(1, min(size, int(round(h * scale))))
        return cls(size=size, scale=scale, x0=(size - cols) // 2, y0=(size - rows) // 2, cols=cols, rows=rows)

    def valid_mask(self) -> np.ndarray:
        mask = np.zeros((self.size, self.size), dtype=bool)
        mask[self.y0 : self.y0 + self.rows, self.x0 : self.x0 + self.cols] = True
        return mask


def letterbox(gray: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize ``gray`` (aspect kept, ``INTER_AREA``) into a black ``size`` x ``size`` square."""
    box = Letterbox.fit(gray.shape[:2], size)
    out = np.zeros((size, size), dtype=np.float32)
    resized = cv2.resize(gray.astype(np.float32), (box.cols, box.rows), interpolation=cv2.INTER_AREA)
    out[box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols] = resized
    return out, box


def normalize_input(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Standardise a gray image (0–255) with the mean and SD of its ``valid`` pixels.

    Padding (outside ``valid``) is set to what black would become, as the
    letterboxing of real scanner crops leaves black margins.
    """
    img = image.astype(np.float32) / 255.0
    pixels = img[valid] if valid.any() else img.ravel()
    mean = float(pixels.mean())
    sd = max(float(pixels.std()), MIN_INPUT_SD)
    out = (img - mean) / sd
    out[~valid] = (0.0 - mean) / sd
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------


class NerveNet:
    """The ONNX segmentation network, loaded with :func:`cv2.dnn.readNetFromONNX`.

    Parameters
    ----------
    path : path to the ``.onnx`` file; its JSON metadata (input size,
        version, validation figures) is read from :func:`metadata_path`.

    Raises
    ------
    FileNotFoundError
        The model file does not exist.
    ValueError
        OpenCV cannot read it.
    """

    #: What the network finds, for messages.
    what = "nerve"

    def __init__(self, path: str | Path = DEFAULT_MODEL_PATH) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.what} model not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        meta_file = metadata_path(self.path)
        self.metadata: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.input_size = int(self.metadata.get("input_size", 192))
        self.model_version = str(self.metadata.get("model_version", "unversioned"))
        self._lock = threading.Lock()
        self._net = self._load()

    def _load(self) -> cv2.dnn.Net:
        try:
            net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot read the {self.what} model {self.path}: {exc}") from None
        return net  # OpenCV's own CPU backend (the default)

    # cv2.dnn.Net does not pickle: worker processes reload the file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_net", None)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._net = self._load()

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of the model file's SHA-256."""
        return self.sha256[:12]

    def logits(self, blob: np.ndarray) -> np.ndarray:
        """Raw network output ``(1, 3, S, S)`` for an input blob ``(1, 1, S, S)``."""
        with self._lock:
            self._net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
            return np.asarray(self._net.forward())

    def probabilities(self, gray: np.ndarray) -> np.ndarray:
        """Class probabilities ``(3, h, w)`` (float32) for a gray crop of shape ``(h, w)``."""
        size = self.input_size
        square, box = letterbox(gray, size)
        blob = normalize_input(square, box.valid_mask())[None, None]
        logits = self.logits(blob)[0]
        logits = logits - logits.max(axis=0, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=0, keepdims=True)
        prob = prob[:, box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols]
        h, w = gray.shape[:2]
        # cv2.resize takes up to 4 channels as (rows, cols, channels).
        full = cv2.resize(np.ascontiguousarray(prob.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(full.transpose(2, 0, 1))


# --------------------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRegion:
    """One connected region of a class, in crop coordinates.

    Attributes
    ----------
    label : int
        1 nerve, 2 vessel.
    mask : ndarray of bool, crop shape
        The region's pixels.
    contour_px : ndarray (N, 2)
        Sub-pixel outline ``(x, y)`` on the decision boundary, crop pixels.
    area_px : float
        Pixel count.
    probability : float
        Mean probability of the class over the region.
    """

    label: int
    mask: np.ndarray = field(repr=False)
    contour_px: np.ndarray = field(repr=False)
    area_px: float
    probability: float

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(xs.mean()), float(ys.mean())

    @property
    def equivalent_radius_px(self) -> float:
        return math.sqrt(self.area_px / math.pi)


def _region_contour(margin: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """Sub-pixel outline of ``mask`` on the zero level of ``margin`` (both crop-sized)."""
    ys, xs = np.nonzero(mask)
    pad = 3
    y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad + 1)
    sub_mask = mask[y0:y1, x0:x1]
    # Holes (dark fascicles the network called background) belong to the nerve.
    filled = np.zeros_like(sub_mask, dtype=np.uint8)
    outer, _ = cv2.findContours(sub_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, outer, -1, 1, thickness=-1)
    near = cv2.dilate(filled, np.ones((3, 3), np.uint8)).astype(bool)
    sub = np.where(near, margin[y0:y1, x0:x1], -1.0)
    sub = np.where(filled.astype(bool), np.maximum(sub, 1e-3), sub)
    sub = np.pad(sub, 1, constant_values=-1.0)
    lines = find_contours(sub, 0.0)
    if not lines:
        return None
    line = max(lines, key=len)
    if len(line) < 4:
        return None
    if np.allclose(line[0], line[-1]):
        line = line[:-1]
    # (row, col) of the padded sub-image -> (x, y) of the crop
    return np.column_stack([line[:, 1] - 1 + x0, line[:, 0] - 1 + y0])


def label_regions(prob: np.ndarray, label: int, min_area_px: float) -> list[LabelRegion]:
    """Connected regions where ``label`` is the most probable class, largest evidence first."""
    labels = np.argmax(prob, axis=0)
    mask = (labels == label).astype(np.uint8)
    count, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    others = np.delete(prob, label, axis=0).max(axis=0)
    margin = prob[label] - others
    regions = []
    for k in range(1, count):
        if stats[k, cv2.CC_STAT_AREA] < min_area_px:
            continue
        region_mask = comp == k
        contour = _region_contour(margin, region_mask)
        if contour is None or len(contour) < 8:
            continue
        regions.append(
            LabelRegion(
                label=label,
                mask=region_mask,
                contour_px=contour,
                area_px=float(stats[k, cv2.CC_STAT_AREA]),
                probability=float(prob[label][region_mask].mean()),
            )
        )
    regions.sort(key=lambda r: r.probability * r.area_px, reverse=True)
    return regions


@dataclass(frozen=True)
class LearnedFrame:
    """The network's view of one tissue region (crop coordinates)."""

    crop: Crop
    probabilities: np.ndarray = field(repr=False)
    nerves: tuple[LabelRegion, ...]
    min_area_px: float = 0.0

    @property
    def vessel_mask(self) -> np.ndarray:
        return np.argmax(self.probabilities, axis=0) == VESSEL

    @property
    def vessels(self) -> tuple[LabelRegion, ...]:
        """The vessel regions (computed on demand: the nerve path does not need their outlines)."""
        return tuple(label_regions(self.probabilities, VESSEL, self.min_area_px))


def _fill_excluded(roi: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
    if excluded is None or not excluded.any():
        return roi
    out = roi.copy()
    out[excluded] = np.median(roi[~excluded]) if (~excluded).any() else 0
    return out


def _nan_features(interior_to_surround: float = float("nan")) -> RimFeatures:
    nan = float("nan")
    return RimFeatures(
        rim_coverage=nan,
        rim_prominence=nan,
        rim_prominence_low=nan,
        interior_to_surround=interior_to_surround,
        rim_width_px=nan,
        psf_fwhm_px=nan,
    )


def _interior_to_surround(roi: np.ndarray, mask: np.ndarray) -> float:
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~mask
    if not ring.any() or not mask.any():
        return float("nan")
    return float(roi[mask].mean()) / max(float(roi[ring].mean()), 1.0)


# --------------------------------------------------------------------------------------
# Segmenters
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedNerveParameters:
    """Settings of the learned segmenter that affect results (recorded in the SR).

    Attributes
    ----------
    min_region_fraction : float
        Smallest nerve region, as a share of the tissue region's area.
    min_region_mm2 : float
        Smallest nerve region in mm² (calibrated frames only).
    max_nerves : int
        Most nerve regions reported per frame.
    min_confidence : float
        Floor of the calibrated confidence: a nerve below it is not
        reported; a frame whose every candidate lies below it is refused
        with the reason (:func:`pipeline.analysis.analyze_frame`).
    """

    min_region_fraction: float = 0.0015
    min_region_mm2: float = 0.8
    max_nerves: int = 6
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1], not {self.min_confidence}")

    def as_dict(self) -> dict[str, float | int | str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _model_parameters(net: NerveNet) -> dict[str, str | int]:
    return {
        "model": net.path.name,
        "model_version": net.model_version,
        "model_sha256": net.short_hash,
        "model_input_size": net.input_size,
        "model_runtime": f"opencv-dnn {cv2.__version__}",
    }


@dataclass(frozen=True)
class ConfidenceCalibration:
    """Monotone map from a region's mean nerve probability to the hit rate seen on the validation split.

    Fitted by :mod:`training.calibrate_nerve_confidence` (isotonic regression)
    and stored in the model's JSON as ``confidence_calibration``; without it
    the raw probability is the confidence.
    """

    raw_upper: tuple[float, ...] = ()
    hit_rate: tuple[float, ...] = ()

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ConfidenceCalibration:
        record = metadata.get("confidence_calibration") or {}
        upper = tuple(float(v) for v in record.get("raw_upper", ()))
        rate = tuple(float(v) for v in record.get("hit_rate", ()))
        if len(upper) != len(rate):
            raise ValueError("confidence_calibration: raw_upper and hit_rate differ in length")
        return cls(upper, rate)

    @property
    def fitted(self) -> bool:
        return bool(self.raw_upper)

    def __call__(self, raw: float) -> float:
        if not self.fitted:
            return float(np.clip(raw, 0.0, 1.0))
        return float(np.clip(np.interp(raw, self.raw_upper, self.hit_rate), 0.0, 1.0))


class _ParameterView:
    """``parameters.as_dict()`` for the SR: the model's identity plus the settings."""

    def __init__(self, *parts: dict[str, Any]) -> None:
        self._values: dict[str, Any] = {}
        for part in parts:
            self._values.update(part)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None


class LearnedNerveSegmenter:
    """Nerves as the network's connected nerve regions (no rim model).

    Parameters
    ----------
    net : NerveNet or path
        The network (default: the shipped model).
    parameters : LearnedNerveParameters, optional
    """

    name = "mskus-learned-nerve"

    def __init__(
        self,
        net: NerveNet | str | Path | None = None,
        parameters: LearnedNerveParameters | None = None,
        *,
        calibrate: bool = True,
    ) -> None:
        self.net = net if isinstance(net, NerveNet) else NerveNet(net or DEFAULT_MODEL_PATH)
        self.settings = parameters or LearnedNerveParameters()
        self.calibration = ConfidenceCalibration.from_metadata(self.net.metadata) if calibrate else ConfidenceCalibration()
        calibration_note = {"confidence": "calibrated on the validation split" if self.calibration.fitted else "raw"}
        self.parameters = _ParameterView(_model_parameters(self.net), self.settings.as_dict(), calibration_note)

    @property
    def min_confidence(self) -> float:
        """Floor of the reported confidence (see :class:`LearnedNerveParameters`)."""
        return self.settings.min_confidence

    def confidence(self, region: LabelRegion) -> float:
        """Calibrated confidence of a nerve region (hit rate of such regions on the validation split)."""
        return self.calibration(region.probability)

    @property
    def version(self) -> str:
        """The model: file stem, version and the first 12 hex digits of the ONNX file's SHA-256."""
        return f"{self.net.path.stem} {self.net.model_version} sha256:{self.net.short_hash}"

    def min_area_px(self, box: PixelBox, mm_per_px: float | None) -> float:
        s = self.settings
        area = s.min_region_fraction * box.width * box.height
        if mm_per_px:
            area = max(area, s.min_region_mm2 / (mm_per_px * mm_per_px))
        return area

    def analyze(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None = None,
        exclude: np.ndarray | None = None,
    ) -> LearnedFrame:
        """Run the network on the tissue region; nerve and vessel regions in crop pixels."""
        crop = Crop(tissue_box)
        roi = crop.apply(gray)
        excluded = crop.apply(exclude) if exclude is not None else None
        prob = self.net.probabilities(_fill_excluded(roi, excluded))
        min_area = self.min_area_px(tissue_box, mm_per_px)
        nerves = label_regions(prob, NERVE, min_area)[: self.settings.max_nerves]
        return LearnedFrame(crop=crop, probabilities=prob, nerves=tuple(nerves), min_area_px=min_area)

    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Every nerve region, best first. See :class:`~pipeline.segmentation.base.NerveSegmenter`."""
        frame = self.analyze(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude)
        roi = frame.crop.apply(gray).astype(np.float32)
        out = []
        for region in frame.nerves:
            contour = frame.crop.to_frame(region.contour_px)
            out.append(
                NerveSegmentation(
                    contour_px=contour,
                    ridge_px=contour.copy(),
                    confidence=self.confidence(region),
                    features=_nan_features(_interior_to_surround(roi, region.mask)),
                )
            )
        out.sort(key=lambda seg: -seg.confidence)
        return out


@dataclass(frozen=True)
class AutoNerveParameters:
    """Settings of the learned-proposal / classical-border segmenter.

    Attributes
    ----------
    search_box_factor : float
        Half-size of the box the tracer works on around a proposal, in
        equivalent radii; 0 (default): the whole tissue region, so the blur
        and noise are estimated exactly as the classical segmenter does.
    radius_range : (float, float)
        Rim radii the classical tracer may look at, relative to the proposal's
        equivalent radius.
    uncalibrated_radius_mm : float
        Working scale on uncalibrated frames: the proposal's equivalent radius
        is taken to be this many mm for the tracer's size priors (no mm value
        is derived from it).
    min_agreement : float
        Smallest Dice between the traced contour and the proposal for the
        traced border to be used ...
    min_inside, min_area_ratio : float
        ... or: at least ``min_inside`` of the traced area inside the
        proposal and at least ``min_area_ratio`` of the proposal's area (a
        generous proposal around a well-traced rim).
    keep_unrefined : bool
        Report a proposal whose border could not be traced with the
        network's outline (confidence halved); otherwise drop it.
    max_vessel_overlap : float
        A contour with more than this share of its area on pixels the network
        calls vessel is not reported.
    classical_fallback : bool
        When the network finds no nerve, report what the classical
        segmenter finds on the whole tissue region (subject to the vessel
        check).
    """

    search_box_factor: float = 0.0
    radius_range: tuple[float, float] = (0.6, 1.5)
    uncalibrated_radius_mm: float = 2.0
    min_agreement: float = 0.6
    min_inside: float = 0.85
    min_area_ratio: float = 0.25
    keep_unrefined: bool = True
    max_vessel_overlap: float = 0.2
    classical_fallback: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class _ProposalTracer(ClassicalNerveSegmenter):
    """The classical segmenter with its ring-filter candidates replaced by one proposal ``(x, y, r)``."""

    proposal: tuple[float, float, float] = (0.0, 0.0, 0.0)
    used = False

    def _candidates(self, smooth: np.ndarray, scale: float) -> list[tuple[float, float, float]]:
        self.used = True
        return [self.proposal]


class AutoNerveSegmenter:
    """Learned proposals, border by the classical rim tracer (CONTRACT.md section 4).

    For each nerve region of the network, the classical segmenter's rim
    tracing (dynamic-programming ridge, blur-corrected rim width, border half
    a rim width inside the ridge) runs from the region's centroid and
    equivalent radius, on a box around the region, in place of its
    ring-filter candidates; its contour is used when it agrees with the
    region. Nerve contours lying on what the network calls vessel are
    dropped, so a vessel is never reported as a nerve.

    Parameters
    ----------
    learned : LearnedNerveSegmenter or NerveNet or path
    parameters : AutoNerveParameters, optional
    classical_parameters : ClassicalNerveParameters, optional
        Base parameters of the classical tracer.
    """

    name = "mskus-auto-nerve"

    def __init__(
        self,
        learned: LearnedNerveSegmenter | NerveNet | str | Path | None = None,
        parameters: AutoNerveParameters | None = None,
        classical_parameters: ClassicalNerveParameters | None = None,
    ) -> None:
        self.learned = learned if isinstance(learned, LearnedNerveSegmenter) else LearnedNerveSegmenter(learned)
        self.settings = parameters or AutoNerveParameters()
        self.classical_parameters = classical_parameters or ClassicalNerveParameters()
        self.classical = ClassicalNerveSegmenter(self.classical_parameters)
        classical_items = {f"classical.{k}": v for k, v in self.classical_parameters.as_dict().items()}
        self.parameters = _ParameterView(
            _model_parameters(self.learned.net),
            self.learned.settings.as_dict(),
            {f"auto.{k}": v for k, v in self.settings.as_dict().items()},
            classical_items,
        )
        self.last_stats: dict[str, int] = {}

    @property
    def version(self) -> str:
        return self.learned.version

    @property
    def net(self) -> NerveNet:
        return self.learned.net

    @property
    def min_confidence(self) -> float:
        return self.learned.min_confidence

    def segment(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        *,
        mm_per_px: float | None,
        exclude: np.ndarray | None = None,
    ) -> list[NerveSegmentation]:
        """Refined nerve contours, best first. See :class:`~pipeline.segmentation.base.NerveSegmenter`."""
        s = self.settings
        frame = self.learned.analyze(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude)
        crop = frame.crop
        vessel = frame.vessel_mask
        roi = crop.apply(gray).astype(np.float32)
        stats = {"proposals": len(frame.nerves), "refined": 0, "unrefined": 0, "vessel_dropped": 0, "fallback": 0}
        out: list[NerveSegmentation] = []
        taken: list[np.ndarray] = []

        def accept(seg: NerveSegmentation, mask: np.ndarray) -> bool:
            if mask.sum() == 0:
                return False
            if float((mask & vessel).sum()) / float(mask.sum()) > s.max_vessel_overlap:
                stats["vessel_dropped"] += 1
                return False
            if any(dice_coefficient(mask, other) > 0.3 for other in taken):
                return False
            taken.append(mask)
            out.append(seg)
            return True

        for region in frame.nerves:
            refined = self._refine(gray, tissue_box, region, crop, mm_per_px, exclude)
            if refined is not None:
                seg_crop_mask, seg = refined
                if accept(seg, seg_crop_mask):
                    stats["refined"] += 1
                continue
            if not s.keep_unrefined:
                continue
            contour = crop.to_frame(region.contour_px)
            seg = NerveSegmentation(
                contour_px=contour,
                ridge_px=contour.copy(),
                confidence=0.5 * self.learned.confidence(region),
                features=_nan_features(_interior_to_surround(roi, region.mask)),
            )
            if accept(seg, region.mask):
                stats["unrefined"] += 1
        if not out and s.classical_fallback:
            for seg in self.classical.segment(gray, tissue_box, mm_per_px=mm_per_px, exclude=exclude):
                mask = polygon_mask(crop.from_frame(seg.contour_px), roi.shape)
                nerve_prob = float(frame.probabilities[NERVE][mask].mean()) if mask.any() else 0.0
                scaled = dataclasses.replace(seg, confidence=float(seg.confidence) * 0.5 * (1.0 + nerve_prob))
                if accept(scaled, mask):
                    stats["fallback"] += 1
        self.last_stats = stats
        return out

    def _refine(
        self,
        gray: np.ndarray,
        tissue_box: PixelBox,
        region: LabelRegion,
        crop: Crop,
        mm_per_px: float | None,
        exclude: np.ndarray | None,
    ) -> tuple[np.ndarray, NerveSegmentation] | None:
        """Classical rim trace around one proposal; ``None`` when it fails or disagrees."""
        s = self.settings
        r_eq = region.equivalent_radius_px
        cx, cy = crop.to_frame(np.array([region.centroid]))[0]
        ys, xs = np.nonzero(region.mask)
        half_extent = 0.5 * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        if s.search_box_factor > 0:
            half = max(s.search_box_factor * r_eq, 1.25 * half_extent + 0.6 * r_eq)
            sub = PixelBox(
                max(tissue_box.x0, int(math.floor(cx - half))),
                max(tissue_box.y0, int(math.floor(cy - half))),
                min(tissue_box.x1, int(math.ceil(cx + half))),
                min(tissue_box.y1, int(math.ceil(cy + half))),
            )
        else:  # the whole tissue region: blur and noise estimated as the classical segmenter does
            sub = tissue_box
        if sub.width < 16 or sub.height < 16:
            return None
        scale = mm_per_px if mm_per_px else s.uncalibrated_radius_mm / max(r_eq, 1.0)
        r_mm = r_eq * scale
        try:
            params = dataclasses.replace(
                self.classical_parameters,
                min_radius_mm=s.radius_range[0] * r_mm,
                max_radius_mm=s.radius_range[1] * r_mm,
            )
        except (TypeError, ValueError):  # parameters renamed: keep the base ones
            params = self.classical_parameters
        tracer = _ProposalTracer(params, keep_rejected=True)
        # The rim lies just outside the nerve: start the ridge search at the region's radius.
        tracer.proposal = (cx - sub.x0, cy - sub.y0, r_eq)
        try:
            found = tracer.segment(gray, sub, mm_per_px=scale, exclude=exclude)
        except (ValueError, cv2.error, IndexError, ZeroDivisionError) as exc:
            logger.debug("classical refinement failed: %s", exc)
            return None
        if not tracer.used:
            logger.warning("the classical segmenter no longer takes proposals: learned contours used unrefined")
            return None
        if not found:
            return None
        seg = found[0]
        contour_crop = crop.from_frame(seg.contour_px)
        if polygon_area(contour_crop) < 4:
            return None
        mask = polygon_mask(contour_crop, region.mask.shape)
        area = float(mask.sum())
        inside = float((mask & region.mask).sum()) / max(area, 1.0)
        agrees = dice_coefficient(mask, region.mask) >= s.min_agreement or (
            inside >= s.min_inside and area >= s.min_area_ratio * region.area_px
        )
        if not agrees:
            return None
        return mask, dataclasses.replace(seg, confidence=self.learned.confidence(region))
