"""``mskus sr show FILE [--json]``: print the measurements of a TID 1500 SR."""

from __future__ import annotations

import argparse
import json
import sys

from pipeline.sr.reader import MeasurementGroup, MeasurementReport, NumericMeasurement, read_measurement_report

__all__ = ["add_analyze_output_options", "configure_parser", "format_table", "run_show"]

TABLE_COLUMNS = ("group", "finding", "site", "side", "measurement", "value", "unit", "image", "frame", "note")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Set up ``mskus sr`` and its ``show`` subcommand."""
    sub = parser.add_subparsers(dest="sr_command", metavar="SUBCOMMAND", parser_class=type(parser))
    sub.required = True
    show = sub.add_parser(
        "show",
        help="print the measurements of a TID 1500 Structured Report",
        description=(
            "Print the measurements of a DICOM SR Imaging Measurement Report (TID 1500), "
            "made by mskus or by another program, as a table (or JSON)."
        ),
    )
    show.add_argument("file", metavar="FILE", help="DICOM SR file")
    show.add_argument("--json", action="store_true", help="print the whole content as JSON")
    show.set_defaults(run=run_show)


def add_analyze_output_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``mskus analyze`` about SR-side outputs (registered by the CLI)."""
    parser.add_argument(
        "--key-images",
        action="store_true",
        help="with --out: also write each QA overlay as a DICOM Secondary Capture key image (own series, same study)",
    )


def _fmt_value(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.6e}"


def _group_cells(group: MeasurementGroup | None) -> tuple[str, str, str, str]:
    if group is None:
        return ("(no group)", "", "", "")
    site = group.finding_sites[0] if group.finding_sites else None
    return (
        group.tracking_identifier or group.tracking_uid or "",
        str(group.finding) if group.finding else "",
        str(site.site) if site else "",
        str(site.laterality) if site and site.laterality else "",
    )


def _image_cells(group: MeasurementGroup | None, measurement: NumericMeasurement | None) -> tuple[str, str]:
    refs = list(measurement.images) + [c.image for c in measurement.coordinates if c.image] if measurement else []
    if not refs and group is not None:
        refs = list(group.images)
    if not refs:
        return ("", "")
    ref = refs[0]
    return (ref.sop_instance_uid, ",".join(str(f) for f in ref.frame_numbers))


def format_table(report: MeasurementReport) -> list[str]:
    """The lines ``mskus sr show`` prints: a header, one row per measurement, then the notes."""
    title = str(report.title) if report.title else "(untitled)"
    template = f"TID {report.template_id}" if report.template_id else "no template id"
    observer = report.device_observer_name
    if report.device_observer_model:
        observer += f" ({report.device_observer_model})"
    lines = [
        f"SR {report.sop_instance_uid}  study {report.study_instance_uid}  patient {report.patient_id}",
        f"{title}, {template}, completion {report.completion_flag or '?'}, "
        f"verification {report.verification_flag or '?'}" + (f", observer {observer}" if observer else ""),
        f"{len(report.groups)} measurement group(s), {len(report.image_library)} image(s) in the Image Library",
    ]
    if report.predecessors:
        lines.append("supersedes " + ", ".join(report.predecessors))
    lines.append("")
    rows: list[tuple[str, ...]] = [TABLE_COLUMNS]
    for group in report.groups:
        note = "; ".join(f"{e.value}" for e in group.evaluations)
        if not group.measurements:
            rows.append((*_group_cells(group), "", "", "", *_image_cells(group, None), note))
            continue
        for index, m in enumerate(group.measurements):
            value = _fmt_value(m.value)
            if m.value is None and m.qualifier is not None:
                value = str(m.qualifier)
            unit = m.unit.value if m.unit else ""
            rows.append(
                (*_group_cells(group), m.label, value, unit, *_image_cells(group, m), note if index == 0 else "")
            )
    for m in report.loose_measurements:
        unit = m.unit.value if m.unit else ""
        rows.append((*_group_cells(None), m.label, _fmt_value(m.value), unit, *_image_cells(None, m), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS) - 1)]
    for r in rows:
        lines.append(("  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths)) + "  " + r[-1]).rstrip())
    if report.notes:
        lines.append("")
        lines.extend(f"{note.name}: {note.value}" for note in report.notes)
    return lines


def run_show(args: argparse.Namespace) -> int:
    report = read_measurement_report(args.file)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for line in format_table(report):
            print(line)
    return 0

