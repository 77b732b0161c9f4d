"""Median time per 800x600 frame for load + both protocols, on one core.

Each single-frame 800x600 file of ``sample_data/`` is loaded from disk,
decoded, and measured with the nerve protocol and with the muscle protocol
(whatever it shows), ``--repeat`` times. Threads are pinned to one.

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
from pipeline.segmentation import ClassicalNerveSegmenter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "speed.json")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    segmenter = ClassicalNerveSegmenter()
    nerve = ProtocolChoice(Protocol.NERVE, "nerve", "override", "nerve")
    muscle = ProtocolChoice(Protocol.MUSCLE, "skeletal muscle", "override", "muscle")
    files = []
    for path in sorted((REPO / "sample_data").glob("*.dcm")):
        image = load_ultrasound(path)
        if image.number_of_frames == 1 and (image.rows, image.columns) == (600, 800):
            files.append(path)
    per_file = {}
    all_times = []
    for path in files:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            image = load_ultrasound(path)
            frame = image.frame(0)
            analyze_frame(frame, nerve, Laterality.UNKNOWN, segmenter=segmenter)
            analyze_frame(frame, muscle, Laterality.UNKNOWN, segmenter=segmenter)
            times.append(time.perf_counter() - start)
        per_file[path.name] = statistics.median(times) * 1000
        all_times.extend(times)
        print(f"{path.name:32s} median {per_file[path.name]:6.1f} ms")
    overall = statistics.median(all_times) * 1000
    print(f"median per 800x600 frame (load + nerve + muscle, 1 thread): {overall:.1f} ms over {len(all_times)} runs")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"median_ms": overall, "per_file_median_ms": per_file, "repeat": args.repeat}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
