"""How the nerve segmenter's figures grow with the number of annotated training images.

Scores networks trained on different shares of the training split (the
cross-validation networks of ``train_nerve_segmenter.py --fold K/N`` train on
(N-1)/N of it; the shipped one on all of it) with the shipped outline
settings, on the fixed validation split and, when given, on an independent
test folder in the usgra-seg layout. No confidence floor is applied: the
fold networks have no calibration map, so the figures compare like with like.
Figures of networks trained on the same number of images are pooled.

Usage::

    .venv/bin/python -m training.learning_curve MODEL.onnx [MODEL.onnx ...] [--test DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.segmentation.nerve_model import metadata_path  # noqa: E402
from training.evaluate_nerve import all_names, make, score_images, summarize, validation_names  # noqa: E402


@dataclass(frozen=True)
class CurvePoint:
    """Figures of the networks trained on ``training_images`` real images, pooled over them and both sets.

    Attributes
    ----------
    training_images : int
        Real annotated images each network was trained on.
    networks : int
        How many networks were pooled.
    true_regions : int
        True nerve regions scored (per network, summed).
    hit_rate, dice_on_hits, median_abs_relative_area_error : float
        As :func:`training.evaluate_nerve.summarize` defines them.
    """

    training_images: int
    networks: int
    true_regions: int
    hit_rate: float
    dice_on_hits: float
    median_abs_relative_area_error: float


def training_images(model: Path) -> int:
    """Real annotated images the network was trained on (from its JSON)."""
    return int(json.loads(metadata_path(model).read_text())["training"]["real_images"])


def score_network(model: Path, test_folder: Path | None = None) -> list[dict]:
    """Per-image rows of one network (shipped outline, no floor) on the validation split and the test folder."""
    segmenter, _ = make("learned", model)
    rows, _ = score_images(segmenter, validation_names(model))
    if test_folder is not None:
        rows += score_images(segmenter, all_names(test_folder), folder=test_folder)[0]
    return rows


def learning_curve(models: Sequence[Path], test_folder: Path | None = None) -> list[CurvePoint]:
    """One :class:`CurvePoint` per training-set size, smallest first."""
    pooled: dict[int, list[list[dict]]] = defaultdict(list)
    for model in models:
        pooled[training_images(model)].append(score_network(model, test_folder))
    points = []
    for size in sorted(pooled):
        rows = [row for network in pooled[size] for row in network]
        figures = summarize(rows)
        points.append(
            CurvePoint(
                training_images=size,
                networks=len(pooled[size]),
                true_regions=int(figures["true_nerve_regions"]),
                hit_rate=round(float(figures["hit_rate"]), 4),
                dice_on_hits=round(float(figures["dice_on_hits"]), 4),
                median_abs_relative_area_error=round(float(figures["area_error_px"]["median_abs_relative"]), 4),
            )
        )
    return points


def log_fit(points: Sequence[CurvePoint], field: str) -> tuple[float, float]:
    """Least-squares ``value = a + b * log2(training_images)``: (a, b); b is the gain per doubling."""
    x = np.log2([p.training_images for p in points])
    y = np.array([getattr(p, field) for p in points], dtype=float)
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--test", type=Path, default=None, help="independent test folder (usgra-seg layout)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    points = learning_curve(args.models, args.test)
    sets = "the fixed validation split" + (f" and {args.test}" if args.test else "")
    print(f"scored on {sets}; shipped outline, no floor")
    for p in points:
        print(
            f"{p.training_images:4d} images ({p.networks} network(s), {p.true_regions} regions): hit {p.hit_rate:.1%}  "
            f"Dice on hits {p.dice_on_hits:.3f}  median |area error| {p.median_abs_relative_area_error:.1%}"
        )
    fits = {}
    if len(points) >= 2:
        for field in ("hit_rate", "dice_on_hits", "median_abs_relative_area_error"):
            a, b = log_fit(points, field)
            fits[field] = {"intercept": round(a, 4), "per_doubling": round(b, 4)}
            print(f"{field}: {b:+.4f} per doubling of the training images")
    if args.json:
        args.json.write_text(json.dumps({"points": [asdict(p) for p in points], "log2_fits": fits}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
