"""Where the shipped nerve segmenter's errors on real scans come from; no torch needed.

For every true nerve region (as :mod:`training.evaluate_nerve` counts them) of a
set of annotated images, what the pipeline reports (shipped settings, confidence
floor applied) is sorted into one kind of outcome:

- ``missed``: no reported nerve overlaps it with Dice >= 0.3;
- ``merged``: its best report also covers at least ``MERGE_COVERAGE`` of
  another true nerve region (two trunks reported as one nerve);
- ``under`` / ``over``: a hit whose area is more than ``AREA_TOLERANCE``
  smaller / larger than the annotation;
- ``close``: a hit within ``AREA_TOLERANCE`` of the annotated area.

It also gives the Dice ceiling that the network's input size alone sets
(:func:`input_size_dice_ceiling`: each annotation letterboxed to the
network's input and brought back as the network's output is), so that a
border error is not blamed on the resolution when it is not.

Usage::

    .venv/bin/python -m training.diagnose_nerve_errors [--all | --folder DIR] [--json out.json]

Without options: the fixed validation split. ``--folder``: a folder with
``images/`` and ``masks/`` in the usgra-seg layout (e.g. the authors' held-out
``dataset/test``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.geometry import dice_coefficient  # noqa: E402
from pipeline.segmentation.nerve_preprocess import letterbox  # noqa: E402
from training.evaluate_nerve import (  # noqa: E402
    HIT_DICE,
    USGRA,
    FlooredSegmenter,
    all_names,
    make,
    score_images,
    true_nerve_regions,
    validation_names,
)

#: Share of a second true region that a report must cover to count as a merge of the two.
MERGE_COVERAGE = 0.3
#: Relative area error within which a hit counts as ``close``.
AREA_TOLERANCE = 0.2
OUTCOMES = ("close", "under", "over", "merged", "missed")


@dataclass(frozen=True)
class RegionOutcome:
    """What was reported for one true nerve region.

    Attributes
    ----------
    file : str
        Image file name.
    true_area_px : int
        Annotated area in pixels.
    outcome : str
        One of :data:`OUTCOMES`.
    dice : float
        Dice with the best-matching report (0 when nothing was reported).
    relative_area_error : float or None
        (reported - annotated) / annotated area of that report; None when missed.
    """

    file: str
    true_area_px: int
    outcome: str
    dice: float
    relative_area_error: float | None


def classify_regions(
    file: str, reports: Sequence[np.ndarray], truths: Sequence[np.ndarray]
) -> tuple[list[RegionOutcome], int]:
    """Outcome of each true region, and the number of reports that match none.

    Parameters
    ----------
    file : str
        Image name recorded in each outcome.
    reports : sequence of ndarray of bool
        Masks of the reported nerves.
    truths : sequence of ndarray of bool
        Masks of the true nerve regions (same shape).
    """
    dice = np.array([[dice_coefficient(r, t) for t in truths] for r in reports]).reshape(len(reports), len(truths))
    outcomes = []
    for j, truth in enumerate(truths):
        best = int(np.argmax(dice[:, j])) if len(reports) else -1
        d = float(dice[best, j]) if best >= 0 else 0.0
        area = int(truth.sum())
        if d < HIT_DICE:
            outcomes.append(RegionOutcome(file, area, "missed", d, None))
            continue
        report = reports[best]
        error = (float(report.sum()) - area) / area
        covers_another = any(
            (report & other).sum() >= MERGE_COVERAGE * other.sum() for k, other in enumerate(truths) if k != j
        )
        if covers_another:
            kind = "merged"
        elif error < -AREA_TOLERANCE:
            kind = "under"
        elif error > AREA_TOLERANCE:
            kind = "over"
        else:
            kind = "close"
        outcomes.append(RegionOutcome(file, area, kind, d, error))
    unmatched = int(sum(1 for i in range(len(reports)) if not (dice[i] >= HIT_DICE).any()))
    return outcomes, unmatched


def input_size_dice_ceiling(truth: np.ndarray, size: int) -> float:
    """Dice of an annotation with itself after a round trip through a ``size`` x ``size`` network grid.

    The mask is letterboxed as the network's input is (aspect kept,
    ``INTER_AREA``), cropped back and resized bilinearly to the image as the
    network's probabilities are, then thresholded at one half: the best Dice a
    perfect network of that input size could reach.
    """
    square, box = letterbox(truth.astype(np.float32), size)
    small = square[box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols]
    h, w = truth.shape
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    return float(dice_coefficient(back, truth.astype(bool)))


@dataclass(frozen=True)
class ErrorDiagnosis:
    """Every true region's outcome and the summary of :func:`summarize`."""

    regions: tuple[RegionOutcome, ...]
    summary: dict[str, object]


