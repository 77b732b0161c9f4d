"""``mskus sr show FILE [--json]``: print the measurements of a TID 1500 SR.

The text output fits a 100-column terminal: a header (document, patient,
completion and verification, who verified it and when), then one block per
measurement group (its tracking identifier, finding, site and image, one
line per measurement, its notes), long lines wrapped. ``--json`` has every
field the reader found.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping

from pipeline.sr.reader import (
    ImageReference,
    MeasurementGroup,
    MeasurementReport,
    NumericMeasurement,
    read_measurement_report,
)

__all__ = ["TERMINAL_WIDTH", "add_analyze_output_options", "configure_parser", "format_table", "run_show"]

#: Widest line ``mskus sr show`` prints.
TERMINAL_WIDTH = 100
_INDENT = "   "
#: Measurement names longer than this do not widen the value column of their group.
_MAX_LABEL_WIDTH = 40


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


def _wrap(text: str, width: int, indent: str = "", *, hanging: str = "  ") -> list[str]:
    """``text`` as lines of at most ``width`` characters (UIDs and other long words are not split)."""
    return textwrap.wrap(
        text, width=width, initial_indent=indent, subsequent_indent=indent + hanging,
        break_long_words=False, break_on_hyphens=False,
    ) or [indent.rstrip()]


def _image_text(ref: ImageReference | None, image_names: Mapping[str, str]) -> str:
    if ref is None:
        return ""
    text = "image " + image_names.get(ref.sop_instance_uid, ref.sop_instance_uid)
    if ref.frame_numbers:
        text += ", frame " + ",".join(str(f) for f in ref.frame_numbers)
    return text


def _measurement_image(group: MeasurementGroup | None, measurement: NumericMeasurement) -> ImageReference | None:
    refs = list(measurement.images) + [c.image for c in measurement.coordinates if c.image]
    if not refs and group is not None:
        refs = list(group.images)
    return refs[0] if refs else None


def _group_title(group: MeasurementGroup, image_names: Mapping[str, str]) -> str:
    title = group.tracking_identifier or group.tracking_uid or "(no tracking identifier)"
    # A storage node names its inputs by SOP Instance UID; a caller that knows the files says which.
    for ref in group.images:
        name = image_names.get(ref.sop_instance_uid)
        if name:
            title = title.replace(f"{ref.sop_instance_uid}.dcm", name).replace(ref.sop_instance_uid, name)
    return title


def _group_context(group: MeasurementGroup, image_names: Mapping[str, str]) -> str:
    site = group.finding_sites[0] if group.finding_sites else None
    parts = [
        str(group.finding) if group.finding else "",
        str(site.site) if site else "",
        str(site.laterality) if site and site.laterality else "",
    ]
    what = ", ".join(p for p in parts if p)
    where = _image_text(group.images[0] if group.images else None, image_names)
    return "; ".join(p for p in (what, where) if p)


def _reference_text(m: NumericMeasurement, unit: str) -> str:
    """``"  [Abnormally High; normal range <= 11 mm2; z 2.31]"`` for a value with a reference, else ``""``."""
    parts = [str(m.normality)] if m.normality is not None else []
    low, high = m.normal_range_low, m.normal_range_high
    if low is not None and high is not None:
        parts.append(f"normal range {_fmt_value(low)}-{_fmt_value(high)} {unit}".rstrip())
    elif high is not None:
        parts.append(f"normal range <= {_fmt_value(high)} {unit}".rstrip())
    elif low is not None:
        parts.append(f"normal range >= {_fmt_value(low)} {unit}".rstrip())
    if m.z_score is not None:
        parts.append(f"z {m.z_score:.2f}")
    return f"  [{'; '.join(parts)}]" if parts else ""


def _measurement_lines(
    group: MeasurementGroup | None,
    measurements: tuple[NumericMeasurement, ...],
    image_names: Mapping[str, str],
    width: int,
) -> list[str]:
    label_width = min(_MAX_LABEL_WIDTH, max((len(m.label) for m in measurements), default=0))
    values = [_fmt_value(m.value) if m.value is not None or m.qualifier is None else str(m.qualifier) for m in measurements]
    value_width = max((len(v) for v in values), default=0)
    group_image = group.images[0] if group is not None and group.images else None
    lines: list[str] = []
    for m, value in zip(measurements, values):
        unit = m.unit.value if m.unit else ""
        line = f"{m.label:<{label_width}}  {value:>{value_width}}  {unit}".rstrip() + _reference_text(m, unit)
        own_image = _measurement_image(group, m)
        if own_image is not None and own_image != group_image:
            line += f"  ({_image_text(own_image, image_names)})"
        lines.extend(_wrap(line, width, _INDENT, hanging="    "))
    return lines


def format_table(
    report: MeasurementReport,
    *,
    width: int = TERMINAL_WIDTH,
    image_names: Mapping[str, str] | None = None,
) -> list[str]:
    """The lines ``mskus sr show`` prints, none longer than ``width`` (except an unbreakable word).

    Parameters
    ----------
    report : MeasurementReport
        As read by :func:`read_measurement_report`.
    width : int
        Widest line.
    image_names : mapping of SOP Instance UID to str, optional
        Names to show for images instead of their UIDs (``make demo`` passes
        the sample file names it sent).
    """
    names = dict(image_names or {})
    title = str(report.title) if report.title else "(untitled)"
    template = f"TID {report.template_id}" if report.template_id else "no template id"
    completion = report.completion_flag or "?"
    if report.completion_flag_description:
        completion += f" ({report.completion_flag_description})"
    lines = [f"SR {report.sop_instance_uid}"]
    lines += _wrap(f"study {report.study_instance_uid}, patient {report.patient_id or '(no ID)'}", width)
    lines += _wrap(
        f"{title}, {template}, completion {completion}, verification {report.verification_flag or '?'}", width
    )
    for observer in report.verifying_observers:
        lines += _wrap(f"verified by {observer.describe()}", width)
    if report.device_observer_name or report.device_observer_model:
        observer_text = report.device_observer_name
        if report.device_observer_model:
            observer_text += f" ({report.device_observer_model})"
        lines += _wrap(f"observer {observer_text.strip()}", width)
    lines.append(f"{len(report.groups)} measurement group(s), {len(report.image_library)} image(s) in the Image Library")
    if report.predecessors:
        lines += _wrap("supersedes " + ", ".join(report.predecessors), width)
    for number, group in enumerate(report.groups, start=1):
        lines.append("")
        lines += _wrap(f"{number}. {_group_title(group, names)}", width)
        context = _group_context(group, names)
        if context:
            lines += _wrap(context, width, _INDENT)
        lines += _measurement_lines(group, group.measurements, names, width)
        for evaluation in group.evaluations:
            lines += _wrap(f"note: {evaluation.value}", width, _INDENT)
    if report.loose_measurements:
        lines += ["", "measurements outside any group:"]
        lines += _measurement_lines(None, report.loose_measurements, names, width)
    if report.notes:
        lines.append("")
        for note in report.notes:
            text = str(note.value)
            # The note names the image by file and UID; a display name, when given, replaces the UID.
            for uid, name in (names or {}).items():
                text = text.replace(f" ({uid})", "").replace(uid, name)
            lines += _wrap(f"{note.name}: {text}", width)
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

