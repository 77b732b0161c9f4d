"""``mskus analyze FILE... [--out DIR] [--json]``: analyse files, print the measurements.

The same run as ``mskus batch`` over the files and folders given, studies
analysed one by one in this process, with the same output layout in
``--out`` (SR per study, ``measurements.csv``, ``errors.csv``, overlays,
records; CONTRACT.md section 2). Without ``--out`` the run goes to a
temporary folder that is removed afterwards. The printed table (or the
``--json`` rows) is ``measurements.csv`` plus the inputs that could not be
analysed, named by their path relative to the deepest folder holding them
all, so two ``IM_0001.dcm`` in different folders never share a row label.
A rerun with ``--out`` on unchanged inputs and settings keeps every study's
outputs (its record says it is done).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from mskus.settings import add_analysis_options, analysis_settings
from pipeline.errors import UsageError

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("file", "frame", "protocol", "structure", "side", "measurement", "value", "unit", "status")

#: Appended to a "no protocol matched" refusal: the two ways out, in the words of this command's options.
NO_PROTOCOL_HINT = "choose one with --protocol nerve|muscle, or add a rule (--rules YAML)"

#: errors.csv codes that are notes on measured images (said in their rows' status), not refusals.
_NOTES = frozenset({"uncalibrated"})

#: measurements.csv columns given as numbers in --json.
_FLOATS = ("value", "confidence", "mm_per_px", "reference_low", "reference_high", "z_score")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="DICOM files or folders (walked recursively)")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR",
        help="write the SRs, measurements.csv, errors.csv and QA overlays into DIR (the mskus batch layout)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    add_analysis_options(parser)
    parser.set_defaults(run=run)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _number(text: str) -> float | None:
    return float(text) if text else None


def _json_rows(measurements: list[dict[str, str]], errors: list[dict[str, str]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for error in errors:
        rows.append(
            {
                "source_file": error["source_file"],
                "sop_instance_uid": error["sop_instance_uid"],
                "study_uid": error["study_uid"],
                "frame": None,
                "status": "error",
                "code": error["code"],
                "reason": error["reason"],
            }
        )
    for row in measurements:
        data: dict[str, object] = dict(row)
        data["frame"] = int(row["frame"]) if row["frame"] else None
        for name in _FLOATS:
            if name in row:
                data[name] = _number(row[name])
        rows.append(data)
    return rows


def _print_table(measurements: list[dict[str, str]], errors: list[dict[str, str]]) -> None:
    table = [TABLE_COLUMNS]
    for error in errors:
        table.append((error["source_file"], "", "", "", "", "", "", "", f"error: {error['reason']}"))
    for row in measurements:
        value = _number(row["value"])
        status = row["status"] + (f": {row['reason']}" if row["reason"] else "")
        table.append(
            (
                row["source_file"], row["frame"], row["protocol"], row["structure"], row["laterality"],
                row["measurement"], "" if value is None else f"{value:.3f}", row["unit"], status,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(TABLE_COLUMNS) - 1)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1])


def _refusals(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """The error rows that refuse an input, with a hint where this command offers a way out."""
    shown = []
    for error in errors:
        if error["code"] in _NOTES:
            continue
        if error["code"] == "no_protocol" and NO_PROTOCOL_HINT not in error["reason"]:
            error = {**error, "reason": f"{error['reason']}; {NO_PROTOCOL_HINT}"}
        shown.append(error)
    return shown


def run(args: argparse.Namespace) -> int:
    from pipeline.batch import BatchOptions, run_batch
    from pipeline.batch.assemble import ERRORS_CSV, MEASUREMENTS_CSV

    key_images = bool(getattr(args, "key_images", False))
    if key_images and args.out is None:
        raise UsageError("--key-images needs --out DIR")
    settings = analysis_settings(args)
    with tempfile.TemporaryDirectory(prefix="mskus-analyze-") as scratch:
        out = args.out if args.out is not None else Path(scratch) / "out"
        result = run_batch(
            BatchOptions(
                in_dir=tuple(Path(p) for p in args.paths),
                out_dir=out,
                workers=0,
                analysis=settings,
                overlays=args.out is not None,
                key_images=key_images,
                progress_bar=False,
            )
        )
        if result.inputs == 0:
            raise UsageError("no DICOM files found in " + ", ".join(str(p) for p in args.paths))
        measurements = _read_csv(out / MEASUREMENTS_CSV)
        errors = _refusals(_read_csv(out / ERRORS_CSV))
    if args.json:
        json.dump(_json_rows(measurements, errors), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(measurements, errors)
    return 1 if _failed(errors, args.paths) else 0


def _failed(errors: list[dict[str, str]], paths: list[str]) -> bool:
    """Whether the run failed: a DICOM input, or a file named on the command line, was refused.

    Files found in a folder that are not DICOM (a README, a spreadsheet) are
    listed in the table like any refusal, but do not fail the run.
    """
    from pipeline.inputs import display_root

    root = display_root(paths)
    named = {Path(os.path.relpath(os.path.abspath(p), root)).as_posix() for p in paths if not os.path.isdir(p)}
    return any(e["code"] != "not_dicom" or e["source_file"] in named for e in errors)
