"""Per-study derived values and their flags (``findings.csv``), pure functions over measurement rows.

- **Site values**: a structure at one level and side (``median nerve, wrist, R``)
  gets one value per measurement: the median over each image's frames (a cine
  clip counts once), then the median over images. Further nerve regions of a
  frame (``"... (nerve 2)"``) are not the named nerve and are left out.
- **Level comparisons** (``level_ratio``, ``level_difference`` rows of the
  comparisons table): e.g. wrist-to-forearm ratio and ΔCSA, same structure
  and side.
- **Side differences**: right minus left only between the same structure
  *and* level; flagged where the table has a limit for |R - L|.
- **Sites enlarged**: how many sites are enlarged against the nerve limits,
  and the pattern Table 1 of the paper distinguishes: ``focal`` (one site),
  ``multifocal`` (several, not all), ``diffuse`` (every assessed site, at
  least three sites on at least two nerves). A count, not a diagnosis.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pipeline.analysis import MeasurementRow, RowStatus
from pipeline.reference.flags import _EXTRA_NERVE, Flag, ReferenceReading, judge_limit
from pipeline.reference.tables import AtCutoff, ComparisonKind, ComparisonLimit, ReferenceTables

__all__ = [
    "FINDING_COLUMNS",
    "SIDE_MEASUREMENTS",
    "SiteValue",
    "StudyFinding",
    "finding_cells",
    "site_values",
    "study_findings",
]

#: Measurements compared right against left.
SIDE_MEASUREMENTS: tuple[str, ...] = ("cross_sectional_area", "thickness", "echogenicity_mean")

#: ``findings.csv`` columns (CONTRACT.md section 2).
FINDING_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "finding",
    "structure",
    "level",
    "laterality",
    "value",
    "unit",
    "flag",
    "pattern",
    "inputs",
    "reference_low",
    "reference_high",
    "reference_source",
    "reason",
)


@dataclass(frozen=True)
class SiteValue:
    """One measurement of a structure at one level and side, over the study.

    Attributes
    ----------
    structure, level, laterality, measurement, unit : str
    value : float
        Median over images of each image's median over its frames, in ``unit``.
    images, frames : int
        How many images (cine clips count once) and frames it rests on.
    """

    structure: str
    level: str
    laterality: str
    measurement: str
    unit: str
    value: float
    images: int
    frames: int

    def describe(self) -> str:
        level = f" at {self.level}" if self.level else ""
        side = f" {self.laterality}" if self.laterality else ""
        return (
            f"{self.structure}{level}{side} {self.measurement} {self.value:.4g} {self.unit} "
            f"({self.images} image(s), {self.frames} frame(s))"
        )


@dataclass(frozen=True)
class StudyFinding:
    """One row of ``findings.csv``.

    Attributes
    ----------
    finding : str
        ``wrist_to_forearm_ratio`` (``<level>_to_<reference level>_ratio``),
        ``wrist_minus_forearm_difference``, ``right_minus_left``, ``sites_enlarged``.
    structure, level, laterality : str
        Where (``""`` where it spans several).
    value : float or None
    unit : str
    flag : Flag
    pattern : str
        ``sites_enlarged`` only: ``none``, ``focal``, ``multifocal`` or ``diffuse``.
    inputs : str
        The site values it was computed from.
    reference_low, reference_high : float or None
    reference_source : str
    reason : str
        Why the flag is ``none``, or notes.
    """

    finding: str
    structure: str
    level: str
    laterality: str
    value: float | None
    unit: str
    flag: Flag
    inputs: str
    pattern: str = ""
    reference_low: float | None = None
    reference_high: float | None = None
    reference_source: str = ""
    reason: str = ""


def site_values(rows: Iterable[MeasurementRow]) -> tuple[SiteValue, ...]:
    """Site values of one study's measured rows (sorted by structure, level, side, measurement)."""
    frames: dict[tuple[str, str, str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row.status is not RowStatus.MEASURED or row.value is None or _EXTRA_NERVE.search(row.structure):
            continue
        key = (row.structure, row.level, row.laterality, row.measurement, row.unit)
        frames[key][row.sop_instance_uid or row.source_file].append(float(row.value))
    out = []
    for key in sorted(frames):
        per_image = [statistics.median(values) for values in frames[key].values()]
        out.append(
            SiteValue(*key[:4], unit=key[4], value=statistics.median(per_image), images=len(per_image),
                      frames=sum(len(v) for v in frames[key].values()))
        )
    return tuple(out)


def _flag_threshold(value: float, row: ComparisonLimit) -> Flag:
    magnitude = abs(value) if row.kind is ComparisonKind.SIDE_DIFFERENCE else value
    if magnitude > row.threshold or (magnitude == row.threshold and row.at_cutoff is AtCutoff.ABNORMAL):
        return Flag.INCREASED
    return Flag.NORMAL


def _level_findings(sites: Sequence[SiteValue], tables: ReferenceTables) -> list[StudyFinding]:
    index = {(s.structure, s.level, s.laterality, s.measurement): s for s in sites}
    out: list[StudyFinding] = []
    for row in tables.comparisons:
        if row.kind is ComparisonKind.SIDE_DIFFERENCE:
            continue
        for side in sorted({s.laterality for s in sites}):
            top = index.get((row.structure, row.level, side, row.measurement))
            bottom = index.get((row.structure, row.reference_level, side, row.measurement))
            if top is None or bottom is None:
                continue
            if row.kind is ComparisonKind.LEVEL_RATIO:
                if bottom.value <= 0:
                    continue
                value, name = top.value / bottom.value, f"{row.level}_to_{row.reference_level}_ratio"
            else:
                value, name = top.value - bottom.value, f"{row.level}_minus_{row.reference_level}_difference"
            out.append(
                StudyFinding(
                    finding=name.replace(" ", "_"), structure=row.structure, level=f"{row.level}/{row.reference_level}",
                    laterality=side, value=value, unit=row.unit, flag=_flag_threshold(value, row),
                    inputs=f"{top.describe()}; {bottom.describe()}",
                    reference_low=None, reference_high=row.threshold, reference_source=row.source.describe(),
                    reason=f"abnormal from {row.threshold:g} {row.unit}" if row.at_cutoff is AtCutoff.ABNORMAL
                    else f"abnormal above {row.threshold:g} {row.unit}",
                )
            )
    return out


def _side_findings(sites: Sequence[SiteValue], tables: ReferenceTables) -> list[StudyFinding]:
    index = {(s.structure, s.level, s.laterality, s.measurement): s for s in sites}
    out: list[StudyFinding] = []
    for s in sites:
        if s.laterality != "R" or s.measurement not in SIDE_MEASUREMENTS:
            continue
        left = index.get((s.structure, s.level, "L", s.measurement))
        if left is None:
            continue  # right minus left only at the same structure and level
        value = s.value - left.value
        row = tables.comparison(ComparisonKind.SIDE_DIFFERENCE, s.structure, s.level, s.measurement)
        common = dict(
            finding="right_minus_left", structure=s.structure, level=s.level, laterality="R-L", value=value,
            unit=s.unit, inputs=f"{s.describe()}; {left.describe()}",
        )
        if row is None:
            level = f" at {s.level}" if s.level else ""
            out.append(StudyFinding(**common, flag=Flag.NONE, reason=f"no side-difference limit for {s.structure}{level} {s.measurement}"))  # type: ignore[arg-type]
        else:
            out.append(
                StudyFinding(
                    **common, flag=_flag_threshold(value, row), reference_low=-row.threshold,  # type: ignore[arg-type]
                    reference_high=row.threshold, reference_source=row.source.describe(),
                    reason=f"|R - L| abnormal {'from' if row.at_cutoff is AtCutoff.ABNORMAL else 'above'} {row.threshold:g} {row.unit}",
                )
            )
    return out


def _enlarged_finding(sites: Sequence[SiteValue], tables: ReferenceTables) -> StudyFinding | None:
    judged: list[tuple[SiteValue, ReferenceReading]] = []
    for s in sites:
        row = tables.nerve_limit(s.structure, s.level, s.measurement) if s.measurement == "cross_sectional_area" else None
        if row is not None:
            judged.append((s, judge_limit(s.value, row)))
    if not judged:
        return None
    enlarged = [s for s, reading in judged if reading.flag is Flag.ENLARGED]
    nerves = {s.structure for s in enlarged}
    if not enlarged:
        pattern = "none"
    elif len(enlarged) == 1:
        pattern = "focal"
    elif len(enlarged) == len(judged) and len(judged) >= 3 and len(nerves) >= 2:
        pattern = "diffuse"
    else:
        pattern = "multifocal"
    sources = sorted({reading.reference_source for _, reading in judged})
    return StudyFinding(
        finding="sites_enlarged", structure="", level="", laterality="", value=float(len(enlarged)), unit="1",
        flag=Flag.ENLARGED if enlarged else Flag.NORMAL, pattern=pattern,
        inputs="; ".join(f"{s.describe()}: {r.flag.value}" for s, r in judged),
        reference_source=" | ".join(sources),
        reason=f"{len(enlarged)} of {len(judged)} site(s) with a CSA limit enlarged",
    )


def study_findings(rows: Iterable[MeasurementRow], tables: ReferenceTables) -> tuple[StudyFinding, ...]:
    """The derived values of one study's measurement rows: level comparisons, R - L, sites enlarged."""
    sites = site_values(rows)
    findings = [*_level_findings(sites, tables), *_side_findings(sites, tables)]
    enlarged = _enlarged_finding(sites, tables)
    if enlarged is not None:
        findings.append(enlarged)
    return tuple(findings)


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def finding_cells(study_uid: str, finding: StudyFinding) -> list[str]:
    """The ``findings.csv`` cells of one finding, in :data:`FINDING_COLUMNS` order."""
    return [
        study_uid, finding.finding, finding.structure, finding.level, finding.laterality, _number(finding.value),
        finding.unit, finding.flag.value, finding.pattern, finding.inputs, _number(finding.reference_low),
        _number(finding.reference_high), finding.reference_source, " ".join(finding.reason.split()),
    ]
