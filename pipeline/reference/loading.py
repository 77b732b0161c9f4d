"""Load and validate reference tables (``configs/reference/*.yaml``).

Each file holds one kind of table::

    version: 1
    kind: nerve_limits            # or comparisons, zscore_models
    sources:
      goedee2017: {paper: ..., table: ..., population: ..., method: ..., verified: true, note: ...}
    rows:
      - {structure: median nerve, level: forearm, upper: 10, at_cutoff: normal, source: goedee2017}

Every problem is one line naming the file, the row and the key
(:class:`~pipeline.errors.UsageError`): an unknown key, a missing key, a
value of the wrong type, a row naming a source the file does not define, two
rows for the same structure and level. A clinic replaces a shipped table by
passing its own file of the same kind (:func:`load_reference_tables`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.reference.tables import (
    COVARIATES,
    AtCutoff,
    ComparisonKind,
    ComparisonLimit,
    NerveLimit,
    ReferenceSource,
    ReferenceTables,
    ZScoreModel,
)
from pipeline.resources import shipped_config
from pipeline.yamlfile import read_yaml_mapping

__all__ = ["DEFAULT_REFERENCE_DIR", "KINDS", "load_reference_tables", "tables_from_mapping"]

logger = logging.getLogger(__name__)

DEFAULT_REFERENCE_DIR = shipped_config("reference")
KINDS: tuple[str, ...] = ("nerve_limits", "comparisons", "zscore_models")

_SOURCE_KEYS = {"paper", "table", "population", "method", "verified", "note"}
_LIMIT_KEYS = {"structure", "level", "measurement", "unit", "lower", "upper", "at_cutoff", "source"}
_COMPARISON_KEYS = {"comparison", "structure", "level", "reference_level", "measurement", "threshold", "unit",
                    "at_cutoff", "source"}
_MODEL_KEYS = {"structure", "measurement", "unit", "device", "transducer", "preset", "mean", "sd", "z_limit",
               "example", "source"}


class _Where:
    """Names the place of a problem: ``FILE: rows[3] (median nerve wrist): key 'upper': ...``."""

    def __init__(self, source: str, row: str = "") -> None:
        self.source = source
        self.row = row

    def error(self, message: str) -> UsageError:
        return UsageError(f"{self.source}: {self.row + ': ' if self.row else ''}{message}")


def _text(raw: Mapping[str, Any], key: str, where: _Where, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            raise where.error(f"key '{key}' is missing")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise where.error(f"key '{key}' must be a non-empty string, got {value!r}")
    return " ".join(value.split())


def _number(raw: Mapping[str, Any], key: str, where: _Where, *, required: bool = True, positive: bool = False) -> float | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise where.error(f"key '{key}' is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise where.error(f"key '{key}' must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise where.error(f"key '{key}' must be > 0, got {value!r}")
    return float(value)


def _check_keys(raw: Any, allowed: set[str], where: _Where) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise where.error(f"expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise where.error(f"unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
    return raw


def _at_cutoff(raw: Mapping[str, Any], where: _Where, default: AtCutoff) -> AtCutoff:
    value = raw.get("at_cutoff", default.value)
    try:
        return AtCutoff(value)
    except ValueError:
        raise where.error(f"key 'at_cutoff' must be 'normal' or 'abnormal', got {value!r}") from None


def _sources(raw: Any, source: str) -> dict[str, ReferenceSource]:
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(f"{source}: 'sources' must be a non-empty mapping of source keys")
    out = {}
    for key, item in raw.items():
        where = _Where(source, f"sources.{key}")
        fields = _check_keys(item, _SOURCE_KEYS, where)
        verified = fields.get("verified")
        if not isinstance(verified, bool):
            raise where.error(f"key 'verified' must be true or false, got {verified!r}")
        out[str(key)] = ReferenceSource(
            key=str(key),
            paper=_text(fields, "paper", where),
            table=_text(fields, "table", where),
            population=_text(fields, "population", where),
            method=_text(fields, "method", where),
            verified=verified,
            note=_text(fields, "note", where, required=False),
        )
    return out


def _source_of(raw: Mapping[str, Any], sources: Mapping[str, ReferenceSource], where: _Where) -> ReferenceSource:
    key = raw.get("source")
    if key is None:
        raise where.error("key 'source' is missing")
    if str(key) not in sources:
        raise where.error(f"key 'source': {key!r} is not defined under 'sources'")
    return sources[str(key)]


def _row_label(raw: Any, number: int) -> str:
    if isinstance(raw, Mapping):
        named = " ".join(str(raw.get(k, "")) for k in ("comparison", "structure", "level", "measurement") if raw.get(k))
        if named:
            return f"rows[{number}] ({named})"
    return f"rows[{number}]"


def _nerve_limit(raw: Mapping[str, Any], sources: Mapping[str, ReferenceSource], where: _Where) -> NerveLimit:
    lower = _number(raw, "lower", where, required=False)
    upper = _number(raw, "upper", where, required=False)
    if lower is None and upper is None:
        raise where.error("key 'upper' or 'lower' is needed (neither given)")
    if lower is not None and upper is not None and lower >= upper:
        raise where.error(f"key 'lower' ({lower:g}) must be below 'upper' ({upper:g})")
    return NerveLimit(
        structure=_text(raw, "structure", where),
        level=_text(raw, "level", where, required=False),
        measurement=_text(raw, "measurement", where, required=False) or "cross_sectional_area",
        unit=_text(raw, "unit", where, required=False) or "mm2",
        lower=lower,
        upper=upper,
        at_cutoff=_at_cutoff(raw, where, AtCutoff.NORMAL),
        source=_source_of(raw, sources, where),
    )


def _comparison(raw: Mapping[str, Any], sources: Mapping[str, ReferenceSource], where: _Where) -> ComparisonLimit:
    try:
        kind = ComparisonKind(raw.get("comparison"))
    except ValueError:
        allowed = ", ".join(k.value for k in ComparisonKind)
        raise where.error(f"key 'comparison' must be one of {allowed}, got {raw.get('comparison')!r}") from None
    level = _text(raw, "level", where)
    reference_level = _text(raw, "reference_level", where, required=kind is not ComparisonKind.SIDE_DIFFERENCE)
    if kind is ComparisonKind.SIDE_DIFFERENCE and reference_level:
        raise where.error("key 'reference_level' applies to level comparisons only")
    if reference_level and reference_level == level:
        raise where.error("key 'reference_level' must differ from 'level'")
    default_unit = "1" if kind is ComparisonKind.LEVEL_RATIO else "mm2"
    return ComparisonLimit(
        kind=kind,
        structure=_text(raw, "structure", where),
        level=level,
        reference_level=reference_level,
        measurement=_text(raw, "measurement", where, required=False) or "cross_sectional_area",
        threshold=_number(raw, "threshold", where, positive=True),  # type: ignore[arg-type]  # required: never None
        unit=_text(raw, "unit", where, required=False) or default_unit,
        at_cutoff=_at_cutoff(raw, where, AtCutoff.ABNORMAL),
        source=_source_of(raw, sources, where),
    )


def _zscore_model(raw: Mapping[str, Any], sources: Mapping[str, ReferenceSource], where: _Where) -> ZScoreModel:
    mean = raw.get("mean")
    if not isinstance(mean, Mapping) or "intercept" not in mean:
        raise where.error("key 'mean' must be a mapping with 'intercept' and any of " + ", ".join(COVARIATES))
    mean_where = _Where(where.source, f"{where.row}: mean")
    _check_keys(mean, {"intercept", *COVARIATES}, mean_where)
    coefficients = {c: _number(mean, c, mean_where) for c in COVARIATES if c in mean}
    example = raw.get("example", False)
    if not isinstance(example, bool):
        raise where.error(f"key 'example' must be true or false, got {example!r}")
    z_limit = _number(raw, "z_limit", where, required=False, positive=True)
    return ZScoreModel(
        structure=_text(raw, "structure", where),
        measurement=_text(raw, "measurement", where),
        unit=_text(raw, "unit", where),
        device=_text(raw, "device", where),
        transducer=_text(raw, "transducer", where, required=False),
        preset=_text(raw, "preset", where, required=False),
        intercept=_number(mean, "intercept", mean_where),  # type: ignore[arg-type]  # required: never None
        coefficients={k: v for k, v in coefficients.items() if v is not None},  # a dict: settings are pickled to workers
        sd=_number(raw, "sd", where, positive=True),  # type: ignore[arg-type]  # required: never None
        z_limit=2.0 if z_limit is None else z_limit,
        example=example,
        source=_source_of(raw, sources, where),
    )


_BUILDERS = {"nerve_limits": (_LIMIT_KEYS, _nerve_limit), "comparisons": (_COMPARISON_KEYS, _comparison),
             "zscore_models": (_MODEL_KEYS, _zscore_model)}


def _identity(row: object) -> tuple[object, ...]:
    if isinstance(row, NerveLimit):
        return (row.structure, row.level, row.measurement)
    if isinstance(row, ComparisonLimit):
        return (row.kind, row.structure, row.level, row.reference_level, row.measurement)
    assert isinstance(row, ZScoreModel)
    return (row.structure, row.measurement, row.device.lower(), row.transducer.lower(), row.preset.lower())


def tables_from_mapping(data: Any, *, source: str = "<reference table>") -> tuple[str, tuple[object, ...]]:
    """Validate one file's content; return its kind and rows.

    Raises
    ------
    UsageError
        One line naming ``source``, the row and the key at fault.
    """
    where = _Where(source)
    if not isinstance(data, Mapping):
        raise where.error("expected a mapping at the top level")
    unknown = sorted(set(data) - {"version", "kind", "sources", "rows"})
    if unknown:
        raise where.error(f"unknown key '{unknown[0]}' (allowed: version, kind, sources, rows)")
    if data.get("version") != 1:
        raise where.error(f"key 'version': unsupported or missing ({data.get('version')!r}; expected 1)")
    kind = data.get("kind")
    if kind not in _BUILDERS:
        raise where.error(f"key 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    sources = _sources(data.get("sources"), source)
    raw_rows = data.get("rows")
    if not isinstance(raw_rows, list):
        raise where.error("key 'rows' must be a list (it may be empty)")
    allowed, build = _BUILDERS[kind]
    rows: list[object] = []
    seen: dict[tuple[object, ...], str] = {}
    for number, raw in enumerate(raw_rows, start=1):
        row_where = _Where(source, _row_label(raw, number))
        row = build(_check_keys(raw, allowed, row_where), sources, row_where)
        identity = _identity(row)
        if identity in seen:
            raise row_where.error(f"same structure, level and measurement as {seen[identity]}")
        seen[identity] = row_where.row
        rows.append(row)
    return str(kind), tuple(rows)


def _read(path: Path) -> tuple[str, tuple[object, ...]]:
    return tables_from_mapping(read_yaml_mapping(path, what="reference table", empty_ok=False), source=str(path))


def load_reference_tables(
    replacements: Sequence[str | Path] = (), *, base_dir: str | Path | None = DEFAULT_REFERENCE_DIR
) -> ReferenceTables:
    """Load the shipped tables and replace any kind a clinic supplies.

    Parameters
    ----------
    replacements : sequence of path
        A clinic's own table files; each replaces every table of its kind in
        ``base_dir`` (two files of one kind here are combined).
    base_dir : path or None
        Folder of the default tables (every ``*.yaml`` in it, sorted);
        ``None``: only ``replacements``.

    Returns
    -------
    ReferenceTables

    Raises
    ------
    UsageError
        A file is unreadable or invalid (one line naming file, row and key),
        or ``base_dir`` is not a folder.
    """
    by_kind: dict[str, list[tuple[Path, tuple[object, ...]]]] = {kind: [] for kind in KINDS}
    if base_dir is not None:
        folder = Path(base_dir)
        if not folder.is_dir():
            raise UsageError(f"reference tables folder {folder} does not exist")
        for path in sorted(folder.glob("*.yaml")):
            kind, rows = _read(path)
            by_kind[kind].append((path, rows))
    replaced: dict[str, list[tuple[Path, tuple[object, ...]]]] = {}
    for item in replacements:
        path = Path(item)
        kind, rows = _read(path)
        replaced.setdefault(kind, []).append((path, rows))
    for kind, files in replaced.items():
        logger.info("reference tables: %s replaced by %s", kind, ", ".join(str(p) for p, _ in files))
        by_kind[kind] = files
    rows_of = {kind: tuple(row for _, rows in files for row in rows) for kind, files in by_kind.items()}
    return ReferenceTables(
        nerve_limits=tuple(r for r in rows_of["nerve_limits"] if isinstance(r, NerveLimit)),
        comparisons=tuple(r for r in rows_of["comparisons"] if isinstance(r, ComparisonLimit)),
        zscore_models=tuple(r for r in rows_of["zscore_models"] if isinstance(r, ZScoreModel)),
        files=tuple(str(p) for files in by_kind.values() for p, _ in files),
    )
