"""Median time per 800x600 frame for load + nerve protocol and load + muscle protocol, on one core.

Each single-frame 800x600 file of ``sample_data/`` is loaded from disk,
decoded, and measured with the nerve protocol, and (separately) loaded and
measured with the muscle protocol (whatever it shows), ``--repeat`` times,
with the shipped settings: the configured nerve segmenter (learned) and
muscle boundary finder (learned aponeurosis network), burned-in annotations
excluded. Threads are pinned to one.

Usage::

    .venv/bin/python benchmarks/speed.py [--repeat 20]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.analysis import analyze_frame  # noqa: E402
from pipeline.loading import load_ultrasound  # noqa: E402
from pipeline.protocols import Laterality, Protocol, ProtocolChoice  # noqa: E402
from pipeline.segmentation.factory import make_boundary_finder, make_segmenter  # noqa: E402
from pipeline.segmentation.muscle_bands import describe_boundaries  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "speed.json")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    segmenter = make_segmenter()
    finder = make_boundary_finder()
    nerve = ProtocolChoice(Protocol.NERVE, "nerve", "override", "nerve")
    muscle = ProtocolChoice(Protocol.MUSCLE, "skeletal muscle", "override", "muscle")
    files = []
    for path in sorted((REPO / "sample_data").glob("*.dcm")):
        image = load_ultrasound(path)
        if image.number_of_frames == 1 and (image.rows, image.columns) == (600, 800):
            files.append(path)

    def timed(path: Path, choice: ProtocolChoice) -> float:
        start = time.perf_counter()
        frame = load_ultrasound(path).frame(0)
        analyze_frame(frame, choice, Laterality.UNKNOWN, segmenter=segmenter, boundary_finder=finder)
        return time.perf_counter() - start

    report: dict = {"repeat": args.repeat, "nerve_segmenter": f"{segmenter.name} {segmenter.version}",
                    "muscle_boundaries": describe_boundaries(finder)}
    for name, choice in (("nerve", nerve), ("muscle", muscle)):
        per_file, all_times = {}, []
        for path in files:
            times = [timed(path, choice) for _ in range(args.repeat)]
            per_file[path.name] = statistics.median(times) * 1000
            all_times.extend(times)
        overall = statistics.median(all_times) * 1000
        print(f"load + {name} protocol, median per 800x600 frame (1 thread): {overall:.1f} ms over {len(all_times)} runs")
        for file, ms in per_file.items():
            print(f"    {file:32s} {ms:6.1f} ms")
        report[f"{name}_median_ms"] = overall
        report[f"{name}_per_file_median_ms"] = per_file
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
