"""The node's ``DATA_DIR/results/`` tables, rebuilt after studies finish without holding up their results.

Each finished study writes its record (and SR copy) to ``results/`` in the
batch output layout from its worker (:mod:`dicom_node.processing`). The
tables (``measurements.csv``, ``summary.csv``, ...) are rebuilt from every
record, which takes about a millisecond per study: done after each study
inside its run, a node holding thousands of studies would delay every SR by
seconds. So the rebuild is a job of its own, submitted to the worker pool by
the node's scheduler after a study's results are queued for sending, at
most one at a time and, like the batch coordinator's, kept under about a
sixth of the time (:class:`TablesSchedule`); the node rebuilds once more as
it stops.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from pathlib import Path

from dicom_node.logsafe import install
from pipeline.batch.assemble import assemble_outputs
from pipeline.batch.lock import output_lock
from pipeline.batch.records import STATE_DIR, records_dir
from pipeline.batch.settings import RunSettings
from pipeline.settings import AnalysisSettings

__all__ = ["RESULTS_FOLDER", "TablesSchedule", "rebuild_results_tables"]

logger = logging.getLogger("mskus.node.worker")
install(logger.name)

#: Sub-folder of the node's data folder holding its results in the batch output layout.
RESULTS_FOLDER = "results"


def rebuild_results_tables(data_dir: str, analysis: AnalysisSettings) -> float:
    """Rebuild the tables of ``<data_dir>/results/`` from every study record; returns the seconds it took.

    Runs in a worker process (or in the node as it stops), under the
    results folder's lock. A failure is logged, never raised: the archive
    and the sends are what matter, and the next rebuild redoes the tables.
    """
    started = time.perf_counter()
    out = Path(data_dir) / RESULTS_FOLDER
    try:
        state = out / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        with output_lock(state, wait=True):
            records = ((p.stem, p) for p in sorted(records_dir(out).glob("*.json")))
            assemble_outputs(out, records, [], RunSettings(analysis=analysis, overlays=False))
    except Exception as exc:  # noqa: BLE001 - see above
        logger.warning("event=results_tables_not_written reason=%s: %s", type(exc).__name__, exc)
    return time.perf_counter() - started


class TablesSchedule:
    """When the node rebuilds its results tables: after studies finish, one rebuild at a time, rate-limited.

    Parameters
    ----------
    min_interval : float
        Seconds between the starts of two rebuilds at least; also at least
        five times the last rebuild's cost, so rebuilding takes at most
        about a sixth of the time however many studies the node holds.
    """

    def __init__(self, min_interval: float = 0.0) -> None:
        if min_interval < 0:
            raise ValueError(f"min_interval must not be negative, got {min_interval}")
        self.min_interval = min_interval
        #: Whether a study finished since the last rebuild started.
        self.due = False
        self.cost = 0.0
        self._last = float("-inf")
        self._future: concurrent.futures.Future[float] | None = None

    def study_finished(self) -> None:
        """A study's record was written: the tables are out of date."""
        self.due = True

    @property
    def running(self) -> bool:
        """Whether a rebuild was submitted and has not been collected yet."""
        return self._future is not None

    def collect(self) -> None:
        """Take in a finished rebuild's cost; a rebuild that failed or was cancelled leaves the tables due."""
        if self._future is None or not self._future.done():
            return
        try:
            self.cost = self._future.result()
        except BaseException:  # noqa: BLE001 - a worker died or the pool was replaced: build again
            self.due = True
        self._future = None

    def poll(self, submit: Callable[[], concurrent.futures.Future[float]], *, now: float | None = None) -> bool:
        """Collect a finished rebuild; submit the next when due. Returns True when one was submitted."""
        now = time.monotonic() if now is None else now
        self.collect()
        if self._future is not None or not self.due or now - self._last < max(self.min_interval, 5 * self.cost):
            return False
        self._future = submit()  # a submit that raises leaves the tables due
        self.due = False
        self._last = now
        return True
