"""Index rows of acknowledged instances, written on one thread after Success.

An instance is acknowledged once its file and folder in the inbox are
fsync'd (:mod:`dicom_node.storage`); that file is the durable copy. Its
index row (and the study's last-arrival time) only tells the scheduler what
to analyse, and a node that stops without writing it indexes the inbox file
again at its next start (:meth:`~dicom_node.server.StorageNode.reconcile_inbox`).
So the row need not be on the C-STORE path: the handler hands it to
:class:`InstanceIndexer`, which writes what has queued up in one transaction
and logs each instance's ``event=store`` line. The sender's next instance is
received meanwhile instead of waiting for SQLite and the log.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections import deque
from dataclasses import dataclass, field

from dicom_node.index import NodeIndex, ReceivedInstance, StoredInstance
from dicom_node.logsafe import install
from dicom_node.metrics import NodeMetrics

__all__ = ["InstanceIndexer", "StoreReceipt"]

logger = logging.getLogger("mskus.node")
install(logger.name)


@dataclass(frozen=True)
class StoreReceipt:
    """An acknowledged instance: where it is, what its row and log line say.

    Its SHA-256 is computed here, on the indexer's thread, unless the
    handler already needed it (to tell a resend from a duplicate).
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    #: The inbox file.
    path: str
    #: The file's bytes, as stored.
    data: bytes = field(repr=False)
    calling_ae: str
    #: The sender's address.
    host: str
    #: When it was stored (seconds since the epoch).
    received_at: float
    #: Milliseconds the C-STORE handler took, up to the file being durable.
    handler_ms: float
    #: (event, detail) of the audit row written with the instance's row.
    audit: tuple[str, str] | None = None
    #: The SHA-256 of ``data`` (hex) when already known.
    sha256: str | None = None

    def received(self) -> ReceivedInstance:
        """The row to write."""
        digest = self.sha256 or hashlib.sha256(self.data).hexdigest()
        instance = StoredInstance(self.sop_instance_uid, self.sop_class_uid, self.study_uid, self.series_uid, self.path, digest)
        return ReceivedInstance(instance, self.calling_ae, self.received_at, self.audit)


class InstanceIndexer:
    """Writes the index rows of acknowledged instances on its own thread, in arrival order.

    Until :meth:`start` and after :meth:`stop`, :meth:`submit` writes the row
    on the caller's thread (an association still finishing while the node
    stops loses nothing).

    Parameters
    ----------
    index : NodeIndex
        Where the rows go (committed without waiting for the disk).
    metrics : NodeMetrics, optional
        Counts rows that could not be written (``mskus_index_failures_total``).
    max_batch : int
        Most rows written in one transaction.
    """

    def __init__(self, index: NodeIndex, metrics: NodeMetrics | None = None, *, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.index = index
        self.metrics = metrics or NodeMetrics()
        self.max_batch = max_batch
        self._queue: deque[StoreReceipt] = deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._running = False
        self._thread: threading.Thread | None = None
        #: Rows that could not be written: their inbox files are indexed again at the next start.
        self.failures = 0

    @property
    def pending(self) -> int:
        """Rows acknowledged but not yet written."""
        with self._cond:
            return self._pending

    @property
    def started(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not."""
        with self._cond:
            return self._running

    @property
    def alive(self) -> bool:
        """Whether the writer thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the writer thread."""
        with self._cond:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(target=self._run, name="mskus-indexer", daemon=True)
        self._thread.start()

    def submit(self, receipt: StoreReceipt) -> None:
        """Queue the row of an acknowledged instance (written at once when the thread is not running)."""
        with self._cond:
            if self._running:
                self._queue.append(receipt)
                self._pending += 1
                self._cond.notify_all()
                return
        self._write([receipt])

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted row is written (or given up). Returns False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread; later rows are written by their callers."""
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or not self._running)
                if not self._queue:
                    return  # stopped and drained
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            try:
                self._write(batch)
            finally:
                with self._cond:
                    self._pending -= len(batch)
                    self._cond.notify_all()

    def _failed(self, batch: list[StoreReceipt]) -> None:
        for receipt in batch:
            self.failures += 1
            self.metrics.inc("mskus_index_failures_total")
            logger.exception(
                "event=index_failed sop=%s study=%s reason=the inbox file is kept and indexed again at the next start",
                receipt.sop_instance_uid, receipt.study_uid,
            )

    def _write(self, batch: list[StoreReceipt]) -> None:
        try:
            self.index.record_instances([r.received() for r in batch], sync=False)
        except sqlite3.OperationalError:
            # The database itself (locked past its timeout, disk full): row by row would wait as long again
            # for each row. The whole batch is left to the inbox reconciliation at the next start.
            self._failed(batch)
            return
        except Exception:  # one bad row must not cost the others: write them one by one
            if len(batch) > 1:
                for receipt in batch:
                    self._write([receipt])
                return
            self._failed(batch)
            return
        for receipt in batch:
            logger.info(
                "event=store calling_ae=%s host=%s sop=%s study=%s bytes=%d ms=%.1f",
                receipt.calling_ae, receipt.host, receipt.sop_instance_uid, receipt.study_uid,
                len(receipt.data), receipt.handler_ms,
            )
