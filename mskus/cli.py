"""The ``mskus`` command line.

Every subcommand has ``--help``; a usage or input error prints one line
(``mskus: error: ...``) on stderr and exits non-zero, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from pipeline import __version__
from pipeline.errors import MskusInputError, UsageError

__all__ = ["build_parser", "main"]

logger = logging.getLogger("mskus")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are a single line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_analyze(subparsers: argparse._SubParsersAction) -> None:
    from mskus.commands import analyze

    parser = subparsers.add_parser(
        "analyze",
        help="analyse ultrasound DICOM files and print the measurements",
        description="Analyse ultrasound DICOM files (or folders of them) and print the measurements.",
    )
    analyze.configure_parser(parser)
    from mskus.commands import sr

    sr.add_analyze_output_options(parser)


def _add_sr(subparsers: argparse._SubParsersAction) -> None:
    from mskus.commands import sr

    parser = subparsers.add_parser(
        "sr",
        help="DICOM Structured Reports: 'sr show FILE' prints the measurements of a TID 1500 SR",
        description="Work with DICOM Structured Reports (TID 1500 Imaging Measurement Reports).",
    )
    sr.configure_parser(parser)


def _add_node(subparsers: argparse._SubParsersAction) -> None:
    from mskus.commands import serve

    serve.configure_serve(
        subparsers.add_parser(
            "serve",
            help="run the DICOM storage node (C-ECHO, C-STORE SCP, analysis, SR sent back)",
            description="Run the DICOM storage node. Flags override the config file.",
        )
    )
    serve.configure_status(
        subparsers.add_parser(
            "status", help="list the node's studies and outbox", description="List the storage node's studies and outbox."
        )
    )
    serve.configure_retry(
        subparsers.add_parser(
            "retry", help="re-queue unsent or dead-lettered results", description="Re-queue unsent or dead-lettered results."
        )
    )


def _add_batch(subparsers: argparse._SubParsersAction) -> None:
    from mskus.commands import batch

    batch.configure_parser(
        subparsers.add_parser(
            "batch",
            help="analyse a folder tree of studies: SRs, measurements.csv, summary.csv, errors.csv",
            description="Batch run over a folder tree, on this machine or a Dask cluster. Reruns resume.",
        )
    )


def _add_review(subparsers: argparse._SubParsersAction) -> None:
    from mskus.commands import review

    review.configure_parser(
        subparsers.add_parser(
            "review",
            help="QA review web page: accept or reject measurements, sign off a verified SR",
            description="Serve the QA review web page on 127.0.0.1 for a node archive or a batch/analyze output folder.",
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """The full ``mskus`` argument parser."""
    parser = _Parser(
        prog="mskus",
        description="Musculoskeletal ultrasound quantification: DICOM in, measurements and DICOM SR out.",
    )
    parser.add_argument("--version", action="version", version=f"mskus {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_analyze(subparsers)
    _add_sr(subparsers)
    _add_node(subparsers)
    _add_batch(subparsers)
    _add_review(subparsers)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mskus`` console command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"mskus: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MskusInputError as exc:
        print(f"mskus: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"mskus: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("mskus: interrupted", file=sys.stderr)
        return 130
