"""Run a batch: walk, read headers, plan studies, analyse them, assemble the tables.

:func:`run_batch` is the coordinator. It never touches pixel data: it walks
IN_DIR, reads headers to group images by study, skips the studies whose
record says they are done with the same inputs and settings, hands the rest
to an executor (local processes or Dask) and rebuilds the tables from the
study records as studies finish and at the end. Ctrl-C (or SIGTERM, which
the CLI turns into the same) stops the workers and leaves OUT_DIR complete
for the studies done so far; a rerun does the rest.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.atomic import remove_stale_temporaries
from pipeline.batch.assemble import TableCounts, assemble_outputs
from pipeline.batch.executors import DaskExecutor, InProcessExecutor, LocalExecutor, StudyExecutor
from pipeline.batch.headers import ImageHeader, read_header
from pipeline.batch.lock import output_lock
from pipeline.batch.plan import StudyTask, plan_studies
from pipeline.batch.progress import BatchProgress
from pipeline.batch.records import STATE_DIR, read_record, record_path, records_dir, up_to_date
from pipeline.batch.settings import RunSettings
from pipeline.batch.tables import ErrorRow
from pipeline.errors import UsageError
from pipeline.inputs import InputFile, walk_inputs
from pipeline.settings import AnalysisSettings, load_analysis_settings

__all__ = ["BatchOptions", "BatchResult", "run_batch"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchOptions:
    """What ``mskus batch`` was asked to do.

    Attributes
    ----------
    in_dir : Path or sequence of Path
        Input folder (walked recursively); or, for ``mskus analyze --out``,
        the files and folders given.
    out_dir : Path
        Output folder.
    workers : int
        Local worker processes (ignored with ``scheduler``); 0 analyses the
        studies one by one in this process.
    scheduler : str or None
        Dask scheduler address; the studies then run on that cluster.
    analysis : AnalysisSettings or None
        Rules, forced protocol and segmenters, loaded by the caller's entry
        point; ``None``: the shipped configuration
        (:func:`pipeline.settings.load_analysis_settings`).
    overlays : bool
        Write QA overlay PNGs.
    key_images : bool
        Write each overlay as a DICOM key image too.
    pseudonym_key : bytes or None
        Pseudonymize with this HMAC key.
    force : bool
        Redo every study, done or not.
    progress_bar : bool or None
        Force the tqdm bar on/off (default: when stderr is a terminal).
    max_in_flight : int or None
        Studies submitted at once (default: twice the workers).
    """

    in_dir: Path | Sequence[Path]
    out_dir: Path
    workers: int = 1
    scheduler: str | None = None
    analysis: AnalysisSettings | None = None
    overlays: bool = True
    key_images: bool = False
    pseudonym_key: bytes | None = None
    force: bool = False
    progress_bar: bool | None = None
    max_in_flight: int | None = None

    @property
    def inputs(self) -> tuple[Path, ...]:
        """The input files and folders."""
        return (Path(self.in_dir),) if isinstance(self.in_dir, (str, os.PathLike)) else tuple(Path(p) for p in self.in_dir)


@dataclass(frozen=True)
class BatchResult:
    """What a run did (the CLI prints it)."""

    studies: int
    studies_skipped: int
    studies_analysed: int
    studies_failed: int
    frames_analysed: int
    inputs: int
    tables: TableCounts
    seconds: float
    executor: str


class _Assembler:
    """Rebuild the tables after a study finishes, unless the last rebuild was recent for its cost."""

    def __init__(self, out_dir: Path, settings: RunSettings, min_interval: float = 0.0) -> None:
        self.out_dir = out_dir
        self.settings = settings
        self.min_interval = min_interval
        self._last = 0.0
        self._cost = 0.0

    def due(self) -> bool:
        # Keeps rebuilding (which reads every record) under ~1/6 of the run time.
        return time.monotonic() - self._last >= max(self.min_interval, 5 * self._cost)

    def __call__(self, done: dict[str, Path], errors: Sequence[ErrorRow]) -> TableCounts:
        started = time.monotonic()
        counts = assemble_outputs(self.out_dir, done.items(), errors, self.settings)
        self._last = time.monotonic()
        self._cost = self._last - started
        return counts


def _check_folders(options: BatchOptions) -> tuple[tuple[Path, ...], Path]:
    inputs = options.inputs
    out_dir = Path(os.path.abspath(options.out_dir))
    if isinstance(options.in_dir, (str, os.PathLike)):
        in_dir = Path(os.path.abspath(options.in_dir))
        if not in_dir.is_dir():
            raise UsageError(f"{options.in_dir}: not a folder" if in_dir.exists() else f"{options.in_dir}: no such folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {options.out_dir}: exists and is not a folder")
    if any(os.path.realpath(out_dir) == os.path.realpath(p) for p in inputs):
        raise UsageError("--out must not be an input folder itself (use a new or a sub-folder)")
    return tuple(Path(os.path.abspath(p)) for p in inputs), out_dir


def _scan(inputs: Sequence[Path], out_dir: Path, settings: RunSettings) -> tuple[list[ImageHeader], list[ErrorRow], int]:
    rules = settings.analysis.rules()
    headers: list[ImageHeader] = []
    errors: list[ErrorRow] = []
    n_inputs = 0
    last_log = time.monotonic()
    for found in walk_inputs(inputs, exclude=[out_dir]):
        if isinstance(found, ErrorRow):
            logger.info("%s: %s", found.source_file, found.reason)
            errors.append(found)
            continue
        assert isinstance(found, InputFile)
        n_inputs += 1
        header = read_header(found, rules, protocol=settings.analysis.protocol)
        if isinstance(header, ErrorRow):
            logger.info("%s: %s", header.source_file, header.reason)
            errors.append(header)
        else:
            headers.append(header)
        if time.monotonic() - last_log > 10:
            last_log = time.monotonic()
            logger.info("reading headers: %d files so far", n_inputs)
    return headers, errors, n_inputs


def _forget_vanished(out_dir: Path, current: set[str]) -> None:
    """Remove records and outputs of studies whose inputs are no longer in IN_DIR."""
    folder = records_dir(out_dir)
    if not folder.is_dir():
        return
    for path in folder.glob("*.json"):
        record = read_record(path)
        if record is not None and record.study_uid in current:
            continue
        if record is not None:
            logger.info("study %s is no longer in the input; removing its outputs", record.study_uid)
            for rel in (*record.overlay_files, record.sr_file):
                if rel:
                    (out_dir / rel).unlink(missing_ok=True)
        path.unlink(missing_ok=True)


def _failed_study_rows(task: StudyTask, exc: BaseException) -> list[ErrorRow]:
    reason = f"study not analysed: {type(exc).__name__}: {exc}"
    return [ErrorRow(f.rel, "worker_failed", reason, f.sop_instance_uid, task.study_uid) for f in task.files]


def _make_executor(options: BatchOptions) -> StudyExecutor:
    if options.scheduler:
        return DaskExecutor(options.scheduler, max_in_flight=options.max_in_flight)
    if options.workers == 0:
        return InProcessExecutor()
    return LocalExecutor(options.workers, max_in_flight=options.max_in_flight)


def run_batch(options: BatchOptions) -> BatchResult:
    """Run ``mskus batch``: see the module docstring and README "Batch mode".

    Raises
    ------
    UsageError
        Bad folders or options, rules that do not load, an unreachable
        scheduler, workers of another mskus version, or another run
        holding OUT_DIR.
    KeyboardInterrupt
        After the workers were stopped and the tables written for the
        studies done so far.
    """
    from pipeline.batch.study import StudyOutcome, VersionMismatchError

    started = time.monotonic()
    if options.workers < 0:
        raise UsageError("--workers must not be negative (0: analyse in this process)")
    inputs, out_dir = _check_folders(options)
    analysis = options.analysis if options.analysis is not None else load_analysis_settings()
    settings = RunSettings(
        analysis=analysis, overlays=options.overlays, key_images=options.key_images, pseudonym_key=options.pseudonym_key
    )
    state = out_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with output_lock(state):
        stale = remove_stale_temporaries(out_dir)
        if stale:
            logger.info("removed %d temporary file(s) left by an interrupted run", stale)
        headers, coordinator_errors, n_inputs = _scan(inputs, out_dir, settings)
        tasks, duplicates = plan_studies(headers, out_dir=str(out_dir), settings=settings)
        coordinator_errors.extend(duplicates)
        _forget_vanished(out_dir, {t.study_uid for t in tasks})
        done: dict[str, Path] = {}
        todo: list[StudyTask] = []
        for task in tasks:
            path = record_path(out_dir, task.study_uid)
            if not options.force and up_to_date(read_record(path), task, settings) is not None:
                done[task.study_uid] = path
            else:
                todo.append(task)
        skipped = len(done)
        logger.info(
            "%d input file(s), %d stud(ies): %d already done, %d to analyse; %d input(s) refused before analysis",
            n_inputs, len(tasks), skipped, len(todo), len(coordinator_errors),
        )
        assemble = _Assembler(out_dir, settings)
        counts = assemble(done, coordinator_errors)
        failed = frames = 0
        description = ""
        if todo:
            executor = _make_executor(options)
            description = executor.description
            logger.info("analysing %d stud(ies) on %s", len(todo), description)
            progress = BatchProgress(sum(t.frames for t in todo), len(todo), bar=options.progress_bar)
            progress.errors = len(coordinator_errors)
            cancel = True
            try:
                for task, outcome in executor.map_unordered(todo):
                    if isinstance(outcome, VersionMismatchError):
                        raise UsageError(str(outcome))
                    if isinstance(outcome, StudyOutcome):
                        done[task.study_uid] = record_path(out_dir, task.study_uid)
                        frames += outcome.frames
                        progress.advance(frames=task.frames, errors=outcome.error_rows)
                    else:
                        failed += 1
                        rows = _failed_study_rows(task, outcome)  # type: ignore[arg-type]
                        coordinator_errors.extend(rows)
                        logger.error("study %s failed: %s", task.study_uid, rows[0].reason if rows else outcome)
                        progress.advance(frames=task.frames, errors=len(rows))
                    if assemble.due():
                        counts = assemble(done, coordinator_errors)
                cancel = False
            finally:
                executor.close(cancel=cancel)
                progress.close()
                counts = assemble(done, coordinator_errors)
    return BatchResult(
        studies=len(tasks),
        studies_skipped=skipped,
        studies_analysed=len(todo) - failed,
        studies_failed=failed,
        frames_analysed=frames,
        inputs=n_inputs,
        tables=counts,
        seconds=time.monotonic() - started,
        executor=description,
    )
