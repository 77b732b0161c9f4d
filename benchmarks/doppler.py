"""Intraneural vascularity against synthetic ground truth (issue 19 targets).

Generated colour-Doppler nerve frames (``sample_data/generate.py``:
:func:`make_doppler_nerve_case`, seeds 1000 and up, which neither the tests
nor the tuning used) carry 0-5 small intraneural vessels (4-9 px across),
flow in the artery beside the nerve and 0-2 small vessels outside it, in a
colour box. Each case is written as RGB, PALETTE COLOR and JPEG Baseline
YBR_FULL_422 (quality 92 and 75) and analysed by the shipped pipeline
(``analyze_file``: learned nerve segmenter, in-painting, flow detection).

Reported per photometric:

- vascularity index error (percentage points) against the truth
  (painted flow pixels inside the true contour / true contour pixels), and
  the detector-only error (detected vs painted flow inside the *true* contour,
  which leaves the segmentation out);
- vessel count and grade exact (share of cases);
- CSA change between the same frame with and without flow (RGB);
- flow pixels found on greyscale frames: the flow-free twin of each case as
  RGB (R = G = B), MONOCHROME2, PALETTE COLOR and JPEG YBR_FULL_422 at
  qualities 92 / 75 / 50 (100 frames by default).

Targets (issue 19): index within 1 percentage point, vessel count and grade
exact, 0 flow pixels on greyscale frames, CSA change at most 5 %.

Usage::

    .venv/bin/python benchmarks/doppler.py [--cases 40] [--json benchmarks/results/doppler.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "sample_data"))

import generate as G  # noqa: E402

from pipeline.analysis import analyze_file  # noqa: E402
from pipeline.settings import default_analyzer  # noqa: E402
from pipeline.loading import load_ultrasound  # noqa: E402
from pipeline.measurements.vascularity import detect_colour_flow  # noqa: E402

#: (label, photometric, transfer syntax, JPEG quality)
VARIANTS = (
    ("RGB", "RGB", ExplicitVRLittleEndian, 92),
    ("PALETTE COLOR", "PALETTE COLOR", ExplicitVRLittleEndian, 92),
    ("JPEG YBR_FULL_422 q92", "YBR_FULL_422", JPEGBaseline8Bit, 92),
    ("JPEG YBR_FULL_422 q75", "YBR_FULL_422", JPEGBaseline8Bit, 75),
)
#: Greyscale twins: (label, photometric, transfer syntax, JPEG quality)
GREY_VARIANTS = (
    ("RGB grey", "RGB", ExplicitVRLittleEndian, 92),
    ("MONOCHROME2", "MONOCHROME2", ExplicitVRLittleEndian, 92),
    ("PALETTE COLOR grey", "PALETTE COLOR", ExplicitVRLittleEndian, 92),
    ("JPEG YBR_FULL_422 q92 grey", "YBR_FULL_422", JPEGBaseline8Bit, 92),
    ("JPEG YBR_FULL_422 q75 grey", "YBR_FULL_422", JPEGBaseline8Bit, 75),
    ("JPEG YBR_FULL_422 q50 grey", "YBR_FULL_422", JPEGBaseline8Bit, 50),
)
FIRST_SEED = 1000


def _summary(errors: list[float]) -> dict[str, float]:
    a = np.abs(np.asarray(errors, dtype=float))
    if not len(a):
        return {}
    return {
        "mean_abs_pp": round(float(a.mean()), 3),
        "p95_abs_pp": round(float(np.percentile(a, 95)), 3),
        "max_abs_pp": round(float(a.max()), 3),
        "within_1pp": round(float(np.mean(a <= 1.0)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40, help="generated cases (seeds 1000...)")
    parser.add_argument("--grey-frames", type=int, default=100, help="greyscale frames checked for false flow")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "doppler.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    per_variant: dict[str, dict[str, list]] = {
        v[0]: {"index_err": [], "detector_err": [], "count_ok": [], "grade_ok": [], "missed": []} for v in VARIANTS
    }
    csa_change: list[float] = []
    grey: dict[str, list[int]] = {g[0]: [] for g in GREY_VARIANTS}
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.dcm"
        grey_needed = args.grey_frames
        for k in range(args.cases):
            seed = FIRST_SEED + k
            case = G.make_doppler_nerve_case(seed)
            truth = case["truth"]
            nerve_truth = G.contour_mask(np.asarray(truth["contour_px"]), truth["flow_mask"].shape)
            row = {"seed": seed, "truth_index": round(truth["vascularity_index"], 3), "truth_count": truth["vessel_count"]}
            csa_flow = None
            for label, photometric, ts, quality in VARIANTS:
                G.write_doppler_nerve_file(path, case, photometric=photometric, transfer_syntax=ts, jpeg_quality=quality)
                result = analyze_file(path, default_analyzer())
                frame = result.frames[0] if result.frames else None
                stats = per_variant[label]
                if frame is None or frame.nerve is None or frame.doppler is None:
                    stats["missed"].append(seed)
                    row[label] = "no nerve"
                    continue
                value = frame.doppler.nerve(0)
                if not value.measured:
                    stats["missed"].append(seed)
                    row[label] = value.reason
                    continue
                assert value.vascularity_index is not None
                decoded = load_ultrasound(path).frame(0)
                flow = detect_colour_flow(decoded.color, decoded.calibration, decoded.doppler, gray=decoded.gray).mask
                assert flow is not None
                detector = 100.0 * int((flow & nerve_truth).sum()) / int(nerve_truth.sum())
                stats["index_err"].append(value.vascularity_index - truth["vascularity_index"])
                stats["detector_err"].append(detector - truth["vascularity_index"])
                stats["count_ok"].append(value.vessel_count == truth["vessel_count"])
                stats["grade_ok"].append(value.vascularity_grade == truth["vascularity_grade"])
                row[label] = {"index": round(value.vascularity_index, 3), "count": value.vessel_count,
                              "csa_mm2": round(frame.nerve.cross_sectional_area_mm2 or 0.0, 3)}
                if label == "RGB":
                    csa_flow = frame.nerve.cross_sectional_area_mm2
            # the same frame without flow: CSA unchanged, and greyscale frames without any flow pixel
            G.write_doppler_nerve_file(path, case, photometric="RGB", flow=False)
            plain = analyze_file(path, default_analyzer())
            if csa_flow is not None and plain.frames and plain.frames[0].nerve is not None:
                csa_plain = plain.frames[0].nerve.cross_sectional_area_mm2
                if csa_plain:
                    csa_change.append(100.0 * (csa_flow - csa_plain) / csa_plain)
                    row["csa_change_pct"] = round(csa_change[-1], 3)
            for label, photometric, ts, quality in GREY_VARIANTS:
                if grey_needed <= 0:
                    break
                G.write_doppler_nerve_file(path, case, photometric=photometric, transfer_syntax=ts, flow=False,
                                           jpeg_quality=quality)
                frame = load_ultrasound(path).frame(0)
                flow_map = detect_colour_flow(frame.color, frame.calibration, frame.doppler, gray=frame.gray)
                grey[label].append(flow_map.flow_pixel_count)
                grey_needed -= 1
            cases.append(row)
            print(json.dumps(row), flush=True)
        # more greyscale frames than cases x variants: further seeds, twins only
        seed = FIRST_SEED + args.cases
        while grey_needed > 0:
            case = G.make_doppler_nerve_case(seed)
            for label, photometric, ts, quality in GREY_VARIANTS:
                if grey_needed <= 0:
                    break
                G.write_doppler_nerve_file(path, case, photometric=photometric, transfer_syntax=ts, flow=False,
                                           jpeg_quality=quality)
                frame = load_ultrasound(path).frame(0)
                grey[label].append(detect_colour_flow(frame.color, frame.calibration, frame.doppler, gray=frame.gray).flow_pixel_count)
                grey_needed -= 1
            seed += 1

    report: dict = {"cases": args.cases, "first_seed": FIRST_SEED, "variants": {}}
    for label, stats in per_variant.items():
        n = len(stats["count_ok"])
        report["variants"][label] = {
            "measured": n,
            "not_measured_seeds": stats["missed"],
            "vascularity_index": _summary(stats["index_err"]),
            "vascularity_index_detector_only": _summary(stats["detector_err"]),
            "vessel_count_exact": round(float(np.mean(stats["count_ok"])), 3) if n else None,
            "grade_exact": round(float(np.mean(stats["grade_ok"])), 3) if n else None,
        }
    change = np.abs(np.asarray(csa_change))
    report["csa_change_with_flow_pct"] = {
        "n": int(len(change)),
        "mean_abs": round(float(change.mean()), 3) if len(change) else None,
        "max_abs": round(float(change.max()), 3) if len(change) else None,
        "within_5pct": round(float(np.mean(change <= 5.0)), 3) if len(change) else None,
    }
    report["greyscale_frames"] = {
        "n": int(sum(len(v) for v in grey.values())),
        "flow_pixels_found": int(sum(sum(v) for v in grey.values())),
        "per_variant": {k: {"frames": len(v), "flow_pixels": int(sum(v))} for k, v in grey.items()},
    }
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["per_case"] = cases
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    summary = {k: v for k, v in report.items() if k != "per_case"}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
