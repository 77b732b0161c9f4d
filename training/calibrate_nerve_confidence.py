"""Calibrate the learned nerve segmenter's confidence on the fixed validation split, as shipped.

The network's raw score of a region is its mean nerve probability. Here each
region the learned segmenter reports on a validation image is marked hit or
miss (Dice >= 0.3 with a true nerve region, as :mod:`training.evaluate_nerve`
counts it, on the mask of the *reported contour*), and a monotone map raw
score -> hit rate is fitted by isotonic regression (pool-adjacent-violators).
The map is written into the model's JSON as ``confidence_calibration``; the
runtime reports the calibrated value as the nerve's confidence, so
"confidence 0.9" means "about 9 in 10 such results were right on the
validation split".

The segmenter is the shipped one: the ``nerve: learned:`` settings of
``configs/segmentation.yaml`` read through
:func:`pipeline.segmentation.factory.load_segmentation_config` (the outline
included: ``outline: refined``), with the floor lowered to 0 so that every
region counts. The score does not depend on the outline; a hit can (the
outline decides the Dice).

Refit policy (``--refit``): ``auto`` (default) keeps the stored map when it
still holds for the shipped outline (results with calibrated confidence
>= 0.8 are hits at least 95 % of the time) and refits it otherwise; ``yes``
always refits; ``no`` never does. Either way the table of hit shares per
confidence bin is recomputed with the shipped outline, the hits of the
network's own outline are recorded beside it, and the JSON says which
outline the map was fitted with.

Also written (what the pipeline reports: calibrated confidence, floor
applied): ``validation.learned_with_floor`` (shipped outline) and
``validation.learned_network_outline_with_floor``; the same two on the
training split (``training_split``); and ``validation_subset`` (the in-repo
test images, both outlines).

Usage::

    .venv/bin/python -m training.calibrate_nerve_confidence [--model models/nerve_unet.onnx] [--refit auto|yes|no]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.calibration import PixelBox  # noqa: E402
from pipeline.geometry import dice_coefficient  # noqa: E402
from pipeline.measurements.nerve import contour_mask  # noqa: E402
from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter  # noqa: E402
from pipeline.segmentation.nerve_confidence import ConfidenceCalibration  # noqa: E402
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, NerveNet, metadata_path  # noqa: E402
from training.evaluate_nerve import (  # noqa: E402
    HIT_DICE,
    FlooredSegmenter,
    _model_runtime,
    evaluate,
    load_example,
    reported_figures,
    settings_record,
    shipped_learned_parameters,
    true_nerve_regions,
    validation_names,
)

#: The in-repo test subset (tests/data/usgra-seg): every 5th validation image.
TEST_SUBSET = REPO / "tests" / "data" / "usgra-seg"
#: Confidence bins of the table; the requirement: confidence >= REQUIRED_AT -> hits >= REQUIRED_SHARE.
BINS = (0.0, 0.5, 0.8, 0.9)
REQUIRED_AT, REQUIRED_SHARE = 0.8, 0.95
#: Scores this close above a stored block bound count to the block below it (see :func:`block_check`).
BOUND_TOLERANCE = 2e-5


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


def raw_scores(net: NerveNet, parameters: LearnedNerveParameters) -> list[tuple[str, float, bool]]:
    """(file, raw score, hit) of every region the segmenter reports on the validation split.

    Uncalibrated and without a floor: every region the network reports,
    whatever its score; the hit is judged on the reported contour's mask
    (the outline of ``parameters``), as :func:`training.evaluate_nerve.evaluate` judges it.
    """
    seg = LearnedNerveSegmenter(net, dataclasses.replace(parameters, min_confidence=0.0), calibrate=False)
    rows = []
    for name in validation_names(net.path):
        gray, labels = load_example(name)
        truths = true_nerve_regions(labels)
        box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1)
        for found in seg.segment(gray, box, mm_per_px=None):
            mask = contour_mask(found.contour_px, gray.shape)
            best = max((dice_coefficient(mask, t) for t in truths), default=0.0)
            # Uncalibrated, the confidence is the raw score (the region's mean nerve probability).
            rows.append((name, float(found.confidence), best >= HIT_DICE))
    return rows


def bin_table(calibrated: np.ndarray, hit: np.ndarray) -> list[dict[str, Any]]:
    table = []
    for lo_conf in BINS:
        sel = calibrated >= lo_conf
        table.append({"confidence_at_least": lo_conf, "results": int(sel.sum()), "hits": int(hit[sel].sum()),
                      "hit_share": round(float(hit[sel].mean()), 4) if sel.any() else None})
    return table


def holds(table: list[dict[str, Any]]) -> bool:
    row = next(r for r in table if r["confidence_at_least"] == REQUIRED_AT)
    return row["hit_share"] is None or row["hit_share"] >= REQUIRED_SHARE


def block_check(upper: list[float], raw: np.ndarray, hit: np.ndarray) -> list[dict[str, Any]]:
    """Hits per block of a stored map (regions with raw score in (previous upper, upper]).

    The stored bounds are rounded to 6 decimals, and the model runtimes
    (onnxruntime, OpenCV DNN) agree to about 1e-5: a score within
    ``BOUND_TOLERANCE`` above a bound counts to the block below it.
    """
    out, lo = [], -np.inf
    for k, u in enumerate(upper):
        top = u + BOUND_TOLERANCE
        sel = (raw > lo) & (raw <= top) if k < len(upper) - 1 else raw > lo
        lo = top
        out.append({"raw_upper": u, "regions": int(sel.sum()), "hits": int(hit[sel].sum())})
    return out


def compare_maps(
    upper_a: list[float],
    rate_a: list[float],
    upper_b: np.ndarray,
    rate_b: np.ndarray,
    *,
    parameters: LearnedNerveParameters,
    raw: np.ndarray,
) -> dict[str, Any]:
    """How two calibration maps differ over every raw score (a grid of 0..1 in steps of 1e-5).

    ``floor_decisions_differ``: scores for which one map reports (confidence
    >= the floor) and the other refuses; ``max_difference_at_or_above_floor``:
    the largest difference of the confidences where either map reaches the floor;
    ``floor_decisions_differ_on_split``: the same count over the split's regions (scores ``raw``).
    """
    grid = np.linspace(0.0, 1.0, 100_001)
    a = np.clip(np.interp(grid, upper_a, rate_a), 0.0, 1.0)
    b = np.clip(np.interp(grid, upper_b, rate_b), 0.0, 1.0)
    floor = parameters.min_confidence
    either = (a >= floor) | (b >= floor)
    return {
        "floor_decisions_differ": int(((a >= floor) != (b >= floor)).sum()),
        "max_difference_at_or_above_floor": round(float(np.abs(a - b)[either].max()), 6) if either.any() else 0.0,
        "max_difference": round(float(np.abs(a - b).max()), 6),
        "floor_decisions_differ_on_split": int(
            ((np.interp(raw, upper_a, rate_a) >= floor) != (np.interp(raw, upper_b, rate_b) >= floor)).sum()
        ),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--refit", choices=("auto", "yes", "no"), default="auto")
    args = p.parse_args(argv)
    net = NerveNet(args.model)
    shipped = shipped_learned_parameters()
    network = dataclasses.replace(shipped, outline="network")
    outlines = {shipped.outline: shipped, "network": network}

    rows = {name: raw_scores(net, params) for name, params in outlines.items()}
    raw = np.array([r[1] for r in rows[shipped.outline]])
    hit = np.array([r[2] for r in rows[shipped.outline]])
    assert all(np.allclose(raw, [r[1] for r in rows[o]]) for o in rows), "the raw score must not depend on the outline"
    hits_by_outline = {o: int(sum(r[2] for r in rs)) for o, rs in rows.items()}
    changed = [
        {"file": a[0], "raw": round(a[1], 6), "hit_" + shipped.outline: a[2], "hit_network": b[2]}
        for a, b in zip(rows[shipped.outline], rows["network"])
        if a[2] != b[2]
    ]

    meta_file = metadata_path(args.model)
    meta = json.loads(meta_file.read_text())
    stored = meta.get("confidence_calibration") or {}
    stored_cal = ConfidenceCalibration.from_metadata(meta)
    stored_table = bin_table(np.array([stored_cal(r) for r in raw]), hit) if stored_cal.fitted else None
    stored_holds = stored_table is not None and holds(stored_table)
    refit = args.refit == "yes" or (args.refit == "auto" and not stored_holds)

    upper, mean, size = isotonic(raw, hit)
    refit_table = bin_table(np.interp(raw, upper, mean), hit)
    if refit:
        record: dict[str, Any] = {
            "method": "isotonic regression (pool-adjacent-violators) of hit (Dice >= 0.3 with a true nerve region) on the "
            "region's mean nerve probability; runtime: linear interpolation between the block upper bounds",
            "data": "fixed validation split of usgra-seg-train (the split recorded in this file), every region reported",
            "fitted_with_outline": shipped.outline,
            "regions": len(raw),
            "raw_upper": [round(float(u), 6) for u in upper],
            "hit_rate": [round(float(m), 6) for m in mean],
            "block_sizes": [int(s) for s in size],
        }
        table = refit_table
    else:
        record = {k: v for k, v in stored.items() if k not in ("table", "check", "checked_with_outline")}
        record.setdefault("fitted_with_outline", "network")
        assert stored_table is not None  # the stored map holds, so it was read
        table = stored_table
    record["table"] = table
    record["checked_with_outline"] = shipped.outline
    record["check"] = {
        "what": f"hits of every region with the shipped outline ({shipped.outline}) and with the network's outline; "
        f"requirement: calibrated confidence >= {REQUIRED_AT} -> hits >= {REQUIRED_SHARE:.0%}",
        "settings": shipped.as_dict(),
        "hits_by_outline": hits_by_outline,
        "regions_whose_hit_differs": changed,
        "stored_map_holds": stored_holds,
        "refit": refit,
        "hits_per_block_of_the_map": block_check(record["raw_upper"], raw, hit),
        "refit_would_give": {
            "raw_upper": [round(float(u), 6) for u in upper],
            "hit_rate": [round(float(m), 6) for m in mean],
            "block_sizes": [int(s) for s in size],
            "table": refit_table,
            **compare_maps(record["raw_upper"], record["hit_rate"], upper, mean, parameters=shipped, raw=raw),
        },
    }
    meta["confidence_calibration"] = record
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")

    # What the pipeline reports: the calibrated confidence with the shipped floor applied, both outlines.
    # The network is read again so that its segmenters calibrate with the map just written, not the old one.
    net = NerveNet(args.model)
    floor = shipped.min_confidence
    val_names = validation_names(args.model)
    train_names = list(meta["split"]["train"])
    subset = sorted(p.name for p in (TEST_SUBSET / "images").glob("*.png"))
    keys = {shipped.outline: "learned", "network": "learned_network_outline"}
    meta.setdefault("training_split", {})
    meta["training_split"]["note"] = (
        "the training images of usgra-seg-train (the model was trained on them): what the pipeline reports, "
        "calibrated confidence, floor applied; figures as training/evaluate_nerve.py defines them"
    )
    meta["validation_subset"] = {
        "files": subset,
        "note": "tests/data/usgra-seg: every 5th validation image; what the pipeline reports (calibrated confidence, "
        "floor applied), shipped outline and network outline; reproduced by tests/test_learned_nerve.py",
    }
    for outline, params in outlines.items():
        seg = FlooredSegmenter(LearnedNerveSegmenter(net, params), floor)
        key = keys[outline] + "_with_floor"
        info = {"min_confidence": floor, **settings_record(params)}
        if _model_runtime(seg.inner):
            info["model_runtime"] = _model_runtime(seg.inner)
        meta["validation"][key] = {**info, **_figures(reported_figures(seg.inner, val_names))}
        meta["training_split"][key] = {**info, **_figures(evaluate(seg, train_names))}
        meta["validation_subset"][keys[outline]] = {**info, **_figures(evaluate(seg, subset, folder=TEST_SUBSET))}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")

    print(f"regions {len(raw)}; hits by outline {hits_by_outline}; hit differs on {changed}")
    print(f"stored map ({stored.get('fitted_with_outline', 'network')} outline) holds with the {shipped.outline} "
          f"outline: {stored_holds}; refit: {refit}")
    for row in table:
        print(row)
    if not refit:
        print("a refit would give:", record["check"]["refit_would_give"])
    for split, figures in (("validation", meta["validation"]), ("training", meta["training_split"])):
        for key in ("learned_with_floor", "learned_network_outline_with_floor"):
            f = figures[key]
            err = f["area_error_px"]
            print(f"{split:10s} {f['outline']:8s} hit {f['hit_rate']:.1%} Dice {f['dice_on_hits']:.3f} "
                  f"median |err| {err['median_abs_relative']:.1%} signed {err['mean_signed_relative']:+.1%} "
                  f"precision {f['precision']:.1%} vessel FP {f['vessel_fp']}/{f['reported_nerves']}")
    print(f"wrote confidence_calibration ({len(record['raw_upper'])} blocks) and the floored figures into {meta_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
