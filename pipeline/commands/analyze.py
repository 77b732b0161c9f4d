"""``mskus analyze FILE... [--out DIR] [--json]``: analyse files, print the measurements."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import cv2

from pipeline.analysis import ImageResult, MeasurementRow, analyze_image, measurement_rows
from pipeline.errors import MskusInputError, UsageError
from pipeline.inputs import iter_input_files
from pipeline.loading import load_ultrasound
from pipeline.protocols import Protocol, load_protocol_rules

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("file", "frame", "protocol", "structure", "side", "measurement", "value", "unit", "status")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE", help="DICOM files or folders (walked recursively)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="write results.json and QA overlays into DIR")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    parser.add_argument(
        "--protocol", choices=[p.value for p in Protocol], default=None, help="force a protocol instead of the rules"
    )
    parser.add_argument("--rules", type=Path, default=None, metavar="YAML", help="protocol rules (default configs/protocols.yaml)")
    parser.set_defaults(run=run)


def _row_dict(row: MeasurementRow) -> dict[str, object]:
    data = dataclasses.asdict(row)
    data["status"] = row.status.value
    return data


def _error_row(result: ImageResult) -> dict[str, object]:
    return {
        "source_file": result.source_file,
        "sop_instance_uid": result.sop_instance_uid,
        "frame": None,
        "status": "error",
        "reason": result.error,
    }


def _print_table(rows: list[dict[str, object]]) -> None:
    table = [TABLE_COLUMNS]
    for row in rows:
        value = row.get("value")
        shown = "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        status = str(row["status"]) + (f": {row['reason']}" if row.get("reason") else "")
        table.append(
            (
                Path(str(row.get("source_file") or "")).name,
                str(row.get("frame") or ""),
                str(row.get("protocol") or ""),
                str(row.get("structure") or ""),
                str(row.get("laterality") or ""),
                str(row.get("measurement") or ""),
                shown,
                str(row.get("unit") or ""),
                status,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(TABLE_COLUMNS) - 1)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1])


def run(args: argparse.Namespace) -> int:
    files = list(iter_input_files(args.paths))
    if not files:
        raise UsageError("no DICOM files found in " + ", ".join(str(p) for p in args.paths))
    rules = load_protocol_rules(args.rules)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    failures = 0
    # With --out: one SR per study (and, with --key-images, overlays as DICOM key images).
    if getattr(args, "key_images", False) and args.out is None:
        raise UsageError("--key-images needs --out DIR")
    key_writer = None
    sr_results: list[ImageResult] = []
    sr_headers: list = []  # image headers (pixel data dropped) for the reports
    if args.out is not None:
        from pipeline.sr import header_dataset, slim_result

        if getattr(args, "key_images", False):
            from pipeline.keyimage import KeyImageWriter

            key_writer = KeyImageWriter(args.out)
    for path in files:
        try:
            image = load_ultrasound(path)
        except (MskusInputError, OSError) as exc:
            reason = str(exc) if isinstance(exc, MskusInputError) else f"cannot read file: {exc.strerror or exc}"
            result = ImageResult(source_file=str(path), error=reason)
        else:
            on_frame = None
            if args.out is not None:
                on_frame = _overlay_writer(image, args.out, key_images=key_writer)
            result = analyze_image(image, rules=rules, protocol=args.protocol, on_frame=on_frame)
            if args.out is not None:
                sr_results.append(slim_result(result))
                sr_headers.append(header_dataset(image.dataset))
        if result.failed:
            failures += 1
            logger.warning("%s: %s", path, result.error)
            rows.append(_error_row(result))
        rows.extend(_row_dict(r) for r in measurement_rows(result))
    if args.out is not None:
        (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        from pipeline.sr import ReportError, write_measurement_reports

        try:
            for sr_path in write_measurement_reports(sr_results, sr_headers, args.out):
                logger.info("wrote %s", sr_path)
        except ReportError as exc:
            failures += 1
            logger.error("cannot write the structured report: %s", exc)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(rows)
    return 1 if failures else 0


def _overlay_writer(image, out: Path, key_images=None):
    """Frame callback for :func:`analyze_image` writing the QA overlay (and key image)."""
    from pipeline.overlay import draw_overlay

    stem = Path(image.source or image.sop_instance_uid).stem

    def write(frame, frame_result) -> None:
        overlay = draw_overlay(frame, frame_result)
        cv2.imwrite(str(out / f"{stem}_frame{frame.frame_number:04d}.png"), overlay)
        if key_images is not None:
            key_images.write(overlay, image.dataset, frame_number=frame.frame_number, stem=stem)

    return write