def diagnose(names: Sequence[str], folder: Path = USGRA) -> ErrorDiagnosis:
    """Outcomes of the shipped segmenter (floor applied) over ``names``, with a summary."""
    segmenter, _ = make("learned")
    size = int(segmenter.net.input_size)

    def score(masks: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
        truths = true_nerve_regions(labels)
        outcomes, unmatched = classify_regions("", masks, truths)
        return {"outcomes": outcomes, "unmatched": unmatched, "ceilings": [input_size_dice_ceiling(t, size) for t in truths]}

    reported = FlooredSegmenter(segmenter, segmenter.min_confidence)
    rows, _ = score_images(reported, names, folder=folder, scorer=score)
    outcomes = [dataclasses.replace(o, file=row["file"]) for row in rows for o in row["outcomes"]]
    unmatched = sum(row["unmatched"] for row in rows)
    ceilings = [c for row in rows for c in row["ceilings"]]
    return ErrorDiagnosis(tuple(outcomes), summarize(outcomes, unmatched, ceilings, size))


def summarize(outcomes: Sequence[RegionOutcome], unmatched: int, ceilings: Sequence[float], size: int) -> dict[str, object]:
    """Counts and figures per outcome, the Dice distribution of the hits and the input-size ceiling."""
    counts = Counter(o.outcome for o in outcomes)
    hits = [o for o in outcomes if o.outcome != "missed"]
    dice = np.array([o.dice for o in hits])
    errors = np.array([o.relative_area_error for o in hits], dtype=float)
    per_outcome = {}
    for kind in OUTCOMES:
        group = [o for o in outcomes if o.outcome == kind]
        group_errors = [o.relative_area_error for o in group if o.relative_area_error is not None]
        per_outcome[kind] = {
            "regions": counts.get(kind, 0),
            "mean_dice": round(float(np.mean([o.dice for o in group])), 4) if group else None,
            "mean_relative_area_error": round(float(np.mean(group_errors)), 4) if group_errors else None,
            # What this outcome adds to the signed mean over all hits.
            "share_of_signed_mean": round(float(np.sum(group_errors)) / len(hits), 4) if group_errors and hits else None,
        }
    return {
        "true_regions": len(outcomes),
        "hits": len(hits),
        "reports_matching_no_region": unmatched,
        "outcomes": per_outcome,
        "dice_on_hits_mean": round(float(dice.mean()), 4) if len(dice) else None,
        "dice_on_hits_quartiles": [round(float(q), 4) for q in np.percentile(dice, [25, 50, 75])] if len(dice) else None,
        "signed_mean_relative_area_error": round(float(errors.mean()), 4) if len(errors) else None,
        "network_input_size": size,
        "input_size_dice_ceiling_min": round(float(np.min(ceilings)), 4) if ceilings else None,
        "input_size_dice_ceiling_median": round(float(np.median(ceilings)), 4) if ceilings else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="all 204 images of usgra-seg-train")
    which.add_argument("--folder", type=Path, default=None, help="another set in the usgra-seg layout")
    parser.add_argument("--json", type=Path, default=None, help="write the summary and every region's outcome here")
    args = parser.parse_args(argv)
    folder = args.folder or USGRA
    names = all_names(folder) if (args.all or args.folder) else validation_names()
    report = diagnose(names, folder)
    print(json.dumps(report.summary, indent=2))
    missed = [f"{r.file} ({r.true_area_px} px)" for r in report.regions if r.outcome == "missed"]
    print("missed:", ", ".join(missed) or "none")
    for r in sorted((r for r in report.regions if r.outcome not in ("close", "missed")), key=lambda r: r.dice)[:10]:
        print(f"{r.file}  {r.outcome:7s} Dice {r.dice:.3f}  area {r.true_area_px} px  {r.relative_area_error:+.0%}")
    if args.json:
        record = {"summary": report.summary, "regions": [asdict(r) for r in report.regions]}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
