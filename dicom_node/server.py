"""The storage node: receive, queue per study, analyse in worker processes, send results.

:class:`StorageNode` owns the pynetdicom server (association threads), a
scheduler thread that hands quiet studies to a process pool, and one sender
thread per destination that works through the outbox. Analysis never runs
on an association thread.

Supervision: a worker process that dies (``kill -9``, the OOM killer, a
decoder segfault) breaks the pool; the scheduler sees it, rebuilds the pool
and queues the studies it held again (``max_analysis_attempts`` runs, then
the study is marked failed with the reason; ``mskus retry --studies``
queues it again). Workers end themselves when the node process dies
(:func:`~dicom_node.processing.init_worker`). TLS handshakes run on the
association's own thread with a timeout, so a client that connects and says
nothing delays no one else.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import cast

from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import NodeConfig, check_exposure, startup_notes
from dicom_node.handlers import NodeHandlers
from dicom_node.index import NodeIndex, StoredInstance, StudyState
from dicom_node.indexer import InstanceIndexer
from dicom_node.instance_checks import read_complete_instance
from dicom_node.logsafe import escape, install
from dicom_node.metrics import MetricsServer, NodeMetrics, index_gauges
from dicom_node.processing import StudyJob, StudyOutcome, init_worker, process_study
from dicom_node.results_tables import TablesSchedule, rebuild_results_tables
from dicom_node.sender import OutboxSender
from dicom_node.storage import DurableStore, fsync_dir
from pipeline.atomic import remove_stale_temporaries
from pipeline.loading import SECONDARY_CAPTURE_SOP_CLASSES, ULTRASOUND_SOP_CLASSES
from pipeline.settings import AnalysisSettings, load_analysis_settings

__all__ = ["ACCEPTED_TRANSFER_SYNTAXES", "StorageNode"]

logger = logging.getLogger("mskus.node")
install(logger.name)

ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
]


def _ssl_context(config: NodeConfig) -> ssl.SSLContext | None:
    if config.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=str(config.tls.cert), keyfile=str(config.tls.key))
    if config.tls.ca is not None:
        context.load_verify_locations(cafile=str(config.tls.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _warm_up() -> None:
    """Run in a new analysis worker: nothing to do, its start (imports of the analysis code) is the point."""


class _HandshakeOffAcceptServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with the TLS handshake moved from the accept loop to the connection's thread.

    pynetdicom wraps each accepted socket (handshake included) in the thread
    that accepts connections, so one client that opens TCP and sends no
    ClientHello blocks every later connection. Here the accept loop only
    accepts; the handshake runs in the new connection's thread and is
    abandoned after ``handshake_timeout`` seconds, with a log line naming the peer.
    """

    handshake_timeout: float = 10.0
    on_handshake_failed: Callable[[str, int, str], None] | None = None  # callable(host, port, reason)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None  # bound in __init__
        return self.socket.accept()

    def process_request_thread(self, request, client_address) -> None:
        if self.ssl_context is not None:
            previous = request.gettimeout()
            try:
                request.settimeout(self.handshake_timeout)
                request = self.ssl_context.wrap_socket(request, server_side=True)
                request.settimeout(previous)
            except (OSError, ssl.SSLError, ValueError) as exc:
                reason = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else f"{type(exc).__name__}: {exc}"
                if self.on_handshake_failed is not None:
                    self.on_handshake_failed(client_address[0], client_address[1], reason)
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)


