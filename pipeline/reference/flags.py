"""Flag one measurement against the reference tables (pure functions).

:func:`read_value` judges a value of a structure at a level:

- a nerve limit row (:class:`~pipeline.reference.tables.NerveLimit`): above
  the upper limit ``enlarged``, below the lower ``reduced``, else ``normal``;
- else a z-score model of the same device (and transducer and preset):
  ``z = (value - mean) / sd`` at the patient's covariates; beyond
  ``+z_limit`` ``increased``, beyond ``-z_limit`` ``decreased``; the
  interval is ``mean ± z_limit·sd``;
- else ``none``, with the reason (no row, level unknown, no model for this
  device, a covariate missing, no value).

:func:`read_row` does the same for a :class:`~pipeline.analysis.MeasurementRow`.
Flags are decision support, not diagnosis.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

from pipeline.analysis import MeasurementRow, RowStatus
from pipeline.reference.patient import Covariates, DeviceIdentity
from pipeline.reference.tables import AtCutoff, NerveLimit, ReferenceTables, ZScoreModel

__all__ = ["DECISION_SUPPORT_NOTE", "Flag", "ReferenceReading", "read_row", "read_value"]

#: Said next to every flag (SR, README, the QA page).
DECISION_SUPPORT_NOTE = "Reference flags are decision support, not diagnosis"

_EXTRA_NERVE = re.compile(r"\(nerve \d+\)$")


class Flag(str, enum.Enum):
    """The ``flag`` column of CONTRACT.md section 2."""

    NORMAL = "normal"
    ENLARGED = "enlarged"
    REDUCED = "reduced"
    INCREASED = "increased"
    DECREASED = "decreased"
    NONE = "none"

    @property
    def abnormal(self) -> bool:
        return self not in (Flag.NORMAL, Flag.NONE)


@dataclass(frozen=True)
class ReferenceReading:
    """A value judged against a reference.

    Attributes
    ----------
    flag : Flag
    reference_low, reference_high : float or None
        The interval used, in the value's unit (``None``: no limit on that side).
    reference_source : str
        The source line (paper, table, population, method); ``""`` without a reference.
    z_score : float or None
        Where a z-score model applied (dimensionless).
    reason : str
        Why the flag is ``none`` or the z-score missing; notes (example model) otherwise.
    population_mean, population_sd : float or None
        The model's mean and SD at the patient's covariates (z-score models).
    at_cutoff : AtCutoff
        Whether a value at a limit counts as normal (for the reader of the interval).
    """

    flag: Flag
    reference_low: float | None = None
    reference_high: float | None = None
    reference_source: str = ""
    z_score: float | None = None
    reason: str = ""
    population_mean: float | None = None
    population_sd: float | None = None
    at_cutoff: AtCutoff = AtCutoff.NORMAL

    @classmethod
    def none(cls, reason: str) -> ReferenceReading:
        return cls(Flag.NONE, reason=reason)


def _beyond(value: float, limit: float, at_cutoff: AtCutoff, *, above: bool) -> bool:
    if value == limit:
        return at_cutoff is AtCutoff.ABNORMAL
    return value > limit if above else value < limit


def judge_limit(value: float, row: NerveLimit) -> ReferenceReading:
    """Flag ``value`` against a nerve limit row (``enlarged`` / ``reduced`` / ``normal``)."""
    flag = Flag.NORMAL
    if row.upper is not None and _beyond(value, row.upper, row.at_cutoff, above=True):
        flag = Flag.ENLARGED
    elif row.lower is not None and _beyond(value, row.lower, row.at_cutoff, above=False):
        flag = Flag.REDUCED
    return ReferenceReading(
        flag, row.lower, row.upper, row.source.describe(), at_cutoff=row.at_cutoff
    )


def _model_matches(model: ZScoreModel, device: DeviceIdentity) -> bool:
    if model.device.lower() != device.model_name.lower():
        return False
    if model.transducer and model.transducer.lower() != device.transducer.lower():
        return False
    return not model.preset or model.preset.lower() == device.preset.lower()


def judge_zscore(value: float, model: ZScoreModel, covariates: Covariates) -> ReferenceReading:
    """z-score of ``value`` under ``model``; ``none`` with the reason when a covariate is missing."""
    source = model.source.describe()
    missing = [name for name in model.needs if covariates.value(name) is None]
    if missing:
        return ReferenceReading(
            Flag.NONE, reference_source=source,
            reason=f"no z-score: patient {', '.join(missing)} missing (the model needs {', '.join(model.needs)})",
        )
    mean = model.intercept + sum(coef * float(covariates.value(name) or 0.0) for name, coef in model.coefficients.items())
    z = (value - mean) / model.sd
    flag = Flag.NORMAL
    if z > model.z_limit:
        flag = Flag.INCREASED
    elif z < -model.z_limit:
        flag = Flag.DECREASED
    reason = "EXAMPLE model, not a reference: for illustration only" if model.example else ""
    return ReferenceReading(
        flag,
        reference_low=mean - model.z_limit * model.sd,
        reference_high=mean + model.z_limit * model.sd,
        reference_source=source,
        z_score=z,
        reason=reason,
        population_mean=mean,
        population_sd=model.sd,
    )


def read_value(
    structure: str,
    level: str,
    measurement: str,
    value: float | None,
    tables: ReferenceTables,
    *,
    device: DeviceIdentity | None = None,
    covariates: Covariates | None = None,
) -> ReferenceReading:
    """Judge one value of ``structure`` at ``level`` against ``tables``.

    Parameters
    ----------
    structure, level, measurement : str
        Protocol site, level (``""`` unknown) and measurement name (CONTRACT.md section 2).
    value : float or None
        In the unit of the table row (CSA mm², thickness mm, echogenicity gray level 0-255).
    tables : ReferenceTables
        Loaded once by the caller.
    device : DeviceIdentity, optional
        The scanner, for z-score models (none given: no model applies).
    covariates : Covariates, optional
        The patient, for z-score models.

    Returns
    -------
    ReferenceReading
    """
    if value is None or not math.isfinite(value):
        return ReferenceReading.none("no value")
    row = tables.nerve_limit(structure, level, measurement)
    if row is not None:
        return judge_limit(value, row)
    levels = tables.levels_with_limits(structure, measurement)
    if levels and not level:
        return ReferenceReading.none(
            f"level unknown (the image's descriptions name none): {structure} {measurement} has limits "
            f"only per level ({', '.join(levels)})"
        )
    if levels:
        return ReferenceReading.none(f"no reference for {structure} {measurement} at {level} (tables have {', '.join(levels)})")
    models = tables.models_for(structure, measurement)
    if not models:
        return ReferenceReading.none(f"no reference for {structure} {measurement}")
    device = device or DeviceIdentity()
    for model in models:
        if _model_matches(model, device):
            return judge_zscore(value, model, covariates or Covariates())
    return ReferenceReading.none(
        f"no z-score model for {structure} {measurement} on {device.describe()} "
        "(grey levels and thickness norms are device- and preset-specific: a clinic supplies its own)"
    )


def read_row(
    row: MeasurementRow,
    tables: ReferenceTables,
    *,
    device: DeviceIdentity | None = None,
    covariates: Covariates | None = None,
) -> ReferenceReading:
    """:func:`read_value` for one measurement row (refused rows and extra nerve regions: ``none``)."""
    if row.status is not RowStatus.MEASURED or row.value is None:
        return ReferenceReading.none("no value" + (f": {row.reason}" if row.reason else ""))
    if _EXTRA_NERVE.search(row.structure):
        return ReferenceReading.none("a further nerve region of the frame, not the protocol's named nerve")
    return read_value(
        row.structure, row.level, row.measurement, row.value, tables, device=device, covariates=covariates
    )
