"""Study-level derived values in the SR: one TID 1501 group per finding of ``findings.csv``.

Wrist-to-forearm ratio, ΔCSA, right-minus-left and the number of nerve sites
enlarged are NUM items (local codes, :mod:`pipeline.sr.codes`) with their
reference interval and normality (TID 310 / 312, as for the per-frame
values), the structure and side as Finding Site, and TEXT items naming the
values they were computed from and, for sites enlarged, the pattern (focal,
multifocal, diffuse). They are decision support, not diagnosis: the
document-level note says so (:func:`reference_note`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import highdicom as hd
from pydicom.sr.coding import Code

from pipeline.protocols import Laterality
from pipeline.reference.findings import StudyFinding
from pipeline.reference.flags import DECISION_SUPPORT_NOTE, ReferenceReading
from pipeline.sr import codes
from pipeline.sr.items import finding_site, reference_properties, text_item

__all__ = ["finding_groups", "reference_note"]

_UNITS = {"1": codes.NO_UNITS, "mm2": codes.MM2, "mm": codes.MM, "%": codes.PERCENT}


def _concept(finding: StudyFinding) -> Code:
    if finding.finding.endswith("_ratio"):
        return codes.LEVEL_RATIO
    if finding.finding.endswith("_difference"):
        return codes.LEVEL_DIFFERENCE
    if finding.finding == "right_minus_left":
        return codes.SIDE_DIFFERENCE
    return codes.SITES_ENLARGED


def _laterality(side: str) -> Laterality:
    return {"R": Laterality.RIGHT, "L": Laterality.LEFT, "R-L": Laterality.BOTH}.get(side, Laterality.UNKNOWN)


def _tracking(study_uid: str, finding: StudyFinding) -> hd.sr.TrackingIdentifier:
    what = "\x1f".join(["mskus-finding", study_uid, finding.finding, finding.structure, finding.level, finding.laterality])
    uid = f"2.25.{int.from_bytes(hashlib.sha256(what.encode()).digest()[:16], 'big')}"
    where = " ".join(part for part in (finding.structure, finding.level, finding.laterality) if part)
    return hd.sr.TrackingIdentifier(uid=uid, identifier=f"study finding: {finding.finding} {where}".strip())


def finding_groups(study_uid: str, findings: Sequence[StudyFinding]) -> list[hd.sr.MeasurementsAndQualitativeEvaluations]:
    """One group per finding with a value (findings without a value are left to the CSV)."""
    groups = []
    for finding in findings:
        if finding.value is None:
            continue
        unit = _UNITS.get(finding.unit, codes.NO_UNITS)
        reading = ReferenceReading(
            finding.flag, finding.reference_low, finding.reference_high, finding.reference_source, reason=finding.reason
        )
        measurement = hd.sr.Measurement(
            name=_concept(finding), value=float(finding.value), unit=unit, properties=reference_properties(reading, unit)
        )
        level = finding.level if "/" not in finding.level else ""
        sites = None
        if finding.structure:
            sites = [finding_site(finding.structure, _laterality(finding.laterality), level)]
        group = hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(study_uid, finding), finding_sites=sites, measurements=[measurement]
        )
        texts = [text_item(codes.FINDING_INPUTS, f"{finding.finding}: {finding.inputs}")]
        if finding.pattern:
            texts.append(text_item(codes.ENLARGEMENT_PATTERN, finding.pattern))
        if finding.reason:
            texts.append(text_item(codes.REFERENCE_NOT_APPLIED if finding.flag.value == "none" else codes.REFERENCE_NOTE, finding.reason))
        group[0].ContentSequence.extend(texts)
        groups.append(group)
    return groups


def reference_note(files: Sequence[str] = ()) -> hd.sr.TextContentItem:
    """The document-level TEXT: flags are decision support, not diagnosis, and which tables were used."""
    names = ", ".join(f.rsplit("/", 1)[-1] for f in files)
    tables = f" (reference tables: {names})" if names else ""
    return text_item(
        codes.REFERENCE_NOTE,
        f"{DECISION_SUPPORT_NOTE}: each Normality compares one value with the reference interval named beside it{tables}. "
        "Grey-level echogenicity norms are specific to the scanner and preset.",
    )