class StorageNode:
    """A running mskus storage node.

    Parameters
    ----------
    config : NodeConfig
        Validated configuration.
    poll_seconds : float
        How often the scheduler and sender look for work.
    """

    def __init__(self, config: NodeConfig, *, analysis: AnalysisSettings | None = None, poll_seconds: float = 0.5) -> None:
        self.config = config
        # Rules and segmenters: the caller's (``mskus serve`` loads them at its start), else the shipped ones.
        self.analysis = analysis if analysis is not None else load_analysis_settings()
        self.poll_seconds = poll_seconds
        self.store = DurableStore(config.data_dir)
        self.index = NodeIndex(Path(config.data_dir) / "index.sqlite3")
        self.metrics = NodeMetrics()
        self.indexer = InstanceIndexer(self.index, self.metrics)
        self.handlers = NodeHandlers(config, self.store, self.index, self.metrics, self.indexer)
        self.sender = OutboxSender(config, self.index, self.metrics)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: _HandshakeOffAcceptServer | None = None
        self._ae: AE | None = None
        self._metrics_server: MetricsServer | None = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._running: dict[str, concurrent.futures.Future[StudyOutcome]] = {}
        #: Set when results are queued: that destination's sender starts at once instead of at its next poll.
        self._wake = {d.label: threading.Event() for d in config.destinations}
        self._warmed = False
        self._tables = TablesSchedule()

    # -- lifecycle ---------------------------------------------------------------
    def build_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = self.config.max_pdu
        ae.require_called_aet = self.config.require_called_ae_title
        ae.require_calling_aet = sorted({p.ae_title for p in self.config.allow})
        ae.maximum_associations = self.config.max_associations
        ae.network_timeout = 60
        ae.dimse_timeout = 60
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        for uid in sorted(ULTRASOUND_SOP_CLASSES | SECONDARY_CAPTURE_SOP_CLASSES):
            ae.add_supported_context(uid, ACCEPTED_TRANSFER_SYNTAXES)
        return ae

    def start(self) -> None:
        """Recover unfinished work, then start receiving, processing and sending.

        Raises
        ------
        pipeline.errors.UsageError
            The node would accept every caller on a network address
            (:func:`~dicom_node.config.check_exposure`).
        """
        check_exposure(self.config)
        for note in startup_notes(self.config):
            logger.warning("%s", note)
        recovered = self.index.reset_interrupted()
        if recovered:
            logger.info("event=recovered studies=%d", recovered)
        if self._running_marker.exists():  # the last run did not stop cleanly: index rows may be missing
            self.reconcile_inbox()
        self._mark_running()
        self.reconcile_archive()
        # Half-written files of a crash were never acknowledged: nothing in tmp/ is anyone's data.
        stale = remove_stale_temporaries(self.store.tmp)
        if stale:
            logger.info("event=stale_temporaries_removed count=%d", stale)
        self._pool = self._new_pool()
        self.indexer.start()
        ae = self._ae = self.build_ae()
        server = cast(_HandshakeOffAcceptServer, ae.make_server(
            (self.config.bind_address, self.config.port),
            evt_handlers=self.handlers.bindings(),
            ssl_context=_ssl_context(self.config),
            server_class=_HandshakeOffAcceptServer,
        ))
        server.handshake_timeout = self.config.tls_handshake_timeout
        server.on_handshake_failed = self._handshake_failed
        ae._servers.append(server)  # as start_server does: ae.shutdown() stops it too
        self._server = server
        loops: list[tuple[Callable[..., object], tuple[object, ...], str]] = [
            (self._schedule_loop, (), "mskus-scheduler"),
            (server.serve_forever, (), "mskus-acceptor"),
        ]
        loops.append((self._send_loop, (None,), "mskus-sender-unconfigured"))
        loops.extend((self._send_loop, (d.label,), f"mskus-sender-{d.label}") for d in self.config.destinations)
        for target, args, name in loops:
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.config.metrics_port is not None:
            self._metrics_server = MetricsServer(self.config.metrics_port, self.render_metrics, self.health)
            self._metrics_server.start()
            logger.info("event=metrics_listening url=http://127.0.0.1:%d/metrics", self._metrics_server.port)
        self.index.audit("node_started", f"ae_title={self.config.ae_title} port={self.port}")
        logger.info("event=node_started ae_title=%s address=%s port=%d", self.config.ae_title, self.config.bind_address, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    @property
    def metrics_port(self) -> int | None:
        """The port of the metrics endpoint (``None`` when off)."""
        return self._metrics_server.port if self._metrics_server is not None else None

    def worker_pids(self) -> list[int]:
        """Process ids of the analysis workers now alive."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [pid for pid, proc in list(processes.items()) if proc.is_alive()]

    def render_metrics(self) -> str:
        """The Prometheus text of ``/metrics``: event counters and the index's gauges."""
        gauges = index_gauges(self.index)
        gauges[("mskus_up", ())] = 1.0 if self.health()[0] else 0.0
        gauges[("mskus_index_rows_pending", ())] = float(self.indexer.pending)
        return self.metrics.render(gauges)

    def health(self) -> tuple[bool, str]:
        """Whether every node thread is alive, and which are not."""
        dead = [t.name for t in self._threads if not t.is_alive()]
        if self.indexer.started and not self.indexer.alive:
            dead.append("mskus-indexer")
        if self._stop.is_set():
            return False, "stopping"
        return (not dead), ("ok" if not dead else "threads not running: " + ", ".join(dead))

    def reconcile_archive(self) -> int:
        """Move archived files no index row knows into ``DATA_DIR/orphans/`` (a worker's write after a crash).

        Returns how many were moved; each is logged. A result written but not
        recorded is not sent anywhere: the study's next run makes a new one.
        """
        known = {os.path.abspath(p) for p in self.index.result_paths()}
        moved = 0
        for path in sorted(self.store.archive.rglob("*.dcm")):
            if os.path.abspath(path) in known:
                continue
            target = Path(self.config.data_dir) / "orphans" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved += 1
            logger.warning("event=orphan_result path=%s moved_to=%s", path, target)
        if moved:
            self.index.audit("archive_reconciled", f"orphans={moved}")
        return moved

    @property
    def _running_marker(self) -> Path:
        """Present while a node runs on this data folder; left behind by a crash (then the inbox is reconciled)."""
        return Path(self.config.data_dir) / ".node-running"

    def _mark_running(self) -> None:
        marker = self._running_marker
        with open(marker, "w", encoding="ascii") as fh:
            fh.write(f"{os.getpid()}\n")
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(marker.parent)  # the marker must outlive a power loss as surely as the instances do

    def reconcile_inbox(self) -> int:
        """Index again the inbox files whose index row a crash lost (run at start after an unclean stop).

        An instance is acknowledged once its file is fsync'd in the inbox;
        its index row is committed without waiting for the disk (one fsync
        less per instance), so after a power loss the last rows may be
        missing, or older than the file (a changed resend). Such files are
        recorded again from their header and their studies queued. A file
        that cannot be read whole, or fails the checks a C-STORE gets (an
        instance whose write a crash interrupted before Success:
        :mod:`dicom_node.storage`), is moved to ``DATA_DIR/orphans/inbox/``.

        Returns
        -------
        int
            How many instances were indexed again.
        """
        known = self.index.instance_paths()
        recovered = 0
        for path in sorted(self.store.inbox.glob("*/*.dcm")):
            written = known.get(os.path.abspath(path))
            if written is not None and path.stat().st_mtime <= written:
                continue
            try:
                data = path.read_bytes()
                ds = read_complete_instance(data)
                stored = StoredInstance(
                    str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.StudyInstanceUID),
                    str(ds.get("SeriesInstanceUID", "")), str(path), hashlib.sha256(data).hexdigest(),
                )
            except Exception as exc:  # unreadable: keep it aside, never delete what was acknowledged
                target = Path(self.config.data_dir) / "orphans" / "inbox" / path.parent.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                logger.warning("event=inbox_unreadable path=%s moved_to=%s reason=%s: %s", path, target, type(exc).__name__, exc)
                continue
            self.index.record_instance(
                stored, "(recovered)", now=path.stat().st_mtime,
                audit=("instance_recovered", f"sop={escape(stored.sop_instance_uid)} study={escape(stored.study_uid)}"),
            )
            recovered += 1
            logger.warning("event=instance_reindexed sop=%s study=%s path=%s", stored.sop_instance_uid, stored.study_uid, path)
        if recovered:
            logger.warning("event=inbox_reconciled instances=%d", recovered)
        return recovered

    def _handshake_failed(self, host: str, port: int, reason: str) -> None:
        logger.warning(
            "event=tls_handshake_failed called_ae=%s host=%s port=%s reason=%s", self.config.ae_title, host, port, reason
        )
        self.metrics.inc("mskus_tls_handshake_failures_total")

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.config.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(os.getpid(),),
        )

    def stop(self) -> None:
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._metrics_server is not None:
            self._metrics_server.stop()
        self.indexer.stop()  # rows of instances acknowledged from now on are written by their handlers
        for thread in self._threads:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        self._tables.collect()
        if self._tables.due or self._tables.running:  # the tables see every finished study when the node stops
            rebuild_results_tables(str(self.config.data_dir), self.analysis)
        self.store.close()
        self.index.audit("node_stopped", f"ae_title={self.config.ae_title}")  # a synced commit: every row is on disk now
        # Rows that could not be written, or are still queued behind a stuck write: the marker stays, and the
        # next start indexes the inbox again.
        missing = self.indexer.failures + self.indexer.pending
        if missing:
            logger.warning("event=index_rows_missing count=%d reason=the next start reconciles the inbox", missing)
        else:
            self._running_marker.unlink(missing_ok=True)
        logger.info("event=node_stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then stop cleanly (finished runs are recorded)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        network = logging.getLogger("pynetdicom")
        if network.level == logging.NOTSET:  # the node logs each association and store itself, in one line
            network.setLevel(logging.WARNING)
        self.start()
        self._warm_workers(now=True)  # a long-running node starts its worker now, not with the first study
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            logger.info("event=interrupted")
        finally:
            self.stop()

    # -- loops -------------------------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self._warm_workers()
                self._collect_finished()
                for study_uid, run, snapshot in self.index.claim_quiet_studies(self.config.quiet_seconds):
                    self._submit(study_uid, run, snapshot)
                self._tables.poll(self._submit_tables)
            except Exception:  # keep scheduling whatever one study did
                logger.exception("event=scheduler_error")
        self._collect_finished(wait=True)

    def _warm_workers(self, *, now: bool = False) -> None:
        """Start the analysis worker (``now``, or as soon as a study waits), so it is ready when a quiet period ends.

        A worker process starts (interpreter, imports) in seconds; started
        lazily at the first analysis, that time would add to the first
        study's result latency. :meth:`serve_forever` starts it at once; a
        node run by :meth:`start` alone starts it when the first study waits.
        """
        if self._warmed or self._pool is None:
            return
        if not now and self.index.oldest_pending_received_at() is None:
            return
        self._warmed = True
        with contextlib.suppress(BrokenProcessPool, RuntimeError):
            self._pool.submit(_warm_up)

    def _submit(self, study_uid: str, run: int, snapshot: float) -> None:
        assert self._pool is not None
        job = StudyJob(
            data_dir=str(self.config.data_dir),
            study_uid=study_uid,
            run=run,
            instance_paths=tuple(i.path for i in self.index.study_instances(study_uid)),
            previous_sr_path=self.index.latest_result_path(study_uid, "sr"),
            key_images=self.config.key_images,
            snapshot=snapshot,
            analysis=self.analysis,
        )
        logger.info("event=study_run_start study=%s run=%d instances=%d", study_uid, run, len(job.instance_paths))
        try:
            self._running[study_uid] = self._pool.submit(process_study, job)
        except BrokenProcessPool:  # a worker died since the last collection: rebuild, then submit
            self._replace_pool("pool broken at submit")
            self._running[study_uid] = self._pool.submit(process_study, job)

    def _submit_tables(self) -> concurrent.futures.Future[float]:
        """The results tables' rebuild, as a job behind the studies already submitted."""
        assert self._pool is not None
        try:
            return self._pool.submit(rebuild_results_tables, str(self.config.data_dir), self.analysis)
        except BrokenProcessPool:
            self._replace_pool("pool broken at submit")
            return self._pool.submit(rebuild_results_tables, str(self.config.data_dir), self.analysis)

    def _replace_pool(self, reason: str) -> None:
        old, self._pool = self._pool, self._new_pool()
        if old is not None:
            old.shutdown(wait=False, cancel_futures=True)
        self.metrics.inc("mskus_worker_restarts_total")
        self.index.audit("worker_restarted", reason)
        logger.warning("event=worker_pool_rebuilt reason=%s", reason)

    def _collect_finished(self, wait: bool = False) -> None:
        broken = False
        for study_uid, future in list(self._running.items()):
            if not (future.done() or wait):
                continue
            del self._running[study_uid]
            try:
                outcome = future.result()
            except BrokenProcessPool as exc:
                # The worker process died (kill -9, OOM, segfault): not this study's verdict.
                broken = True
                state = self.index.requeue_after_crash(study_uid, str(exc), self.config.max_analysis_attempts)
                logger.error(
                    "event=worker_died study=%s action=%s reason=%s",
                    study_uid, "requeued" if state is StudyState.PENDING else "failed", exc,
                )
                continue
            except Exception as exc:
                logger.error("event=study_run_failed study=%s reason=%s: %s", study_uid, type(exc).__name__, exc)
                self.index.finish_study(study_uid, time.time(), error=f"{type(exc).__name__}: {exc}")
                continue
            self.metrics.inc("mskus_images_refused_total", outcome.failed_images)
            destinations = [d.label for d in self.config.destinations]
            for result in outcome.results:
                self.index.add_result(result.sop_instance_uid, study_uid, result.kind, result.path, outcome.run, destinations)
            for wake in self._wake.values():
                wake.set()
            self.index.finish_study(study_uid, outcome.snapshot, error=outcome.error)
            self._tables.study_finished()
            self.index.audit(
                "study_processed",
                f"study={study_uid} run={outcome.run} images={outcome.images} failed={outcome.failed_images} results={len(outcome.results)}",
            )
            logger.info(
                "event=study_run_done study=%s run=%d images=%d failed=%d results=%d seconds=%.2f",
                study_uid, outcome.run, outcome.images, outcome.failed_images, len(outcome.results), outcome.seconds,
            )
        if broken and not self._stop.is_set():
            self._replace_pool("an analysis worker process died")

    def _send_loop(self, destination: str | None) -> None:
        """One destination's sender (``None``: items of destinations no longer configured)."""
        wake = self._wake.get(destination) if destination is not None else None
        while True:
            if wake is not None:  # new results wake it at once; due retries are found at the next poll
                wake.wait(self.poll_seconds)
                wake.clear()
            else:
                self._stop.wait(self.poll_seconds)
            if self._stop.is_set():
                break
            try:
                if destination is None:
                    self.sender.run_unconfigured()
                else:
                    self.sender.run_once(destination=destination, stop=self._stop)
            except Exception:
                logger.exception("event=sender_error destination=%s", destination)
