"""Corrected values read again against the reference tables, and the study findings recomputed.

A verified SR must not keep what the analysis said about values the reviewer
changed or removed:

- **Flags of a corrected value** (issue 18 content on an issue 21 correction):
  each NUM of a corrected group is judged again by the pipeline's own
  :func:`pipeline.reference.read_value` with the tables the review server was
  started with (``mskus review --reference/--preset``; loaded once at the entry
  point, passed in as :class:`ReferenceContext`, never read here) and the
  patient and device from the source image header
  (:func:`~pipeline.reference.covariates_from_header`,
  :func:`~pipeline.reference.device_from_header`). The NUM's old Normality,
  Normal Range and z-score (TID 310 / 311 / 312) are replaced by those of the
  new reading (:func:`pipeline.sr.items.reference_properties`); a value without
  a reference carries none and, for the values that usually have one, the
  group says why ("Reference not applied", as the analysis writes it).
- **Study findings** (TID 1501 groups of :mod:`pipeline.sr.findings`): after a
  rejection or correction of an image finding, the rows of the accepted and
  corrected values (:class:`pipeline.analysis.MeasurementRow`, rebuilt from the
  document) go through :func:`pipeline.reference.study_findings` and replace the
  study-level groups (:func:`pipeline.sr.findings.finding_groups`); a study
  finding the reviewer rejected stays out. What changed is returned as one
  sentence for Qualitative Evaluations.

The SR names a value by concepts; the rows name it by the protocol's words.
:func:`value_key` maps back: the Finding Site's code (:data:`pipeline.sr.codes.SITE_CODES`,
else its meaning, which is the site name for a local code), the Topographical
Modifier (:data:`pipeline.sr.codes.LEVEL_CODES`, else the meaning), the
laterality and the measurement label.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, MutableSequence, Sequence
from dataclasses import dataclass, field

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from pipeline.analysis import MeasurementRow, RowStatus
from pipeline.reference import (
    Flag,
    ReferenceReading,
    ReferenceTables,
    StudyFinding,
    covariates_from_header,
    device_from_header,
    read_value,
    study_findings,
)
from pipeline.sr import codes as sr_codes
from pipeline.sr.codes import concept_key
from pipeline.sr.findings import finding_groups
from pipeline.sr.items import reference_properties
from pipeline.sr.reader import CodedValue, MeasurementGroup, NumericMeasurement
from pipeline.sr.walk import item_key
from qa_review.flags import ValueFlag
from qa_review.items import ReviewableReport, is_confidence

__all__ = [
    "NO_TABLES",
    "ReferenceContext",
    "ValueKey",
    "measurement_rows",
    "read_values",
    "recompute_study_findings",
    "reflag_group",
    "value_key",
]

logger = logging.getLogger(__name__)

#: Why a corrected value has no reference when the review server was given no tables.
NO_TABLES = "the review server was started without reference tables, so the corrected value was not judged"

#: The reader's label -> the ``measurements.csv`` name (CONTRACT.md section 2).
_TABLE_NAME = {
    "Area": "cross_sectional_area",
    "Perimeter": "perimeter",
    "Major Axis": "major_axis",
    "Minor Axis": "minor_axis",
    "Flattening ratio": "flattening_ratio",
    "Thickness": "thickness",
    "Thickness (Mean, central half of width)": "thickness_mean_central_half",
    "Echogenicity (Mean)": "echogenicity_mean",
    "Echogenicity (Standard Deviation)": "echogenicity_sd",
    "Echogenicity (Median)": "echogenicity_median",
    "Vascularity index": "vascularity_index",
    "Intraneural vessel count": "vessel_count",
    "Vascularity grade": "vascularity_grade",
}
_SITE_NAMES = {concept_key(code): name for name, code in sr_codes.SITE_CODES.items()}
_LEVEL_NAMES = {concept_key(code): name for name, code in sr_codes.LEVEL_CODES.items()}
_SIDES = {concept_key(sr_codes.RIGHT): "R", concept_key(sr_codes.LEFT): "L", concept_key(sr_codes.RIGHT_AND_LEFT): "B"}
_SUBCUTANEOUS = concept_key(sr_codes.SUBCUTANEOUS_TISSUE)
_FURTHER_NERVE = re.compile(r"nerve contour (\d+):")
_NOT_APPLIED = concept_key(sr_codes.REFERENCE_NOT_APPLIED)
_IMAGING_MEASUREMENTS = concept_key(sr_codes.IMAGING_MEASUREMENTS)
_TRACKING_UID = concept_key(sr_codes.TRACKING_UNIQUE_IDENTIFIER)
#: The TID 310 / 311 / 312 items :func:`reference_properties` writes under a NUM (replaced on a new reading).
_PROPERTY_KEYS = {
    concept_key(sr_codes.NORMALITY),
    concept_key(sr_codes.NORMAL_RANGE_LOWER_LIMIT),
    concept_key(sr_codes.NORMAL_RANGE_UPPER_LIMIT),
    concept_key(sr_codes.NORMAL_RANGE_DESCRIPTION),
    concept_key(sr_codes.MEAN_VALUE_OF_POPULATION),
    concept_key(sr_codes.STANDARD_DEVIATION_OF_POPULATION),
    concept_key(sr_codes.Z_SCORE),
    ("DCM", "121405"),  # Population Description (highdicom's MeasurementStatisticalProperties)
}
_UNIT_CODES = {"mm2": sr_codes.MM2, "mm": sr_codes.MM, "1": sr_codes.NO_UNITS, "%": sr_codes.PERCENT}


@dataclass(frozen=True)
class ReferenceContext:
    """What judging a value again needs, given by the program's entry point.

    Attributes
    ----------
    tables : ReferenceTables or None
        The reference tables (``None``: the server was started without; a
        corrected value then carries no normality, with :data:`NO_TABLES`).
    preset : str
        The scanner preset (z-score models that name one apply only with it).
    header_of : callable
        SOP Instance UID -> the source image header (``None`` when not
        available: no z-score, with the reason).
    """

    tables: ReferenceTables | None
    preset: str = ""
    header_of: Callable[[str], Dataset | None] = field(default=lambda _sop: None, compare=False, repr=False)

    def read(self, key: ValueKey, value: float | None, sop_instance_uid: str) -> ReferenceReading:
        """The reading of one value (``none`` with the reason when nothing applies)."""
        if self.tables is None:
            return ReferenceReading.none(NO_TABLES)
        if re.search(r"\(nerve \d+\)$", key.structure):
            return ReferenceReading.none("a further nerve region of the frame, not the protocol's named nerve")
        header = self.header_of(sop_instance_uid) if sop_instance_uid else None
        device = device_from_header(header, preset=self.preset) if header is not None else None
        covariates = covariates_from_header(header) if header is not None else None
        return read_value(
            key.structure, key.level, key.measurement, value, self.tables, device=device, covariates=covariates
        )


@dataclass(frozen=True)
class ValueKey:
    """A value as the measurement rows name it: structure, level, side (``R``/``L``/``B``/``""``), measurement."""

    structure: str
    level: str
    laterality: str
    measurement: str


def _name(coded: CodedValue | None, names: dict[tuple[str, str], str]) -> str:
    if coded is None:
        return ""
    return names.get(coded.key, coded.meaning)


def value_key(group: MeasurementGroup, measurement: NumericMeasurement) -> ValueKey | None:
    """How the rows name ``measurement`` of ``group`` (``None``: not a row value, e.g. a confidence)."""
    table_name = _TABLE_NAME.get(measurement.label)
    if table_name is None:
        return None
    sites = group.finding_sites or measurement.finding_sites
    if not sites:
        return None
    site = sites[0]
    subcutaneous = site.site.key == _SUBCUTANEOUS or (group.finding is not None and group.finding.key == _SUBCUTANEOUS)
    structure = _name(site.site, _SITE_NAMES)
    if subcutaneous:
        if table_name != "thickness":
            return None
        table_name = "subcutaneous_thickness"
        # The group's site is Subcutaneous tissue; the rows name the muscle (its tracking identifier does).
        match = re.search(r"subcutaneous caliper: (?:right |left |both sides )?(.+?) \(", group.tracking_identifier or "")
        structure = match.group(1) if match else structure
    further = _FURTHER_NERVE.search(group.tracking_identifier or "")
    if further:
        structure = f"{structure} (nerve {further.group(1)})"
    return ValueKey(
        structure=structure,
        level=_name(site.modifier, _LEVEL_NAMES),
        laterality=_SIDES.get(site.laterality.key, "") if site.laterality is not None else "",
        measurement=table_name,
    )


# -- flags of a corrected group ----------------------------------------------------------------


def _remove(parent: MutableSequence[Dataset], item: Dataset) -> None:
    """Remove ``item`` itself (by identity: equal-looking items may exist) from ``parent``."""
    index = next(i for i, candidate in enumerate(parent) if candidate is item)
    del parent[index]


def _replace_properties(item: Dataset, reading: ReferenceReading, unit: str) -> None:
    content: MutableSequence[Dataset] = item.get("ContentSequence") or DicomSequence([])
    at = next(
        (i for i, child in enumerate(content)
         if child.get("RelationshipType") == "HAS PROPERTIES" and item_key(child) in _PROPERTY_KEYS),
        None,
    )
    kept = [c for c in content if not (c.get("RelationshipType") == "HAS PROPERTIES" and item_key(c) in _PROPERTY_KEYS)]
    properties = reference_properties(reading, _UNIT_CODES.get(unit, sr_codes.NO_UNITS))
    new = list(properties) if properties is not None else []
    if at is None:  # after the concept modifiers (method, derivation), as highdicom orders them
        at = sum(1 for c in kept if c.get("RelationshipType") == "HAS CONCEPT MOD")
    at = min(at, len(kept))
    merged = [*kept[:at], *new, *kept[at:]]
    if merged:
        item.ContentSequence = DicomSequence(merged)
    elif "ContentSequence" in item:
        del item.ContentSequence


def _not_applied_note(table_name: str, reason: str) -> Dataset:
    return hd.sr.TextContentItem(
        name=sr_codes.REFERENCE_NOT_APPLIED,
        value=" ".join(f"{table_name}: {reason}".split()),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def reflag_group(
    group_item: Dataset,
    group: MeasurementGroup,
    numbers: Sequence[tuple[MutableSequence[Dataset], Dataset]],
    values: dict[str, float],
    context: ReferenceContext,
    sop_instance_uid: str,
) -> dict[str, ReferenceReading]:
    """Judge the corrected values of one group again and rewrite their reference properties.

    Parameters
    ----------
    group_item : Dataset
        The group container of the document being written.
    group : MeasurementGroup
        The reader's view of it (sites, labels), read before the correction.
    numbers : sequence of (parent, NUM item)
        The group's NUM items, in ``group.measurements`` order (removed ones included; skipped).
    values : dict of str to float
        The corrected values by label.
    context : ReferenceContext
    sop_instance_uid : str
        The source image (for the patient and the device).

    Returns
    -------
    dict of str to ReferenceReading
        The new reading of each corrected value with a row name, by label.
    """
    readings: dict[str, ReferenceReading] = {}
    notes: dict[str, str] = {}
    judged: set[str] = set()
    explained = {
        e.value.split(":", 1)[0].strip() for e in group.evaluations if e.name.key == _NOT_APPLIED and ":" in e.value
    }
    for measurement, (parent, item) in zip(group.measurements, numbers, strict=True):
        if is_confidence(measurement) or measurement.label not in values or not any(c is item for c in parent):
            continue
        key = value_key(group, measurement)
        if key is None:
            reading = ReferenceReading.none(f"no reference is kept for {measurement.label}")
        else:
            reading = context.read(key, values[measurement.label], sop_instance_uid)
            readings[measurement.label] = reading
            judged.add(key.measurement)
        unit = measurement.unit.value if measurement.unit is not None else "1"
        _replace_properties(item, reading, unit)
        # Say why where the analysis would: a value that had a reference, or whose absence it explained.
        if key is not None and reading.flag is Flag.NONE and (
            measurement.normality is not None or key.measurement in explained
        ):
            notes[key.measurement] = reading.reason
        logger.info("corrected %s of %s: %s", measurement.label, group.tracking_identifier, reading.flag.value)
    if judged:
        content = group_item.ContentSequence
        for child in list(content):
            if item_key(child) == _NOT_APPLIED and str(child.get("TextValue", "")).split(":", 1)[0].strip() in judged:
                _remove(content, child)
        content.extend(_not_applied_note(name, reason) for name, reason in notes.items() if reason)
    return readings


# -- study findings -------------------------------------------------------------------------------


def _is_study_level(group: MeasurementGroup) -> bool:
    return bool(group.measurements) and not group.images and not group.regions


def measurement_rows(reviewable: ReviewableReport, study_uid: str) -> list[MeasurementRow]:
    """The measured rows of a document's image findings (what :func:`study_findings` takes)."""
    rows = []
    for group in reviewable.report.groups:
        if _is_study_level(group):
            continue
        sop = group.images[0].sop_instance_uid if group.images else ""
        frames = group.images[0].frame_numbers if group.images else ()
        for measurement in group.measurements:
            key = value_key(group, measurement)
            if key is None or measurement.value is None:
                continue
            rows.append(
                MeasurementRow(
                    study_uid=study_uid, series_uid="", sop_instance_uid=sop, frame=frames[0] if frames else 1,
                    source_file=sop, protocol="", structure=key.structure, laterality=key.laterality,
                    measurement=key.measurement, value=float(measurement.value),
                    unit=measurement.unit.value if measurement.unit is not None else "",
                    status=RowStatus.MEASURED, level=key.level,
                )
            )
    return rows


