"""``mskus analyze FILE... [--out DIR] [--json]``: analyse files, print the measurements."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pipeline.errors import MskusInputError, UsageError
from pipeline.inputs import iter_input_files
from pipeline.loading import load_ultrasound

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="DICOM files or folders (walked recursively)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write results into DIR")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    rows: list[dict[str, object]] = []
    failures = 0
    files = list(iter_input_files(args.paths))
    if not files:
        raise UsageError("no DICOM files found in " + ", ".join(str(p) for p in args.paths))
    for path in files:
        try:
            image = load_ultrasound(path)
            for frame in image.iter_frames():
                cal = frame.calibration
                rows.append(
                    {
                        "source_file": str(path),
                        "sop_instance_uid": image.sop_instance_uid,
                        "frame": frame.frame_number,
                        "columns": frame.shape[1],
                        "rows": frame.shape[0],
                        "photometric": image.photometric,
                        "calibration": cal.source.value,
                        "mm_per_px": cal.mm_per_px if cal.is_calibrated else None,
                        "status": "ok",
                        "reason": cal.note,
                    }
                )
        except (MskusInputError, OSError) as exc:
            failures += 1
            reason = str(exc) if isinstance(exc, MskusInputError) else f"cannot read file: {exc.strerror or exc}"
            logger.warning("%s: %s", path, reason)
            rows.append({"source_file": str(path), "frame": None, "status": "error", "reason": reason})
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for row in rows:
            if row["status"] == "ok":
                scale = f"{row['mm_per_px']:.5f} mm/px" if row["mm_per_px"] else "uncalibrated"
                print(f"{row['source_file']}  frame {row['frame']}  {row['columns']}x{row['rows']}  "
                      f"{row['photometric']}  {scale}  {row['reason']}".rstrip())
            else:
                print(f"{row['source_file']}  ERROR  {row['reason']}")
    return 1 if failures else 0
