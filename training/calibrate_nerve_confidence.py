"""Calibrate the learned nerve segmenter's confidence on the fixed validation split.

The network's raw score of a region is its mean nerve probability. Here each
region the learned segmenter reports on a validation image is marked hit or
miss (Dice >= 0.3 with a true nerve region, as :mod:`training.evaluate_nerve`
counts it), and a monotone map raw score -> hit rate is fitted by isotonic
regression (pool-adjacent-violators). The map is written into the model's
JSON as ``confidence_calibration``; the runtime reports the calibrated value
as the nerve's confidence, so "confidence 0.9" means "about 9 in 10 such
results were right on the validation split".

Usage::

    .venv/bin/python -m training.calibrate_nerve_confidence [--model models/nerve_unet.onnx]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.calibration import PixelBox  # noqa: E402
from pipeline.geometry import dice_coefficient  # noqa: E402
from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter  # noqa: E402
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, NerveNet, metadata_path  # noqa: E402
from training.evaluate_nerve import (  # noqa: E402
    HIT_DICE,
    evaluate,
    load_example,
    true_nerve_regions,
    validation_names,
)

#: The in-repo test subset (tests/data/usgra-seg): every 5th validation image.
TEST_SUBSET = REPO / "tests" / "data" / "usgra-seg"


class FlooredSegmenter:
    """A segmenter's nerves at or above a confidence floor: what the pipeline reports."""

    def __init__(self, inner: LearnedNerveSegmenter, floor: float) -> None:
        self.inner, self.floor = inner, floor

    def segment(self, gray, box, *, mm_per_px=None, exclude=None):  # type: ignore[no-untyped-def]
        return [s for s in self.inner.segment(gray, box, mm_per_px=mm_per_px, exclude=exclude) if s.confidence >= self.floor]


def _figures(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "per_image"}


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool-adjacent-violators on ``y`` sorted by ``x``: block upper bounds of x, block means, block sizes."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order].astype(float)
    blocks: list[list[float]] = []  # [sum, count, x_max]
    for xv, yv in zip(xs, ys):
        blocks.append([yv, 1.0, xv])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s, c, xm = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += c
            blocks[-1][2] = xm
    upper = np.array([b[2] for b in blocks])
    mean = np.array([b[0] / b[1] for b in blocks])
    size = np.array([b[1] for b in blocks], dtype=int)
    return upper, mean, size


def raw_scores(model: Path) -> list[tuple[str, float, bool]]:
    # Uncalibrated: every region the network reports, whatever its score.
    seg = LearnedNerveSegmenter(NerveNet(model), LearnedNerveParameters(min_confidence=0.0), calibrate=False)
    rows = []
    for name in validation_names(model):
        gray, labels = load_example(name)
        frame = seg.analyze(gray, PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1))
        truths = true_nerve_regions(labels)
        for region in frame.nerves:
            best = max((dice_coefficient(region.mask, t) for t in truths), default=0.0)
            rows.append((name, float(region.probability), best >= HIT_DICE))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    args = p.parse_args(argv)
    rows = raw_scores(args.model)
    raw = np.array([r[1] for r in rows])
    hit = np.array([r[2] for r in rows])
    upper, mean, size = isotonic(raw, hit)
    table = []
    for lo_conf in (0.0, 0.5, 0.8, 0.9):
        calibrated = np.interp(raw, upper, mean)
        sel = calibrated >= lo_conf
        table.append({"confidence_at_least": lo_conf, "results": int(sel.sum()), "hits": int(hit[sel].sum()),
                      "hit_share": round(float(hit[sel].mean()), 4) if sel.any() else None})
    record = {
        "method": "isotonic regression (pool-adjacent-violators) of hit (Dice >= 0.3 with a true nerve region) on the "
        "region's mean nerve probability; runtime: linear interpolation between the block upper bounds",
        "data": "fixed validation split of usgra-seg-train (the split recorded in this file), every region reported",
        "regions": len(rows),
        "raw_upper": [round(float(u), 6) for u in upper],
        "hit_rate": [round(float(m), 6) for m in mean],
        "block_sizes": [int(s) for s in size],
        "table": table,
    }
    meta_file = metadata_path(args.model)
    meta = json.loads(meta_file.read_text())
    meta["confidence_calibration"] = record
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    # What the pipeline reports: the calibrated confidence with the shipped floor applied.
    calibrated = LearnedNerveSegmenter(NerveNet(args.model))
    floor = LearnedNerveParameters().min_confidence
    meta["validation"]["learned_with_floor"] = {
        "min_confidence": floor,
        **_figures(evaluate(FlooredSegmenter(calibrated, floor), validation_names(args.model))),
    }
    subset = sorted(p.name for p in (TEST_SUBSET / "images").glob("*.png"))
    meta["validation_subset"] = {
        "files": subset,
        "note": "tests/data/usgra-seg: every 5th validation image; reproduced by tests/test_learned_nerve.py",
        "learned": _figures(evaluate(calibrated, subset, folder=TEST_SUBSET)),
    }
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    print("with the floor:", {k: meta["validation"]["learned_with_floor"][k] for k in ("hit_rate", "precision", "vessel_fp_rate")})
    for row in table:
        print(row)
    print(f"wrote confidence_calibration ({len(upper)} blocks) into {meta_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
