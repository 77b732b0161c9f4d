"""Convert decoded DICOM frames to the 8-bit grayscale image the pipeline measures.

Conventions (CONTRACT.md section 4): echogenicity is the gray value of the
8-bit B-mode image, RGB/YBR converted to luma (ITU-R BT.601:
0.299 R + 0.587 G + 0.114 B). PALETTE COLOR goes through its lookup table
first. MONOCHROME1 is inverted so that bright means echogenic. Samples with
more than 8 bits are scaled linearly from their Bits Stored range to 0–255.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from pipeline.errors import UnsupportedPhotometricError

__all__ = [
    "COLOR_PHOTOMETRICS",
    "GRAY_PHOTOMETRICS",
    "DisplayFrame",
    "check_photometric",
    "to_display_frame",
]

GRAY_PHOTOMETRICS = frozenset({"MONOCHROME1", "MONOCHROME2"})
#: Colour interpretations that pydicom decodes to RGB (raw=False).
COLOR_PHOTOMETRICS = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_ICT", "YBR_RCT"}
)
PALETTE = "PALETTE COLOR"


@dataclass(frozen=True)
class DisplayFrame:
    """One frame as displayed: 8-bit gray (luma) and, for colour data, 8-bit RGB."""

    gray: np.ndarray
    color: np.ndarray | None


def check_photometric(ds: Dataset) -> str:
    """Return the Photometric Interpretation, refusing what cannot be converted.

    Raises
    ------
    UnsupportedPhotometricError
        Unknown interpretation, or one whose Samples per Pixel does not fit.
    """
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if photometric in GRAY_PHOTOMETRICS or photometric == PALETTE:
        expected = 1
    elif photometric in COLOR_PHOTOMETRICS:
        expected = 3
    else:
        shown = photometric or "missing"
        raise UnsupportedPhotometricError(f"unsupported Photometric Interpretation {shown}")
    if samples != expected:
        raise UnsupportedPhotometricError(
            f"Photometric Interpretation {photometric} with {samples} samples per pixel (expected {expected})"
        )
    bits = int(ds.get("BitsAllocated", 8) or 8)
    if bits not in (8, 16) and not (bits == 32 and photometric in GRAY_PHOTOMETRICS):
        raise UnsupportedPhotometricError(f"unsupported Bits Allocated {bits} for {photometric}")
    return photometric


def _scale_to_uint8(arr: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Linear map of the Bits Stored range to 0–255."""
    if arr.dtype == np.uint8:
        return arr
    bits_stored = max(1, min(bits_stored, 32))
    low = -(2 ** (bits_stored - 1)) if signed else 0
    span = float(2**bits_stored - 1)
    # float32 for one frame at a time only: never the whole cine.
    scaled = (arr.astype(np.float32) - low) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _palette_to_rgb8(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    rgb = apply_color_lut(arr, ds)
    if rgb.dtype == np.uint8:
        return rgb
    # 16-bit LUT entries; some writers put 8-bit values in a 16-bit LUT.
    if int(rgb.max(initial=0)) > 255:
        return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    return rgb.astype(np.uint8)


def to_display_frame(arr: np.ndarray, ds: Dataset, photometric: str) -> DisplayFrame:
    """Convert one decoded frame (pydicom, ``raw=False``) to gray + colour.

    Parameters
    ----------
    arr : ndarray
        One frame as decoded by pydicom: ``(rows, columns)`` for gray and
        palette data, ``(rows, columns, 3)`` RGB for colour data.
    ds : Dataset
        The image dataset (Bits Stored, Pixel Representation, palette LUTs).
    photometric : str
        Output of :func:`check_photometric`.

    Returns
    -------
    DisplayFrame
        ``gray`` uint8 ``(rows, columns)``; ``color`` uint8 RGB or ``None``.
    """
    bits_stored = int(ds.get("BitsStored", 8) or 8)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if photometric in GRAY_PHOTOMETRICS:
        if arr.ndim != 2:
            raise UnsupportedPhotometricError(f"{photometric} frame with shape {arr.shape}")
        gray = _scale_to_uint8(arr, bits_stored, signed)
        if photometric == "MONOCHROME1":
            gray = 255 - gray
        return DisplayFrame(gray=np.ascontiguousarray(gray), color=None)
    if photometric == PALETTE:
        rgb = _palette_to_rgb8(arr, ds)
    else:
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise UnsupportedPhotometricError(f"{photometric} frame with shape {arr.shape}")
        rgb = _scale_to_uint8(arr, bits_stored, signed)
    rgb = np.ascontiguousarray(rgb)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return DisplayFrame(gray=gray, color=rgb)
