"""The study's derived values (issue 18): wrist-to-forearm ratio, ΔCSA, right minus left, sites enlarged.

Read from the SR's study-level groups (:mod:`pipeline.sr.findings`: one TID
1501 group per finding of ``findings.csv``, no image of its own): the value
with its Normality and Normal Range, the structure, level and side, the
inputs it was computed from ("Derived from"), the enlargement pattern and the
reference note. They are reviewable findings like the others (a decision each).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.sr import codes
from pipeline.sr.codes import concept_key
from pipeline.sr.reader import MeasurementGroup
from qa_review.flags import ValueFlag, flag_of
from qa_review.items import ReviewableReport

__all__ = ["StudyFindingView", "is_study_finding", "study_findings"]

_INPUTS = concept_key(codes.FINDING_INPUTS)
_PATTERN = concept_key(codes.ENLARGEMENT_PATTERN)
_NOTES = {concept_key(codes.REFERENCE_NOTE), concept_key(codes.REFERENCE_NOT_APPLIED)}
_SIDES = {"right": "R", "left": "L", "right and left": "R−L"}


@dataclass(frozen=True)
class StudyFindingView:
    """One derived value of the study.

    Attributes
    ----------
    finding_id : str
        ``g<n>`` of the document under review (its decision's name).
    name : str
        What it is, readable ("wrist to forearm ratio", "right minus left").
    measure : str
        The SR concept ("CSA ratio between levels").
    value : float or None
    unit : str
        UCUM unit.
    flag : ValueFlag
        Against its reference (``none`` with the reason when there is none).
    structure, level, side : str
        Where (side ``R``, ``L`` or ``R−L``; empty when not one side).
    inputs : str
        The values it was computed from, as the SR names them.
    pattern : str
        For sites enlarged: focal, multifocal, diffuse or none.
    note : str
        The SR's reference note for it.
    """

    finding_id: str
    name: str
    measure: str
    value: float | None
    unit: str
    flag: ValueFlag
    structure: str = ""
    level: str = ""
    side: str = ""
    inputs: str = ""
    pattern: str = ""
    note: str = ""

    @property
    def value_text(self) -> str:
        """The value as shown (4 significant digits, with its unit)."""
        if self.value is None:
            return "—"
        unit = {"mm2": "mm²", "1": ""}.get(self.unit, self.unit)
        return f"{self.value:.4g} {unit}".strip()


def is_study_finding(group: MeasurementGroup) -> bool:
    """A study-level group: values but no image, region or source of its own."""
    return bool(group.measurements) and not group.images and not group.regions


def _view(finding_id: str, group: MeasurementGroup) -> StudyFindingView:
    measurement = group.measurements[0]
    texts = {e.name.key: e.value for e in group.evaluations}
    inputs = texts.get(_INPUTS, "")
    key, sep, rest = inputs.partition(":")
    name = key.strip().replace("_", " ") if sep and " " not in key.strip() else str(measurement.name)
    site = group.finding_sites[0] if group.finding_sites else None
    side = str(site.laterality).lower() if site is not None and site.laterality is not None else ""
    return StudyFindingView(
        finding_id=finding_id,
        name=name,
        measure=str(measurement.name),
        value=measurement.value,
        unit=measurement.unit.value if measurement.unit is not None else "",
        flag=flag_of(measurement, group),
        structure=str(site.site) if site is not None else "",
        level=str(site.modifier) if site is not None and site.modifier is not None else "",
        side=_SIDES.get(side, ""),
        inputs=rest.strip() if sep else inputs,
        pattern=texts.get(_PATTERN, ""),
        note=next((e.value for e in group.evaluations if e.name.key in _NOTES), ""),
    )


def study_findings(reviewable: ReviewableReport) -> tuple[StudyFindingView, ...]:
    """Every study-level finding of the document, in document order."""
    return tuple(
        _view(f"g{index + 1}", group)
        for index, group in enumerate(reviewable.report.groups)
        if is_study_finding(group)
    )
