"""The reference flag of one value, as its SR states it (issue 18; decision support, not diagnosis).

Read from the SR, so it works alike on an OUT_DIR and on a node archive: a
flagged NUM carries Normality (CID 222) and its Normal Range (TID 312: the
limits, and a description naming the interval and its source) and, for a
z-score model, the z-score with the population mean and SD (TID 311). A value
without a reference carries none of these; for the values that usually have
one (CSA, thickness, echogenicity mean) the group then holds a TEXT
"Reference not applied" saying why (``<measurement>: <reason>``).

The flag words are those of ``measurements.csv`` (CONTRACT.md section 2):
Normality "Abnormally High" is *enlarged* for a limit (nerve CSA, study
findings) and *increased* for a z-score model; "Abnormally Low" is *reduced*
or *decreased* alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.reference.flags import DECISION_SUPPORT_NOTE
from pipeline.sr import codes
from pipeline.sr.codes import concept_key
from pipeline.sr.reader import MeasurementGroup, NumericMeasurement

__all__ = ["ABNORMAL_FLAGS", "DECISION_SUPPORT_NOTE", "ValueFlag", "flag_of"]

#: Flags of a value outside its reference.
ABNORMAL_FLAGS = frozenset({"enlarged", "reduced", "increased", "decreased"})

_NORMAL = concept_key(codes.NORMAL)
_HIGH = concept_key(codes.ABNORMALLY_HIGH)
_LOW = concept_key(codes.ABNORMALLY_LOW)
_NOT_APPLIED = concept_key(codes.REFERENCE_NOT_APPLIED)
#: ``measurements.csv`` name -> the reader's label, for the values whose missing reference the SR explains.
_LABEL_OF_TABLE_NAME = {
    "cross_sectional_area": "Area",
    "thickness": "Thickness",
    "echogenicity_mean": "Echogenicity (Mean)",
}
_NO_REFERENCE = "no reference table covers this value"


@dataclass(frozen=True)
class ValueFlag:
    """A value against its reference.

    Attributes
    ----------
    flag : str
        normal, enlarged, reduced, increased, decreased or none.
    low, high : float or None
        The normal range's limits (either may be open).
    unit : str
        UCUM unit of the limits.
    description : str
        The SR's Normal Range description (interval and source).
    z_score : float or None
        Where a z-score model applies.
    population_mean, population_sd : float or None
        The model's mean and SD at the patient's covariates.
    reason : str
        For ``none``: why there is no reference.
    """

    flag: str
    low: float | None = None
    high: float | None = None
    unit: str = ""
    description: str = ""
    z_score: float | None = None
    population_mean: float | None = None
    population_sd: float | None = None
    reason: str = ""

    @property
    def abnormal(self) -> bool:
        """Outside the reference."""
        return self.flag in ABNORMAL_FLAGS

    @property
    def interval_text(self) -> str:
        """``≤ 11 mm²``, ``≥ 1.4``, ``8–13 mm``; empty when no limit is known."""
        unit = {"mm2": "mm²", "1": ""}.get(self.unit, self.unit)
        if self.low is not None and self.high is not None:
            text = f"{self.low:.4g}–{self.high:.4g}"
        elif self.high is not None:
            text = f"≤ {self.high:.4g}"
        elif self.low is not None:
            text = f"≥ {self.low:.4g}"
        elif self.population_mean is not None and self.population_sd is not None:
            text = f"mean {self.population_mean:.4g} ± {self.population_sd:.4g} SD"
        else:
            return ""
        return f"{text} {unit}".strip()

    @property
    def source(self) -> str:
        """Where the reference comes from (the description after ``Source:``; else the whole description)."""
        head, sep, tail = self.description.partition("Source:")
        return (tail if sep else head).strip()

    @property
    def z_text(self) -> str:
        """``z = +2.31`` (empty without a z-score)."""
        return "" if self.z_score is None else f"z = {self.z_score:+.2f}"


def _word(normality_key: tuple[str, str] | None, z_model: bool) -> str:
    if normality_key == _NORMAL:
        return "normal"
    if normality_key == _HIGH:
        return "increased" if z_model else "enlarged"
    if normality_key == _LOW:
        return "decreased" if z_model else "reduced"
    return "none"


def _not_applied_reason(group: MeasurementGroup | None, label: str) -> str:
    if group is None:
        return ""
    for evaluation in group.evaluations:
        if evaluation.name.key != _NOT_APPLIED:
            continue
        name, sep, reason = evaluation.value.partition(":")
        if not sep:
            continue
        if _LABEL_OF_TABLE_NAME.get(name.strip()) == label or name.strip() == label:
            return reason.strip()
    return ""


def flag_of(measurement: NumericMeasurement, group: MeasurementGroup | None = None) -> ValueFlag:
    """The flag of one NUM item (``none`` with the reason when it has no reference)."""
    unit = measurement.unit.value if measurement.unit is not None else ""
    z_model = measurement.z_score is not None or measurement.population_mean is not None
    word = _word(measurement.normality.key if measurement.normality is not None else None, z_model)
    if word == "none":
        reason = "no value" if measurement.value is None else (_not_applied_reason(group, measurement.label) or _NO_REFERENCE)
        return ValueFlag(flag="none", unit=unit, reason=reason)
    return ValueFlag(
        flag=word,
        low=measurement.normal_range_low,
        high=measurement.normal_range_high,
        unit=unit,
        description=measurement.normal_range_description,
        z_score=measurement.z_score,
        population_mean=measurement.population_mean,
        population_sd=measurement.population_sd,
    )
