"""``summary.csv``: per study, structure, level, side and measurement.

Repeated measurements of the same structure at the same level are
summarised image by image: a cine clip counts once, with the median of its
frames; the statistics (mean, SD of two or more images, median, min, max)
are over those per-image values, and ``images`` and ``frames`` say how many
of each went in. A wrist image and a forearm cine of the same nerve are two
rows, never pooled. Where the
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
    frames: dict[tuple[str, str, str, str, str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
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
        frames[key][cells[_COL["sop_instance_uid"]]].append(float(cells[_COL["value"]]))
    # One value per image: a clip's frames give their median.
    groups = {key: [statistics.median(v) for v in per_image.values()] for key, per_image in frames.items()}
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
                str(sum(len(v) for v in frames[key].values())),
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
