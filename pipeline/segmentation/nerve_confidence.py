"""Calibrated confidence of a learned nerve region (the hit rate seen on the validation split)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ConfidenceCalibration"]


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
