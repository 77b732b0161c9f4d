"""``mskus serve``: run the DICOM storage node; ``mskus status`` / ``mskus retry``: inspect its queue."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mskus.settings import add_analysis_options, analysis_settings

if TYPE_CHECKING:
    from dicom_node.index import OutboxItem, ResultRow, StudyRow

logger = logging.getLogger(__name__)


def _node_config(args: argparse.Namespace):
    from dicom_node.config import load_node_config, parse_allow, parse_destination

    overrides = dict(
        ae_title=getattr(args, "aet", None),
        port=getattr(args, "port", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        quiet_seconds=getattr(args, "quiet_seconds", None),
        workers=getattr(args, "workers", None),
        bind_address=getattr(args, "bind", None),
        allow_any_peer=True if getattr(args, "allow_any_peer", False) else None,
    )
    if getattr(args, "allow", None):
        overrides["allow"] = tuple(parse_allow(a) for a in args.allow)
    if getattr(args, "destination", None):
        overrides["destinations"] = tuple(parse_destination(d) for d in args.destination)
    return load_node_config(args.config, **overrides)


def configure_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE", help="node config (default configs/node.yaml)")
    parser.add_argument("--aet", default=None, help="our AE title")
    parser.add_argument("--port", type=int, default=None, help="TCP port to listen on")
    parser.add_argument("--bind", default=None, metavar="ADDRESS", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--data-dir", default=None, metavar="DIR", help="inbox, archive and index folder")
    parser.add_argument("--allow", action="append", metavar="AET[@HOST]", help="allowed calling AE (repeatable)")
    parser.add_argument(
        "--allow-any-peer",
        action="store_true",
        help="accept every calling AE on an address beyond loopback (refused without --allow otherwise)",
    )
    parser.add_argument("--destination", action="append", metavar="AET@HOST:PORT", help="where results go (repeatable)")
    parser.add_argument("--quiet-seconds", type=float, default=None, metavar="S", help="analyse a study after S quiet seconds")
    parser.add_argument("--workers", type=int, default=None, help="analysis worker processes")
    add_analysis_options(parser, protocol=False)
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from dicom_node.config import check_exposure
    from dicom_node.server import StorageNode

    config = _node_config(args)
    check_exposure(config)  # before the data folder is created: a refused start leaves nothing behind
    logging.getLogger("mskus").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    node = StorageNode(config, analysis=analysis_settings(args))
    try:
        node.serve_forever()
    except OSError as exc:
        from pipeline.errors import UsageError

        raise UsageError(f"cannot listen on {config.bind_address}:{config.port}: {exc.strerror or exc}") from None
    return 0


def configure_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run_status)


def _open_index(args: argparse.Namespace):
    from dicom_node.index import NodeIndex
    from pipeline.errors import UsageError

    config = _node_config(args)
    folder = Path(config.data_dir)
    path = folder / "index.sqlite3"
    if not path.exists():
        shown = f"{folder} ({os.path.abspath(folder)})" if not folder.is_absolute() else str(folder)
        if getattr(args, "data_dir", None) or getattr(args, "config", None):
            raise UsageError(f"no node data in {shown} (index.sqlite3 missing): is it the data folder of 'mskus serve'?")
        raise UsageError(
            f"no node data in {shown}, the default data folder (index.sqlite3 missing): give the folder "
            "'mskus serve' uses with --data-dir DIR, or its --config FILE"
        )
    return NodeIndex(path)


@dataclass(frozen=True)
class StudyStatus:
    """One study as ``mskus status`` shows it.

    Attributes
    ----------
    study : StudyRow
        The index row (state, runs, instances, last arrival, last error).
    patient_id, patient_name, study_date, study_description : str
        From the header of the study's first received instance ('' when unreadable).
    current_sr : ResultRow or None
        The newest SR the node made for the study.
    delivery : tuple of OutboxItem
        Where that SR is to go, and how far it got.
    """

    study: StudyRow
    patient_id: str = ""
    patient_name: str = ""
    study_date: str = ""
    study_description: str = ""
    current_sr: ResultRow | None = None
    delivery: tuple[OutboxItem, ...] = ()

    def delivery_text(self) -> str:
        if self.current_sr is None:
            return ""
        if not self.delivery:
            return "archived, no destination"
        return "; ".join(
            f"{item.state.value} to {item.destination}" + (f" ({item.last_error})" if item.last_error else "")
            for item in self.delivery
        )

    def to_dict(self) -> dict[str, object]:
        s = self.study
        current = None
        if self.current_sr is not None:
            current = {
                "sop_instance_uid": self.current_sr.sop_instance_uid,
                "path": self.current_sr.path,
                "run": self.current_sr.run,
                "delivery": [{"destination": o.destination, "state": o.state.value} for o in self.delivery],
            }
        return {
            "study_uid": s.study_uid, "state": s.state.value, "runs": s.runs, "instances": s.instances,
            "last_error": s.last_error, "patient_id": self.patient_id, "patient_name": self.patient_name,
            "study_date": self.study_date, "study_description": self.study_description, "current_sr": current,
        }


_HEADER_TAGS = ("PatientID", "PatientName", "StudyDate", "StudyDescription")


def study_statuses(index) -> list[StudyStatus]:
    """Every study of the node's index with its patient, date and current SR."""
    import pydicom

    outbox = index.outbox()
    statuses = []
    for study in index.studies():
        header: dict[str, str] = {}
        instances = index.study_instances(study.study_uid)
        if instances:
            try:
                ds = pydicom.dcmread(instances[0].path, stop_before_pixels=True, specific_tags=list(_HEADER_TAGS))
                header = {k: str(ds.get(k, "") or "") for k in _HEADER_TAGS}
            except Exception as exc:  # noqa: BLE001 - the status of a study must not depend on one readable file
                logger.info("study %s: header of %s not readable: %s", study.study_uid, instances[0].path, exc)
        current = index.latest_result(study.study_uid, "sr")
        delivery = tuple(o for o in outbox if current is not None and o.result_uid == current.sop_instance_uid)
        statuses.append(
            StudyStatus(
                study=study,
                patient_id=header.get("PatientID", ""),
                patient_name=header.get("PatientName", ""),
                study_date=header.get("StudyDate", ""),
                study_description=header.get("StudyDescription", ""),
                current_sr=current,
                delivery=delivery,
            )
        )
    return statuses


