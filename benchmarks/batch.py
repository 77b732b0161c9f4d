"""Throughput, scaling and memory of ``mskus batch`` on a generated cohort.

A cohort of ``--frames`` frames (default 10,000) is made from ``sample_data/``:
10-frame cines (the RLE nerve cine as it is, and a muscle cine built from the
muscle image with fresh speckle-like noise per frame), four per study, each
with new patient, study, series and SOP UIDs. ``mskus batch`` is then run on
it with each ``--workers`` count into a fresh output folder, as a separate
process; the resident memory of the whole process tree (coordinator,
forkserver and workers) is sampled every 0.2 s with psutil.

Reported per run: wall time, frames/s, CPU seconds of the whole tree
(sampled with psutil) and the cores that made use of (CPU / wall: on a shared
machine, fewer than the workers means other load took the rest), peak RSS of
the tree (sum over the processes alive at the same moment) and of the largest
single process; and the scaling ratio fps(N) / fps(1) against the target
0.8 x N.

Usage::

    .venv/bin/python benchmarks/batch.py                      # 10,000 frames, 1 and 2 workers
    .venv/bin/python benchmarks/batch.py --frames 800 --workers 1 2 --no-overlays

Targets (issue "batch mode"): 10,000 frames in <= 5 min on 2 cores, scaling
>= 0.8 x workers, peak RSS <= 1 GB.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import RLELossless, generate_uid

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
logger = logging.getLogger("benchmarks.batch")

FRAMES_PER_CINE = 10
CINES_PER_STUDY = 4


def _muscle_cine() -> pydicom.Dataset:
    """A 10-frame RLE muscle cine from ``04_muscle_mono.dcm`` (new noise per frame)."""
    ds = pydicom.dcmread(SAMPLE / "04_muscle_mono.dcm")
    base = ds.pixel_array.astype(np.int16)
    rng = np.random.default_rng(2024)
    frames = np.stack(
        [np.clip(base + rng.integers(-3, 4, size=base.shape), 0, 255).astype(np.uint8) for _ in range(FRAMES_PER_CINE)]
    )
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.NumberOfFrames = FRAMES_PER_CINE
    ds.FrameTime = 33.333
    ds.FrameIncrementPointer = 0x00181063
    ds.compress(RLELossless, frames)
    return ds


def make_cohort(folder: Path, n_frames: int) -> int:
    """Write cines until ``n_frames`` frames; return the number of files (reused when already there)."""
    stamp = folder / ".cohort.json"  # hidden: mskus batch skips it
    if stamp.is_file() and json.loads(stamp.read_text()).get("frames") == n_frames:
        return int(json.loads(stamp.read_text())["files"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    templates = [pydicom.dcmread(SAMPLE / "07_nerve_cine.dcm"), _muscle_cine()]
    n_files = -(-n_frames // FRAMES_PER_CINE)
    for i in range(n_files):
        study, number = divmod(i, CINES_PER_STUDY)
        ds = copy.deepcopy(templates[i % 2])
        ds.PatientID = f"BENCH-{study:05d}"
        ds.PatientName = f"BENCH^{study:05d}"
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["bench", "study", str(study)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["bench", "series", str(i)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["bench", "sop", str(i)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number + 1
        path = folder / f"P{study:05d}" / f"IM_{number + 1:04d}.dcm"
        path.parent.mkdir(exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    stamp.write_text(json.dumps({"frames": n_frames, "files": n_files}))
    return n_files


def run_once(data: Path, out: Path, workers: int, overlays: bool) -> dict[str, float]:
    """One ``mskus batch`` run as a subprocess; wall time and peak RSS of its process tree."""
    import psutil

    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "mskus", "batch", str(data), "--out", str(out), "--workers", str(workers), "--no-progress"]
    if not overlays:
        command.append("--no-overlays")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(process.pid)
    peak_tree = peak_single = 0
    cpu_seen: dict[int, float] = {}  # last CPU seconds seen per process of the tree
    while process.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = []
        for member in members:
            try:
                with member.oneshot():
                    rss.append(member.memory_info().rss)
                    times = member.cpu_times()
                cpu_seen[member.pid] = times.user + times.system
            except psutil.NoSuchProcess:
                pass
        peak_tree = max(peak_tree, sum(rss))
        peak_single = max(peak_single, max(rss, default=0))
        time.sleep(0.2)
    output = process.communicate()[0]
    wall = time.perf_counter() - started
    cpu = sum(cpu_seen.values())  # misses at most the last 0.2 s of each process
    coordinator_cpu = cpu_seen.get(process.pid, 0.0)
    if process.returncode != 0:
        raise RuntimeError(f"mskus batch failed ({process.returncode}):\n{output}")
    rows = sum(1 for _ in open(out / "measurements.csv")) - 1
    frames = len({tuple(line.split(",")[2:4]) for line in list(open(out / "measurements.csv"))[1:]})
    return {
        "workers": workers,
        "frames": frames,
        "rows": rows,
        "seconds": round(wall, 2),
        "frames_per_s": round(frames / wall, 2),
        "cpu_seconds": round(cpu, 1),
        "cpu_ms_per_frame": round(1000 * cpu / max(frames, 1), 1),
        "cores_used": round(cpu / wall, 2),
        "coordinator_cpu_seconds": round(coordinator_cpu, 1),
        "load_average_before": round(load_before, 2),
        "peak_rss_tree_mb": round(peak_tree / 2**20, 1),
        "peak_rss_single_mb": round(peak_single / 2**20, 1),
        "srs": len(list(out.glob("*.dcm"))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", type=Path, default=Path("/tmp/mskus-batch-bench/in"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/mskus-batch-bench/out"))
    parser.add_argument("--no-overlays", dest="overlays", action="store_false")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "batch.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    started = time.perf_counter()
    n_files = make_cohort(args.data, args.frames)
    logger.info("cohort: %d frames in %d files (%.0f s)", args.frames, n_files, time.perf_counter() - started)
    runs = []
    for workers in args.workers:
        result = run_once(args.data, args.out / f"w{workers}", workers, args.overlays)
        logger.info("%s", result)
        runs.append(result)
    base = next((r for r in runs if r["workers"] == 1), None)
    for r in runs:
        if base is not None:
            r["scaling"] = round(r["frames_per_s"] / base["frames_per_s"], 2)
            r["scaling_target"] = round(0.8 * r["workers"], 2)
    summary = {
        "frames": args.frames,
        "files": n_files,
        "overlays": args.overlays,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
