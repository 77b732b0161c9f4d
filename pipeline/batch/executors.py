"""Where studies run: a local process pool, or an existing Dask cluster.

Both executors take an iterator of :class:`~pipeline.batch.plan.StudyTask`
and yield ``(task, outcome)`` pairs as studies finish, with at most
``max_in_flight`` tasks submitted at once, so memory stays bounded however
many studies there are. The outcome is a
:class:`~pipeline.batch.study.StudyOutcome`, or the exception the study
raised. Both run the same :func:`~pipeline.batch.study.process_study`, so
their output files are identical.

Local workers are started with the ``forkserver`` method (``spawn`` where
there is none): a fresh interpreter per worker, no inherited threads or
locks. They ignore SIGINT; the coordinator decides what Ctrl-C does
(stop submitting, terminate the workers, keep what is done).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Protocol

from pipeline.batch.plan import StudyTask
from pipeline.errors import UsageError

__all__ = ["DaskExecutor", "InProcessExecutor", "LocalExecutor", "StudyExecutor", "WorkerDiedError"]

logger = logging.getLogger(__name__)

#: Attempts of a study whose worker process died (the culprit, or a bystander).
_ATTEMPTS = 2


class WorkerDiedError(RuntimeError):
    """The process analysing a study died (killed, out of memory, crashed)."""


class StudyExecutor(Protocol):
    """What the runner needs from an executor."""

    description: str
    max_in_flight: int

    def map_unordered(self, tasks: Iterable[StudyTask]) -> Iterator[tuple[StudyTask, object]]: ...

    def close(self, *, cancel: bool = False) -> None: ...


def _init_worker() -> None:
    """Worker start: single-threaded numeric libraries, Ctrl-C left to the coordinator."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _process_study(task: StudyTask):
    from pipeline.batch.study import process_study

    return process_study(task)


class InProcessExecutor:
    """Studies one after another in this process (``mskus analyze``: no start-up cost, one model load)."""

    description = "this process"
    max_in_flight = 1

    def map_unordered(self, tasks: Iterable[StudyTask]) -> Iterator[tuple[StudyTask, object]]:
        for task in tasks:
            try:
                outcome: object = _process_study(task)
            except Exception as exc:  # noqa: BLE001 - reported per study by the runner
                outcome = exc
            yield task, outcome

    def close(self, *, cancel: bool = False) -> None:
        return None


class LocalExecutor:
    """A process pool on this machine.

    Parameters
    ----------
    workers : int
        Worker processes.
    max_in_flight : int, optional
        Tasks submitted at once (default ``2 * workers``).
    """

    def __init__(self, workers: int, *, max_in_flight: int | None = None) -> None:
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        self.workers = workers
        self.max_in_flight = max_in_flight or 2 * workers
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._pool = self._new_pool()
        self.description = f"{workers} local worker process(es)"

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=self._context, initializer=_init_worker)

    def map_unordered(self, tasks: Iterable[StudyTask]) -> Iterator[tuple[StudyTask, object]]:
        source = iter(tasks)
        retry: list[StudyTask] = []
        attempts: dict[str, int] = {}
        pending: dict[Future, StudyTask] = {}

        def submit_more() -> None:
            while len(pending) < self.max_in_flight:
                task = retry.pop() if retry else next(source, None)
                if task is None:
                    return
                attempts[task.study_uid] = attempts.get(task.study_uid, 0) + 1
                pending[self._pool.submit(_process_study, task)] = task

        submit_more()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                task = pending.pop(future)
                try:
                    outcome: object = future.result()
                except BrokenProcessPool:
                    broken = True
                    if attempts[task.study_uid] < _ATTEMPTS:
                        retry.append(task)
                        continue
                    outcome = WorkerDiedError("the worker process died (killed or out of memory) while analysing this study")
                except Exception as exc:  # noqa: BLE001 - reported per study by the runner
                    outcome = exc
                yield task, outcome
            if broken:
                # Every task still in the broken pool fails the same way; collect them and start afresh.
                for future, task in list(pending.items()):
                    pending.pop(future)
                    if attempts[task.study_uid] < _ATTEMPTS:
                        retry.append(task)
                    else:
                        yield task, WorkerDiedError("the worker process died (killed or out of memory) while analysing this study")
                logger.warning("a worker process died; starting a new pool (%d stud(ies) to retry)", len(retry))
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            submit_more()

    def close(self, *, cancel: bool = False) -> None:
        """Shut the pool down; with ``cancel`` also stop the studies being analysed."""
        if cancel:
            processes = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
        else:
            self._pool.shutdown(wait=True)


class DaskExecutor:
    """Studies on an existing Dask distributed cluster.

    Every worker must have the same mskus version installed and see IN_DIR
    and OUT_DIR at the same paths as this machine (a shared file system):
    the workers read the inputs and write the SRs, overlays and study
    records themselves; only small task and outcome objects travel.

    Parameters
    ----------
    address : str
        Scheduler address, e.g. ``tcp://10.0.0.5:8786``.
    max_in_flight : int, optional
        Tasks submitted at once (default ``2 *`` the cluster's threads).
    """

    def __init__(self, address: str, *, max_in_flight: int | None = None, timeout: float = 15.0) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError("--scheduler needs dask.distributed: pip install 'mskus[dask]'") from None
        try:
            self._client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"cannot connect to the Dask scheduler at {address}: {exc}") from None
        threads = sum(self._client.nthreads().values()) or 1
        self.max_in_flight = max_in_flight or 2 * threads
        self.description = f"Dask cluster {address} ({threads} worker thread(s))"
        self._pending: dict[str, tuple[object, StudyTask]] = {}

    def map_unordered(self, tasks: Iterable[StudyTask]) -> Iterator[tuple[StudyTask, object]]:
        from distributed import as_completed

        source = iter(tasks)
        completed = as_completed(loop=self._client.loop)

        def submit_more() -> None:
            while len(self._pending) < self.max_in_flight:
                task = next(source, None)
                if task is None:
                    return
                key = f"mskus-study-{task.key}-{uuid.uuid4().hex[:12]}"
                future = self._client.submit(_process_study, task, key=key, pure=False)
                self._pending[key] = (future, task)
                completed.add(future)

        submit_more()
        for future in completed:
            _, task = self._pending.pop(future.key)
            try:
                outcome: object = future.result()
            except Exception as exc:  # noqa: BLE001 - KilledWorker, a bug in the study: reported per study
                outcome = exc
            future.release()
            yield task, outcome
            submit_more()

    def close(self, *, cancel: bool = False) -> None:
        """Disconnect (the cluster keeps running); with ``cancel`` drop the queued studies."""
        if cancel and self._pending:
            self._client.cancel([future for future, _ in self._pending.values()], force=True)
        self._pending.clear()
        self._client.close()
