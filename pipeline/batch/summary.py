"""``summary.csv``: per study, structure, level, side and measurement.

Repeated frames of the same structure at the same level (a cine, or several
images of one nerve) are summarised as n (frames), images, mean, SD
(sample, n >= 2), median, min and max of the measured values; a wrist image
and a forearm cine of the same nerve are two rows, never pooled. Where the
study has both sides of a structure *at the same level* the difference of the
means, right minus left, is given on both rows (a right wrist is never
compared with a left elbow).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from pipeline.batch.tables import MEASUREMENT_COLUMNS, SUMMARY_COLUMNS, format_float

__all__ = ["summary_rows"]

_COL = {name: i for i, name in enumerate(MEASUREMENT_COLUMNS)}


def summary_rows(measurement_cells: Iterable[Sequence[str]]) -> list[list[str]]:
    """Summary rows (in :data:`SUMMARY_COLUMNS` order) of one study's measurement rows."""
    groups: dict[tuple[str, str, str, str, str, str, str], list[float]] = defaultdict(list)
    images: dict[tuple[str, str, str, str, str, str, str], set[str]] = defaultdict(set)
    first: dict[str, tuple[str, str]] = {}
    for cells in measurement_cells:
        if cells[_COL["status"]] != "measured" or not cells[_COL["value"]]:
            continue
        study = cells[_COL["study_uid"]]
        first.setdefault(study, (cells[_COL["patient_id"]], cells[_COL["study_date"]]))
        key = (
            study,
            cells[_COL["protocol"]],
            cells[_COL["structure"]],
            cells[_COL["level"]],
            cells[_COL["laterality"]],
            cells[_COL["measurement"]],
            cells[_COL["unit"]],
        )
        groups[key].append(float(cells[_COL["value"]]))
        images[key].add(cells[_COL["sop_instance_uid"]])
    means = {key: statistics.fmean(values) for key, values in groups.items()}
    rows: list[list[str]] = []
    for key in sorted(groups):
        study, protocol, structure, level, side, measurement, unit = key
        values = groups[key]
        difference = ""
        if side in ("R", "L"):
            right = means.get((study, protocol, structure, level, "R", measurement, unit))
            left = means.get((study, protocol, structure, level, "L", measurement, unit))
            if right is not None and left is not None:
                difference = format_float(right - left)
        patient_id, study_date = first[study]
        rows.append(
            [
                study,
                patient_id,
                study_date,
                protocol,
                structure,
                level,
                side,
                measurement,
                unit,
                str(len(values)),
                str(len(images[key])),
                format_float(means[key]),
                format_float(statistics.stdev(values)) if len(values) >= 2 else "",
                format_float(statistics.median(values)),
                format_float(min(values)),
                format_float(max(values)),
                difference,
            ]
        )
    assert all(len(r) == len(SUMMARY_COLUMNS) for r in rows)
    return rows
