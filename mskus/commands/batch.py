"""``mskus batch IN_DIR --out OUT_DIR``: a whole cohort, locally or on a Dask cluster."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from mskus.settings import add_analysis_options, analysis_settings
from pipeline.errors import UsageError

__all__ = ["configure_parser", "run"]

logger = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mskus batch``."""
    parser.add_argument("in_dir", type=Path, metavar="IN_DIR", help="folder of DICOM files, walked recursively")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT_DIR", help="output folder (created; reruns resume)")
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="local worker processes (default: the number of CPUs)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the studies on an existing Dask cluster, e.g. tcp://host:8786 (workers need mskus installed "
        "and IN_DIR/OUT_DIR at the same paths)",
    )
    add_analysis_options(parser, rules_flags=("--rules", "--config"))
    parser.add_argument("--no-overlays", dest="overlays", action="store_false", help="do not write QA overlay PNGs")
    parser.add_argument(
        "--pseudonymize",
        action="store_true",
        help="replace patient name and ID (and accession number) by keyed hashes in the CSVs and SRs",
    )
    parser.add_argument(
        "--pseudonym-key",
        default=None,
        metavar="KEY",
        help="secret key for --pseudonymize (better: the environment variable MSKUS_PSEUDONYM_KEY)",
    )
    parser.add_argument("--force", action="store_true", help="redo every study, even those already done")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress_bar", action="store_true", default=None, help="always show the progress bar")
    progress.add_argument("--no-progress", dest="progress_bar", action="store_false", help="log lines instead of a bar")
    parser.set_defaults(run=run)


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _options(args: argparse.Namespace):
    from pipeline.batch import BatchOptions
    from pipeline.batch.pseudonym import resolve_key

    if args.pseudonym_key is not None and not args.pseudonymize:
        raise UsageError("--pseudonym-key is only used with --pseudonymize")
    key = resolve_key(args.pseudonym_key) if args.pseudonymize else None
    return BatchOptions(
        in_dir=args.in_dir,
        out_dir=args.out,
        workers=args.workers or os.cpu_count() or 1,
        scheduler=args.scheduler,
        analysis=analysis_settings(args),
        overlays=args.overlays,
        pseudonym_key=key,
        force=args.force,
        progress_bar=args.progress_bar,
    )


def run(args: argparse.Namespace) -> int:
    """Run the batch; print where the outputs are. Exit 0 when the run finished."""
    from pipeline.batch import run_batch
    from pipeline.batch.assemble import ERRORS_CSV, MEASUREMENTS_CSV, SUMMARY_CSV

    options = _options(args)
    # Progress lines are the command's output when stderr is not a terminal.
    logging.getLogger("pipeline.batch.progress").setLevel(logging.INFO)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    result = run_batch(options)
    t = result.tables
    out = options.out_dir
    where = f" on {result.executor}" if result.executor else ""
    print(
        f"{result.studies} stud(ies): {result.studies_analysed} analysed, {result.studies_skipped} already done, "
        f"{result.studies_failed} failed; {result.frames_analysed} frame(s) in {result.seconds:.1f} s{where}"
    )
    print(f"{t.reports} structured report(s) in {out}")
    print(f"{out / MEASUREMENTS_CSV}: {t.measurements} row(s)")
    print(f"{out / SUMMARY_CSV}: {t.summary} row(s)")
    print(f"{out / ERRORS_CSV}: {t.errors} row(s)")
    sys.stdout.flush()
    return 0
