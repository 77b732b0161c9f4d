"""``mskus analyze FILE... [--out DIR] [--json]``: analyse files, print the measurements.

Inputs are named by their path relative to the deepest folder that holds
them all (:func:`display_names`), in the table and in the QA overlay paths,
so two ``IM_0001.dcm`` in different folders never share a row label or an
overlay file. With ``--out`` a study's SR is only rewritten when its inputs
or the analysis settings changed (:mod:`pipeline.reportledger`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import cast

import cv2

from pipeline.analysis import ImageResult, MeasurementRow, analyze_image, measurement_rows
from pipeline.errors import INTERNAL_ERROR, MskusInputError, UsageError, internal_error
from pipeline.inputs import iter_input_files
from pipeline.loading import load_ultrasound
from pipeline.protocols import Protocol, load_protocol_rules

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("file", "frame", "protocol", "structure", "side", "measurement", "value", "unit", "status")

#: Appended to a "no protocol matched" refusal: the two ways out, in the words of this command's options.
NO_PROTOCOL_HINT = "choose one with --protocol nerve|muscle, or add a rule (--rules YAML)"


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


def display_names(files: Sequence[Path]) -> dict[Path, str]:
    """Each input's name as shown: its POSIX path relative to the deepest folder holding every input.

    One folder of inputs gives bare file names (as before); files with the
    same name in different folders keep the folders that tell them apart.
    Paths are made absolute without resolving links, so a link keeps the
    name the user gave it.
    """
    if not files:
        return {}
    absolute = {f: Path(os.path.abspath(f)) for f in files}
    root = Path(os.path.commonpath([str(a.parent) for a in absolute.values()]))
    return {f: PurePosixPath(*a.relative_to(root).parts).as_posix() for f, a in absolute.items()}


def overlay_stem(display_name: str) -> str:
    """Relative path (without suffix) of an input's QA overlays inside ``--out``: sub-folders mirror the inputs."""
    return PurePosixPath(display_name).with_suffix("").as_posix()


def _print_table(rows: list[dict[str, object]], names: Mapping[str, str]) -> None:
    table = [TABLE_COLUMNS]
    for row in rows:
        value = row.get("value")
        shown = "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        status = str(row["status"]) + (f": {row['reason']}" if row.get("reason") else "")
        source = str(row.get("source_file") or "")
        table.append(
            (
                names.get(source, Path(source).name),
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


def _refusal(result: ImageResult) -> ImageResult:
    """The result with a reason that says what to do where this command offers a way out."""
    if result.error_code == "no_protocol" and NO_PROTOCOL_HINT not in result.error:
        return dataclasses.replace(result, error=f"{result.error}; {NO_PROTOCOL_HINT}")
    return result


def _settings_fingerprint(args: argparse.Namespace) -> str:
    """What, besides the inputs, makes a report differ: rules, forced protocol, nerve segmenter, version."""
    from pipeline.batch.settings import RunSettings, load_rules_text
    from pipeline.segmentation.factory import SegmenterSpec

    rules_text, _ = load_rules_text(args.rules)
    try:
        segmenter = SegmenterSpec.from_config()
    except (OSError, ValueError) as exc:
        # analyze_image will meet the same problem; the report is then rewritten every time.
        logger.info("nerve segmenter configuration: %s", exc)
        segmenter = SegmenterSpec(kind="classical", unavailable=str(exc))
    return RunSettings(rules_text=rules_text, protocol=args.protocol, segmenter=segmenter).fingerprint


def _write_reports(
    results: list[ImageResult], headers: list, out: Path, args: argparse.Namespace, paths: Mapping[str, str]
) -> int:
    """Write the SR of every study whose inputs or settings changed since the last run; return failures.

    ``results`` name their images by display name; ``paths`` maps each
    display name to the file, whose size and time say whether it changed.
    """
    from pipeline.reportledger import InputStamp, ReportLedger, study_digest
    from pipeline.sr import ReportError, group_by_study, write_measurement_reports

    fingerprint = _settings_fingerprint(args)
    ledger = ReportLedger.load(out)
    headers_by_uid = {str(h.SOPInstanceUID): h for h in headers}
    failures = 0
    for study_uid, study_results in group_by_study(results).items():
        # Every result here names its image (display name), so source_file is set.
        names = (cast(str, r.source_file) for r in study_results)
        digest = study_digest((InputStamp.of(paths.get(name, name)) for name in names), fingerprint)
        kept = ledger.unchanged(study_uid, digest)
        if kept is not None:
            logger.info("study %s unchanged since the last run: kept %s", study_uid, kept.name)
            continue
        study_headers = [headers_by_uid[r.sop_instance_uid] for r in study_results if r.sop_instance_uid in headers_by_uid]
        try:
            (written,) = write_measurement_reports(study_results, study_headers, out)
        except ReportError as exc:
            failures += 1
            logger.error("cannot write the structured report: %s", exc)
            continue
        logger.info("wrote %s", written)
        ledger = ledger.recording(study_uid, digest, written)
    ledger.save()
    return failures


def run(args: argparse.Namespace) -> int:
    files = list(iter_input_files(args.paths))
    if not files:
        raise UsageError("no DICOM files found in " + ", ".join(str(p) for p in args.paths))
    rules = load_protocol_rules(args.rules)
    names = display_names(files)
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
        except Exception as exc:  # noqa: BLE001 - a reader bug refuses this file; the next one is analysed
            result = ImageResult(source_file=str(path), error=internal_error(path, "loading", exc), error_code=INTERNAL_ERROR)
        else:
            on_frame = None
            if args.out is not None:
                on_frame = _overlay_writer(image, args.out, overlay_stem(names[path]), key_images=key_writer)
            result = _refusal(analyze_image(image, rules=rules, protocol=args.protocol, on_frame=on_frame))
            if args.out is not None:
                try:
                    # The SR names the image as the table does (its tracking identifiers and notes).
                    header = header_dataset(image.dataset)
                    sr_results.append(dataclasses.replace(slim_result(result), source_file=names[path]))
                    sr_headers.append(header)
                except Exception as exc:  # noqa: BLE001 - its header cannot go into a report: refused, not fatal
                    reason = internal_error(path, "preparing the report entry", exc)
                    result = dataclasses.replace(result, frames=(), error=reason, error_code=INTERNAL_ERROR)
        if result.failed:
            failures += 1
            # The table row (or JSON row) is where a refusal is reported; the log line is for -v only.
            logger.info("%s: %s", path, result.error)
            rows.append(_error_row(result))
        rows.extend(_row_dict(r) for r in measurement_rows(result))
    if args.out is not None:
        (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
        paths = {name: str(f) for f, name in names.items()}
        failures += _write_reports(sr_results, sr_headers, args.out, args, paths)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(rows, {str(f): name for f, name in names.items()})
    return 1 if failures else 0


def _overlay_writer(image, out: Path, stem: str, key_images=None):
    """Frame callback for :func:`analyze_image` writing the QA overlay (and key image).

    ``stem`` is the input's relative name without suffix (:func:`overlay_stem`);
    its folders become sub-folders of ``out``.
    """
    from pipeline.overlay import draw_overlay

    folder = out / PurePosixPath(stem).parent
    name = PurePosixPath(stem).name

    def write(frame, frame_result) -> None:
        overlay = draw_overlay(frame, frame_result)
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{name}_frame{frame.frame_number:04d}.png"), overlay)
        if key_images is not None:
            key_images.write(overlay, image.dataset, frame_number=frame.frame_number, stem=stem)

    return write