def _readable_date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value


def format_status(statuses: list[StudyStatus], outbox: list) -> list[str]:
    """The lines ``mskus status`` prints (two or three per study, one per outbox item)."""
    lines = [f"studies ({len(statuses)}):"]
    for st in statuses:
        s = st.study
        when = dt.datetime.fromtimestamp(s.last_received_at).isoformat(timespec="seconds")
        lines.append(f"  {s.study_uid}  {s.state.value}  runs={s.runs} instances={s.instances} last={when}")
        patient = st.patient_id or "(no patient ID)"
        if st.patient_name:
            patient += f" {st.patient_name}"
        facts = [f"patient {patient}", f"study date {_readable_date(st.study_date) or 'unknown'}"]
        if st.study_description:
            facts.append(st.study_description)
        lines.append("    " + ", ".join(facts))
        if st.current_sr is not None:
            lines.append(f"    current SR {st.current_sr.sop_instance_uid} (run {st.current_sr.run})")
            lines.append(f"      {st.delivery_text()}")
        else:
            lines.append("    no SR yet")
        if s.last_error:
            lines.append(f"    last error: {s.last_error}")
    lines.append(f"outbox ({len(outbox)}):")
    for o in outbox:
        lines.append(f"  #{o.id} {o.result_uid} -> {o.destination}  {o.state.value} attempts={o.attempts} {o.last_error}".rstrip())
    return lines


def run_status(args: argparse.Namespace) -> int:
    index = _open_index(args)
    statuses = study_statuses(index)
    outbox = index.outbox()
    if args.json:
        json.dump(
            {
                "summary": status_summary(index),
                "studies": [st.to_dict() for st in statuses],
                "outbox": [
                    {"id": o.id, "result_uid": o.result_uid, "destination": o.destination, "state": o.state.value,
                     "attempts": o.attempts, "last_error": o.last_error}
                    for o in outbox
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return 0
    summary = status_summary(index)
    counts = index.counts()
    print(
        "summary: studies " + ", ".join(f"{k} {v}" for k, v in counts["studies"].items())
        + "; outbox " + ", ".join(f"{k} {v}" for k, v in counts["outbox"].items())
        + f"; oldest waiting study {summary['queue_age_seconds']:.0f} s"
    )
    for line in format_status(statuses, outbox):
        print(line)
    return 0


def status_summary(index) -> dict[str, object]:
    """Counts ``mskus status`` shows first, as /metrics has them, flat: ``studies_<state>``, ``outbox_<state>``, queue age.

    Flat keys: a state name alone (``"processed"``) stays a study's state in the JSON, never a key.
    """
    import time

    counts = index.counts()
    oldest = index.oldest_pending_received_at()
    summary: dict[str, object] = {f"{kind}_{state}": n for kind, by_state in counts.items() for state, n in by_state.items()}
    summary["queue_age_seconds"] = round(time.time() - oldest, 1) if oldest is not None else 0.0
    return summary


def configure_retry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "ids", nargs="*", metavar="ID",
        help="outbox item ids (default: every unsent item); with --studies: Study Instance UIDs (default: every failed study)",
    )
    parser.add_argument("--studies", action="store_true", help="queue failed studies for analysis again instead of sends")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.set_defaults(run=run_retry)


def run_retry(args: argparse.Namespace) -> int:
    from pipeline.errors import UsageError

    index = _open_index(args)
    if args.studies:
        count = index.retry_studies(list(args.ids) or None)
        index.audit("retry_studies", f"studies={','.join(args.ids) or 'all failed'} count={count}")
        print(f"{count} stud{'y' if count == 1 else 'ies'} queued for analysis (a running node picks them up)")
        return 0
    try:
        ids = [int(i) for i in args.ids]
    except ValueError:
        raise UsageError("outbox item ids are numbers (see mskus status); for studies add --studies") from None
    count = index.retry(ids or None)
    index.audit("retry", f"items={ids or 'all'} count={count}")
    print(f"{count} item(s) queued for sending")
    return 0
