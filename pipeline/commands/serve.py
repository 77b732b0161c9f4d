"""``mskus serve``: run the DICOM storage node; ``mskus status`` / ``mskus retry``: inspect its queue."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

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
    parser.add_argument("--destination", action="append", metavar="AET@HOST:PORT", help="where results go (repeatable)")
    parser.add_argument("--quiet-seconds", type=float, default=None, metavar="S", help="analyse a study after S quiet seconds")
    parser.add_argument("--workers", type=int, default=None, help="analysis worker processes")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from dicom_node.server import StorageNode

    config = _node_config(args)
    logging.getLogger("mskus").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO)
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    node = StorageNode(config)
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
    path = Path(config.data_dir) / "index.sqlite3"
    if not path.exists():
        raise UsageError(f"no node data in {config.data_dir} (index.sqlite3 missing)")
    return NodeIndex(path)


def run_status(args: argparse.Namespace) -> int:
    index = _open_index(args)
    studies = index.studies()
    outbox = index.outbox()
    if args.json:
        json.dump(
            {
                "studies": [
                    {"study_uid": s.study_uid, "state": s.state.value, "runs": s.runs, "instances": s.instances, "last_error": s.last_error}
                    for s in studies
                ],
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
    print("studies:")
    for s in studies:
        when = dt.datetime.fromtimestamp(s.last_received_at).isoformat(timespec="seconds")
        print(f"  {s.study_uid}  {s.state.value:10s} runs={s.runs} instances={s.instances} last={when} {s.last_error}".rstrip())
    print("outbox:")
    for o in outbox:
        print(f"  #{o.id} {o.result_uid} -> {o.destination}  {o.state.value} attempts={o.attempts} {o.last_error}".rstrip())
    return 0


def configure_retry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ids", nargs="*", type=int, metavar="ID", help="outbox item ids (default: every unsent item)")
    parser.add_argument("--config", type=Path, default=None, metavar="FILE")
    parser.add_argument("--data-dir", default=None, metavar="DIR")
    parser.set_defaults(run=run_retry)


def run_retry(args: argparse.Namespace) -> int:
    index = _open_index(args)
    count = index.retry(args.ids or None)
    index.audit("retry", f"items={args.ids or 'all'} count={count}")
    print(f"{count} item(s) queued for sending")
    return 0
