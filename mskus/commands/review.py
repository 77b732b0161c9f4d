"""``mskus review (--archive DIR | --out DIR) [--port P]``: the QA review web page.

CLI glue only: the application lives in the top-level ``qa_review`` package,
imported here when the command runs (``pipeline`` itself never imports it).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from mskus.settings import add_reference_options, reference_settings
from pipeline.errors import UsageError

__all__ = ["DEFAULT_PORT", "configure_parser", "run"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def configure_parser(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--archive", type=Path, metavar="DIR", help="the storage node's data folder (mskus serve --data-dir)")
    where.add_argument("--out", type=Path, metavar="DIR", help="an output folder of 'mskus batch' or 'mskus analyze --out'")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument(
        "--bind", default="127.0.0.1", metavar="ADDRESS",
        help="address to listen on (default 127.0.0.1); anything beyond loopback needs --users",
    )
    parser.add_argument(
        "--users", type=Path, default=None, metavar="YAML",
        help="users who may log in (hashed passwords, see --hash-password); when given, every page needs a login",
    )
    parser.add_argument("--organisation", default="", metavar="NAME", help="default Verifying Organization on the form")
    parser.add_argument(
        "--images", type=Path, default=None, metavar="DIR",
        help="with --out: folder the tables' relative source_file paths are in (the batch IN_DIR), to draw missing overlays",
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="with --archive: node config whose destinations receive verified SRs (default: where the automated SR went)",
    )
    parser.add_argument(
        "--destination", action="append", metavar="AET@HOST:PORT",
        help="with --archive: where verified SRs go (repeatable; overrides --config)",
    )
    add_reference_options(parser)  # corrected values are judged, and study findings recomputed, with these
    parser.add_argument(
        "--hash-password", action="store_true",
        help="read a password (prompt, or one line on stdin), print its hash for the users file and exit",
    )
    parser.set_defaults(run=run)


def _hash_password() -> int:
    from qa_review.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    print(hash_password(password))
    return 0


def _destinations(args: argparse.Namespace) -> tuple[str, ...] | None:
    from dicom_node.config import load_node_config, parse_destination

    if args.destination:
        return tuple(parse_destination(d).label for d in args.destination)
    if args.config is not None:
        return tuple(d.label for d in load_node_config(args.config).destinations)
    return None


def _source(args: argparse.Namespace):
    if args.archive is not None:
        from qa_review.archive import INDEX_FILE, ArchiveSource

        if args.images is not None:
            raise UsageError("--images goes with --out, not --archive")
        if not (args.archive / INDEX_FILE).is_file():
            raise UsageError(f"no node data in {args.archive} ({INDEX_FILE} missing)")
        return ArchiveSource(args.archive, destinations=_destinations(args))
    from qa_review.outdir import OutDirSource

    if args.config is not None or args.destination:
        raise UsageError("--config and --destination go with --archive, not --out")
    if not args.out.is_dir():
        raise UsageError(f"{args.out} is not a folder")
    if args.images is not None and not args.images.is_dir():
        raise UsageError(f"--images {args.images} is not a folder")
    return OutDirSource(args.out, images_dir=args.images)


def run(args: argparse.Namespace) -> int:
    if args.hash_password:
        return _hash_password()
    if args.archive is None and args.out is None:
        raise UsageError("give --archive DIR (node data folder) or --out DIR (batch/analyze output)")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port {args.port}: not a TCP port")
    from qa_review.app import create_app
    from qa_review.auth import load_users
    from qa_review.server import LOOPBACK_NAMES, is_loopback, make_review_server, serve_until_stopped

    # Request lines only with -v: the audit trail, not the access log, records what people did.
    logging.getLogger("werkzeug").setLevel(logging.INFO if getattr(args, "verbose", 0) else logging.WARNING)
    users = load_users(args.users) if args.users is not None else None
    loopback = is_loopback(args.bind)
    if not loopback and users is None:
        raise UsageError(f"refusing to listen on {args.bind} beyond loopback without a login: give --users FILE")
    settings = reference_settings(args)  # read once, here; qa_review never reads a table file
    source = _source(args)
    app = create_app(
        source,
        users=users,
        organisation=args.organisation,
        allowed_hosts=LOOPBACK_NAMES if loopback else None,
        reference=settings.reference,
        preset=settings.preset,
    )
    try:
        server = make_review_server(app, args.bind, args.port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}") from None
    host = f"[{args.bind}]" if ":" in args.bind else args.bind
    print(f"mskus review: {source.label} at http://{host}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    logger.info("review server on %s:%d, login %s", args.bind, server.server_port, "required" if users else "off")
    serve_until_stopped(server)
    return 0
