"""Muscle thickness on real scanner frames against the DL_Track aponeurosis masks.

Data: ``dl-track-apo-train`` (Apache-2.0, DL_Track, N. J. Cronin et al.;
njcronin/DL_Track) from ``--shared`` (default ``../shared/data``): the
validation part of the block split in ``training/aponeurosis_split.json``
(never trained on).

Each frame is measured as the product measures it (burned-in annotations
excluded, the tissue region estimated from the pixels as the loader does for a frame without
a Sequence of Ultrasound Regions, no pixel size: pixels, with
the default 0.1 mm/px size priors). The truth is the gap between the mask's
bands **along the product's caliper line**: the caliper line is extended
across the frame, the mask runs it crosses are found, and the gap between the
inner edges of the first two runs (the superficial muscle's bands) is the
reference. Where the caliper crosses fewer than two bands, or the image was
refused, the reference is the vertical gap at the caliper's (or the site's)
column.

Figures: share of frames within 5 % of the reference; gross failures (more
than 15 % off, or no thickness); of the thicknesses reported, the share more
than 15 % off; refusals with their reasons.

Usage::

    .venv/bin/python benchmarks/muscle_real.py [--classical] [--json out.json] [--model M.onnx]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.annotations import burned_in_annotation_mask  # noqa: E402
from pipeline.calibration import PixelBox  # noqa: E402
from pipeline.tissue_area import estimate_tissue_box  # noqa: E402
from pipeline.errors import MskusInputError  # noqa: E402
from pipeline.measurements.muscle import ThicknessSite, measure_muscle  # noqa: E402

DEFAULT_SHARED = Path(os.environ.get("MSKUS_SHARED_DATA") or REPO.parent / "shared" / "data")
SPLIT_FILE = REPO / "training" / "aponeurosis_split.json"


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs (inclusive) of the True runs of a 1-D boolean array."""
    padded = np.concatenate([[False], values, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def gap_along_line(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], step: float = 0.25) -> float | None:
    """Gap (px) between the inner edges of the first two mask bands crossed by the line p0 -> p1, extended."""
    (x0, y0), (x1, y1) = p0, p1
    length = float(np.hypot(x1 - x0, y1 - y0))
    if length < 1:
        return None
    dx, dy = (x1 - x0) / length, (y1 - y0) / length
    h, w = mask.shape
    t = np.arange(-2.0 * max(h, w), 2.0 * max(h, w), step)
    xs, ys = x0 + t * dx, y0 + t * dy
    inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
    t, xs, ys = t[inside], xs[inside], ys[inside]
    if t.size == 0:
        return None
    on = mask[np.rint(ys).astype(int), np.rint(xs).astype(int)]
    runs = [r for r in _runs(on) if (r[1] - r[0] + 1) * step >= 1.0]
    if len(runs) < 2:
        return None
    return float(t[runs[1][0]] - t[runs[0][1]] - step)


def vertical_gap(mask: np.ndarray, x: float) -> float | None:
    col = mask[:, int(round(np.clip(x, 0, mask.shape[1] - 1)))]
    runs = [r for r in _runs(col) if r[1] - r[0] + 1 >= 1]
    if len(runs) < 2:
        return None
    return float(runs[1][0] - runs[0][1] - 1)


def load(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    gray = cv2.imread(str(folder / "images" / name), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(folder / "masks" / name), cv2.IMREAD_GRAYSCALE)
    return gray, mask > 127


def measure_frame(gray: np.ndarray, finder, site: ThicknessSite | None = None, *, whole_frame: bool = False):
    # As the loader does for a frame without a Sequence of Ultrasound Regions (or, with ``whole_frame``,
    # as for a file whose region covers the whole frame).
    box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1) if whole_frame else estimate_tissue_box(gray)
    exclude = burned_in_annotation_mask(gray, box)
    return measure_muscle(gray, box, mm_per_px_x=None, mm_per_px_y=None, exclude=exclude,
                          boundary_finder=finder, site=site)


def evaluate(folder: Path, names: list[str], finder, *, whole_frame: bool = False) -> dict:
    rows = []
    cv2.setNumThreads(1)
    for name in names:
        gray, mask = load(folder, name)
        t0 = time.perf_counter()
        try:
            m = measure_frame(gray, finder, whole_frame=whole_frame)
        except MskusInputError as exc:
            ms = 1000 * (time.perf_counter() - t0)
            box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1) if whole_frame else estimate_tissue_box(gray)
            truth = vertical_gap(mask, (box.x0 + box.x1) / 2)
            rows.append({"file": name, "thickness_px": None, "truth_px": truth, "reason": str(exc), "ms": ms})
            continue
        ms = 1000 * (time.perf_counter() - t0)
        p0, p1 = m.caliper_px
        truth = gap_along_line(mask, p0, p1)
        where = "caliper line"
        if truth is None:
            truth, where = vertical_gap(mask, p0[0]), "vertical"
        rows.append({"file": name, "thickness_px": m.thickness_px, "truth_px": truth, "truth_at": where,
                     "confidence": m.confidence, "boundaries": m.boundaries,
                     "boundary_agreement": m.boundary_agreement, "ms": ms})
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    scored = [r for r in rows if r["truth_px"]]
    reported = [r for r in scored if r["thickness_px"] is not None]
    for r in reported:
        r["rel_error"] = (r["thickness_px"] - r["truth_px"]) / r["truth_px"]
    within5 = sum(abs(r["rel_error"]) <= 0.05 for r in reported)
    off15 = sum(abs(r["rel_error"]) > 0.15 for r in reported)
    refused = [r for r in scored if r["thickness_px"] is None]
    n = len(scored)
    rel = np.array([r["rel_error"] for r in reported]) if reported else np.zeros(0)
    return {
        "frames": len(rows),
        "frames_with_reference": n,
        "reported": len(reported),
        "refused": len(refused),
        "within_5pct": within5 / n if n else None,
        "gross_failures": (off15 + len(refused)) / n if n else None,
        "reported_off_15pct": off15 / len(reported) if reported else None,
        "median_abs_rel_error": float(np.median(np.abs(rel))) if rel.size else None,
        "mean_signed_rel_error": float(np.mean(rel)) if rel.size else None,
        "refusal_reasons": dict(Counter(r["reason"].split(":")[0] for r in refused)),
        "ms_per_frame_median": float(np.median([r["ms"] for r in rows])) if rows else None,
        "per_image": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    p.add_argument("--classical", action="store_true", help="the classical band search (no network)")
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--part", choices=["validation", "train"], default="validation")
    p.add_argument("--whole-frame", action="store_true", help="the whole frame as the tissue region")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    folder = args.shared / "real" / "dl-track-apo-train"
    if not folder.is_dir():
        print(f"muscle_real: data set not found: looked for {folder} (use --shared DIR)", file=sys.stderr)
        return 1
    names = json.loads(SPLIT_FILE.read_text())[args.part]
    finder = None
    if not args.classical:
        from pipeline.segmentation.aponeurosis import LearnedAponeurosisFinder

        finder = LearnedAponeurosisFinder(args.model) if args.model else LearnedAponeurosisFinder()
    report = evaluate(folder, names, finder, whole_frame=args.whole_frame)
    short = {k: v for k, v in report.items() if k != "per_image"}
    print(json.dumps(short, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
