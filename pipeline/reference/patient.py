"""What a z-score model needs to know about the patient and the scanner.

:class:`Covariates` (age, sex, height, weight) and :class:`DeviceIdentity`
(model name, transducer, preset) are read from an image header by
:func:`covariates_from_header` and :func:`device_from_header`; a missing or
unreadable value stays ``None`` / ``""`` (the z-score is then not computed,
with the reason), never guessed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pydicom.dataset import Dataset

__all__ = ["Covariates", "DeviceIdentity", "covariates_from_header", "device_from_header"]

_AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}


@dataclass(frozen=True)
class Covariates:
    """Patient covariates of the z-score models.

    Attributes
    ----------
    age_years : float or None
        Age at the study, years.
    male : float or None
        1.0 male, 0.0 female; ``None`` unknown (or sex ``O``).
    height_cm : float or None
        Height, cm.
    weight_kg : float or None
        Weight, kg.
    """

    age_years: float | None = None
    male: float | None = None
    height_cm: float | None = None
    weight_kg: float | None = None

    def value(self, name: str) -> float | None:
        """The covariate called ``name`` (one of :data:`pipeline.reference.tables.COVARIATES`)."""
        return getattr(self, name)


@dataclass(frozen=True)
class DeviceIdentity:
    """The scanner an image was made on, as z-score models name it.

    Attributes
    ----------
    model_name : str
        Manufacturer Model Name (0008,1090).
    transducer : str
        First value of Transducer Data (0018,5010).
    preset : str
        The scanner preset, as the run's settings name it (no standard DICOM attribute holds it).
    """

    model_name: str = ""
    transducer: str = ""
    preset: str = ""

    def describe(self) -> str:
        parts = [self.model_name or "unknown device"]
        if self.transducer:
            parts.append(f"transducer {self.transducer}")
        if self.preset:
            parts.append(f"preset {self.preset}")
        return ", ".join(parts)


def _float(value: object) -> float | None:
    try:
        number = float(str(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _age(header: Dataset) -> float | None:
    text = str(header.get("PatientAge", "") or "").strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] in _AGE_UNITS:
        return int(text[:3]) * _AGE_UNITS[text[3]]
    birth, study = str(header.get("PatientBirthDate", "") or ""), str(header.get("StudyDate", "") or "")
    try:
        born = dt.datetime.strptime(birth[:8], "%Y%m%d").date()
        seen = dt.datetime.strptime(study[:8], "%Y%m%d").date()
    except ValueError:
        return None
    days = (seen - born).days
    return days / 365.25 if days >= 0 else None


def covariates_from_header(header: Dataset) -> Covariates:
    """Age (Patient's Age, else birth and study dates), sex, height (Patient's Size, m -> cm) and weight (kg)."""
    sex = str(header.get("PatientSex", "") or "").strip().upper()
    height_m = _float(header.get("PatientSize"))
    return Covariates(
        age_years=_age(header),
        male={"M": 1.0, "F": 0.0}.get(sex),
        height_cm=height_m * 100.0 if height_m is not None else None,
        weight_kg=_float(header.get("PatientWeight")),
    )


def device_from_header(header: Dataset, *, preset: str = "") -> DeviceIdentity:
    """Manufacturer Model Name and the first Transducer Data value; ``preset`` from the run's settings."""
    transducer = header.get("TransducerData")
    if transducer is None or isinstance(transducer, str):
        first = transducer or ""
    else:  # multi-valued LO
        first = transducer[0] if len(transducer) else ""
    return DeviceIdentity(
        model_name=" ".join(str(header.get("ManufacturerModelName", "") or "").split()),
        transducer=" ".join(str(first or "").split()),
        preset=" ".join(preset.split()),
    )
