"""The node's results in the batch layout (``DATA_DIR/results/``): records per study, tables rebuilt after them.

Real peers: DCMTK storescu, the node's worker process; the tables are read
as ``mskus review --out DATA_DIR/results`` reads them.
"""

from __future__ import annotations

import concurrent.futures
import csv
from pathlib import Path

import pydicom
import pytest

from dicom_node.results_tables import RESULTS_FOLDER, TablesSchedule
from tests.conftest import SAMPLE_DATA
from tests.test_node import processed, running_node, storescu, wait_for


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _study(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def test_each_analysed_study_reaches_the_results_tables(tmp_path: Path) -> None:
    nerve, muscle = SAMPLE_DATA / "01_nerve_mono.dcm", SAMPLE_DATA / "04_muscle_mono.dcm"
    with running_node(tmp_path, quiet_seconds=0.3) as node:
        results = Path(node.config.data_dir) / RESULTS_FOLDER
        assert storescu(node.port, nerve).returncode == 0
        wait_for(lambda: processed(node, 1))
        table = results / "measurements.csv"
        rows = wait_for(lambda: table.exists() and [r for r in _rows(table) if r["study_uid"] == _study(nerve)])
        assert any(r["measurement"] == "cross_sectional_area" for r in rows)
        assert storescu(node.port, muscle).returncode == 0
        wait_for(lambda: processed(node, 2))
    # Whatever was still due when the node stopped is in the tables too.
    studies = {r["study_uid"] for r in _rows(table)}
    assert studies == {_study(nerve), _study(muscle)}
    assert (results / "summary.csv").exists() and (results / "errors.csv").exists()


class _Clock:
    """Futures that finish when told, and a rebuild counter."""

    def __init__(self, cost: float) -> None:
        self.cost = cost
        self.submitted: list[concurrent.futures.Future[float]] = []

    def submit(self) -> concurrent.futures.Future[float]:
        future: concurrent.futures.Future[float] = concurrent.futures.Future()
        self.submitted.append(future)
        return future

    def finish(self) -> None:
        self.submitted[-1].set_result(self.cost)


def test_rebuilds_run_one_at_a_time_and_at_most_a_sixth_of_the_time() -> None:
    schedule, jobs = TablesSchedule(), _Clock(cost=2.0)
    assert not schedule.poll(jobs.submit, now=0.0)  # nothing finished yet
    schedule.study_finished()
    assert schedule.poll(jobs.submit, now=0.0) and schedule.running
    schedule.study_finished()
    assert not schedule.poll(jobs.submit, now=1.0)  # one rebuild at a time
    jobs.finish()
    assert not schedule.poll(jobs.submit, now=3.0) and not schedule.running  # collected; next start 5 x 2 s after the last
    assert schedule.cost == 2.0 and schedule.due
    assert schedule.poll(jobs.submit, now=10.0)
    jobs.finish()
    assert not schedule.poll(jobs.submit, now=30.0)  # nothing finished since
    assert len(jobs.submitted) == 2


def test_a_rebuild_lost_with_its_worker_is_done_again() -> None:
    schedule, jobs = TablesSchedule(), _Clock(cost=0.0)
    schedule.study_finished()
    assert schedule.poll(jobs.submit, now=0.0)
    jobs.submitted[-1].set_exception(concurrent.futures.process.BrokenProcessPool("worker died"))
    schedule.collect()
    assert schedule.due and not schedule.running
    assert schedule.poll(jobs.submit, now=1.0)
    with pytest.raises(ValueError, match="min_interval"):
        TablesSchedule(min_interval=-1)


def test_a_rebuild_that_could_not_be_submitted_stays_due() -> None:
    schedule = TablesSchedule()
    schedule.study_finished()

    def refused() -> concurrent.futures.Future[float]:
        raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(RuntimeError):
        schedule.poll(refused, now=0.0)
    assert schedule.due and not schedule.running  # the rebuild at stop still runs
