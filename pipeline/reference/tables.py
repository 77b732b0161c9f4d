"""Reference tables as validated, immutable data (``configs/reference/*.yaml``).

Three kinds of table, each row with its :class:`ReferenceSource` (paper, table,
population, method, and whether the value was checked against that source):

- :class:`NerveLimit` -- nerve CSA limits per structure and level (upper, and
  lower where published);
- :class:`ComparisonLimit` -- cut-offs of derived values: the ratio and the
  difference of one structure at two levels (wrist-to-forearm ratio, ΔCSA)
  and the right-minus-left difference at one structure and level;
- :class:`ZScoreModel` -- device- and preset-specific normal models (mean
  linear in age, sex, height and weight; constant SD) for muscle thickness
  and echogenicity, which are not portable across scanners.

Loading and validation live in :mod:`pipeline.reference.loading`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "COVARIATES",
    "AtCutoff",
    "ComparisonKind",
    "ComparisonLimit",
    "NerveLimit",
    "ReferenceSource",
    "ReferenceTables",
    "ZScoreModel",
]

#: Covariates a z-score model may use: age (years), male (1 male, 0 female), height (cm), weight (kg).
COVARIATES: tuple[str, ...] = ("age_years", "male", "height_cm", "weight_kg")


class AtCutoff(str, enum.Enum):
    """What a value exactly at a cut-off counts as.

    ``normal``: the limit is the last normal value (an upper limit of normal,
    "> 10 mm² is enlarged"); ``abnormal``: the limit is the first abnormal
    value ("ratio >= 1.4").
    """

    NORMAL = "normal"
    ABNORMAL = "abnormal"


class ComparisonKind(str, enum.Enum):
    """Derived values of one study that a :class:`ComparisonLimit` judges."""

    #: CSA at ``level`` divided by CSA at ``reference_level``, same structure and side (WFR).
    LEVEL_RATIO = "level_ratio"
    #: CSA at ``level`` minus CSA at ``reference_level`` (mm², ΔCSA).
    LEVEL_DIFFERENCE = "level_difference"
    #: |right - left| of one measurement at the same structure and level.
    SIDE_DIFFERENCE = "side_difference"


@dataclass(frozen=True)
class ReferenceSource:
    """Where a reference value comes from.

    Attributes
    ----------
    key : str
        Identifier used by the rows of the file.
    paper : str
        Citation (authors, journal, year, DOI or URL).
    table : str
        Table or passage of the paper holding the value.
    population : str
        Who was measured (healthy volunteers, disease controls, ...).
    method : str
        How the limit was derived (mean + 2 SD, ROC cut-off, ...).
    verified : bool
        The value was checked against the source text; ``False`` is said
        wherever the source is shown.
    note : str
        Anything else a reader must know (e.g. why it is unverified).
    """

    key: str
    paper: str
    table: str
    population: str
    method: str
    verified: bool
    note: str = ""

    def describe(self) -> str:
        """One line for tables and the SR: paper, table; population; method (and unverified/note)."""
        text = f"{self.paper}, {self.table}; {self.population}; {self.method}"
        if not self.verified:
            text += "; NOT VERIFIED against the source"
        if self.note:
            text += f" ({self.note})"
        return " ".join(text.split())


@dataclass(frozen=True)
class NerveLimit:
    """Limits of one measurement of one structure at one level.

    Attributes
    ----------
    structure : str
        Protocol site name (``median nerve``).
    level : str
        Level name of the protocol rules (``wrist``); ``""``: any level.
    measurement : str
        Measurement name of CONTRACT.md section 2 (``cross_sectional_area``).
    unit : str
        UCUM unit of the limits (``mm2``).
    lower, upper : float or None
        Lower / upper limit of normal (at least one is set).
    at_cutoff : AtCutoff
        Whether a value equal to a limit is normal.
    source : ReferenceSource
    """

    structure: str
    level: str
    measurement: str
    unit: str
    lower: float | None
    upper: float | None
    at_cutoff: AtCutoff
    source: ReferenceSource


@dataclass(frozen=True)
class ComparisonLimit:
    """Cut-off of a derived value (ratio, difference between levels or sides).

    Attributes
    ----------
    kind : ComparisonKind
    structure, level : str
        The structure and (numerator / minuend) level.
    reference_level : str
        Denominator / subtrahend level (level comparisons); ``""`` for sides.
    measurement : str
        The measurement compared (``cross_sectional_area``).
    threshold : float
        Cut-off in ``unit`` (for sides: of the absolute difference).
    unit : str
        ``1`` for ratios, the measurement's unit otherwise.
    at_cutoff : AtCutoff
    source : ReferenceSource
    """

    kind: ComparisonKind
    structure: str
    level: str
    reference_level: str
    measurement: str
    threshold: float
    unit: str
    at_cutoff: AtCutoff
    source: ReferenceSource


@dataclass(frozen=True)
class ZScoreModel:
    """A normal model of one measurement on one device (and preset).

    ``mean = intercept + sum(coefficients[c] * covariate c)``; ``z = (value - mean) / sd``.

    Attributes
    ----------
    structure, measurement, unit : str
        What the model describes (``rectus femoris muscle``, ``echogenicity_mean``, ``1``).
    device : str
        Manufacturer Model Name (0008,1090) the model was made on.
    transducer : str
        Transducer Data (0018,5010) first value; ``""``: any transducer.
    preset : str
        Scanner preset named by the run's settings; ``""``: any preset.
    intercept : float
        Mean at all covariates 0, in ``unit``.
    coefficients : mapping of str to float
        Per unit of each covariate in :data:`COVARIATES` the model uses.
    sd : float
        Standard deviation of the normal population, in ``unit`` (> 0).
    z_limit : float
        |z| above this is abnormal (2: outside mean ± 2 SD).
    example : bool
        The model is an illustration, not a reference: said wherever it is used.
    source : ReferenceSource
    """

    structure: str
    measurement: str
    unit: str
    device: str
    transducer: str
    preset: str
    intercept: float
    coefficients: Mapping[str, float]
    sd: float
    z_limit: float
    example: bool
    source: ReferenceSource

    @property
    def needs(self) -> tuple[str, ...]:
        """Covariates the model uses (non-zero coefficients), in :data:`COVARIATES` order."""
        return tuple(c for c in COVARIATES if self.coefficients.get(c, 0.0) != 0.0)


@dataclass(frozen=True)
class ReferenceTables:
    """All reference tables of a run, loaded once at the entry point.

    Attributes
    ----------
    nerve_limits, comparisons, zscore_models : tuple
        Rows of each kind.
    files : tuple of str
        The files they were read from (for the settings fingerprint and the README).
    """

    nerve_limits: tuple[NerveLimit, ...] = ()
    comparisons: tuple[ComparisonLimit, ...] = ()
    zscore_models: tuple[ZScoreModel, ...] = ()
    files: tuple[str, ...] = field(default=())

    def nerve_limit(self, structure: str, level: str, measurement: str) -> NerveLimit | None:
        """The row for ``structure`` at ``level`` (else a level-independent row), or ``None``."""
        exact = any_level = None
        for row in self.nerve_limits:
            if row.structure == structure and row.measurement == measurement:
                if level and row.level == level:
                    exact = row
                elif not row.level:
                    any_level = row
        return exact or any_level

    def levels_with_limits(self, structure: str, measurement: str) -> tuple[str, ...]:
        """Levels of ``structure`` that have a row (for the reason of a missing level)."""
        return tuple(r.level for r in self.nerve_limits if r.structure == structure and r.measurement == measurement and r.level)

    def comparison(self, kind: ComparisonKind, structure: str, level: str, measurement: str) -> ComparisonLimit | None:
        """The comparison row of ``kind`` for ``structure`` at ``level``, or ``None``."""
        for row in self.comparisons:
            if (row.kind, row.structure, row.level, row.measurement) == (kind, structure, level, measurement):
                return row
        return None

    def models_for(self, structure: str, measurement: str) -> tuple[ZScoreModel, ...]:
        """Every z-score model of ``structure``'s ``measurement`` (any device)."""
        return tuple(m for m in self.zscore_models if m.structure == structure and m.measurement == measurement)