def _tracking_uid(group_item: Dataset) -> str:
    return next((str(c.UID) for c in group_item.get("ContentSequence") or [] if item_key(c) == _TRACKING_UID), "")


def _where(finding: StudyFinding) -> str:
    where = " ".join(p for p in (finding.structure, finding.level, finding.laterality) if p)
    return f"{finding.finding} {where}".strip()


def _old_value(group: MeasurementGroup) -> str:
    value = group.measurements[0].value if group.measurements else None
    return "no value" if value is None else f"{value:.4g}"


def recompute_study_findings(
    document: Dataset,
    reviewable: ReviewableReport,
    study_uid: str,
    tables: ReferenceTables | None,
    *,
    rejected_tracking_uids: Iterable[str] = (),
) -> str:
    """Replace the study-level groups of ``document`` by those of its accepted and corrected values.

    Parameters
    ----------
    document : Dataset
        The document being written (rejections and corrections applied); changed in place.
    reviewable : ReviewableReport
        ``document`` read again (:func:`qa_review.items.reviewable_report`).
    study_uid : str
    tables : ReferenceTables or None
        ``None``: the study findings cannot be recomputed and are removed.
    rejected_tracking_uids : iterable of str
        Study findings the reviewer rejected: they stay out.

    Returns
    -------
    str
        What changed, as one sentence (empty when nothing did).
    """
    rejected = set(rejected_tracking_uids)
    old: dict[str, MeasurementGroup] = {}
    container = None
    for slot, group in zip(reviewable.slots, reviewable.report.groups, strict=True):
        if _is_study_level(group):
            old[group.tracking_uid or ""] = group
            _remove(slot.parent, slot.group)
            container = slot.parent
    if tables is None:
        if not old:
            return ""
        return (
            "study findings removed: the review server has no reference tables to recompute them from the "
            f"accepted and corrected values ({', '.join(sorted(g.tracking_identifier or '' for g in old.values()))})"
        )
    if container is None:
        container = next(
            (i.ContentSequence for i in document.ContentSequence
             if item_key(i) == _IMAGING_MEASUREMENTS and i.get("ContentSequence")),
            None,
        )
    findings = study_findings(measurement_rows(reviewable, study_uid), tables)
    groups = finding_groups(study_uid, findings)
    changes: list[str] = []
    kept: set[str] = set()
    for finding, template in zip([f for f in findings if f.value is not None], groups, strict=True):
        item = template[0]
        uid = _tracking_uid(item)
        if uid in rejected:
            continue
        kept.add(uid)
        before = old.get(uid)
        now = f"{finding.value:.4g} ({finding.flag.value})"
        if before is None:
            changes.append(f"{_where(finding)}: {now}, new")
        elif before.measurements[0].value is None or f"{before.measurements[0].value:.4g}" != f"{finding.value:.4g}":
            changes.append(f"{_where(finding)}: {_old_value(before)} -> {now}")
        if container is not None:
            container.append(item)
    for uid, group in old.items():
        if uid not in kept and uid not in rejected:
            changes.append(f"{group.tracking_identifier or 'a study finding'}: removed ({_old_value(group)}), its inputs are gone")
    if not changes:
        return ""
    return "study findings recomputed from the accepted and corrected values: " + "; ".join(changes)


def read_values(
    group: MeasurementGroup, values: dict[str, float], context: ReferenceContext, sop_instance_uid: str
) -> dict[str, ValueFlag]:
    """The flags corrected ``values`` (by label) of ``group`` would get, for the page's preview (nothing is written)."""
    out: dict[str, ValueFlag] = {}
    for measurement in group.measurements:
        if measurement.label not in values or is_confidence(measurement):
            continue
        key = value_key(group, measurement)
        unit = measurement.unit.value if measurement.unit is not None else ""
        if key is None:
            out[measurement.label] = ValueFlag(flag="none", unit=unit, reason=f"no reference is kept for {measurement.label}")
            continue
        reading = context.read(key, values[measurement.label], sop_instance_uid)
        out[measurement.label] = ValueFlag(
            flag=reading.flag.value, low=reading.reference_low, high=reading.reference_high, unit=unit,
            description=reading.reference_source, z_score=reading.z_score, population_mean=reading.population_mean,
            population_sd=reading.population_sd, reason=reading.reason if reading.flag is Flag.NONE else "",
        )
    return out
