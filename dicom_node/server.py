"""The storage node: receive, queue per study, analyse in worker processes, send results.

:class:`StorageNode` owns the pynetdicom server (association threads), a
scheduler thread that hands quiet studies to a process pool, and a sender
thread that works through the outbox. Analysis never runs on an
association thread.
"""

from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import signal
import ssl
import threading
import time
from pathlib import Path

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import Verification
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from dicom_node.config import NodeConfig, check_exposure, startup_notes
from dicom_node.handlers import NodeHandlers
from dicom_node.index import NodeIndex
from dicom_node.processing import StudyJob, StudyOutcome, process_study
from dicom_node.sender import OutboxSender
from dicom_node.storage import DurableStore
from pipeline.loading import SECONDARY_CAPTURE_SOP_CLASSES, ULTRASOUND_SOP_CLASSES

__all__ = ["ACCEPTED_TRANSFER_SYNTAXES", "StorageNode"]

logger = logging.getLogger("mskus.node")

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


class StorageNode:
    """A running mskus storage node.

    Parameters
    ----------
    config : NodeConfig
        Validated configuration.
    poll_seconds : float
        How often the scheduler and sender look for work.
    """

    def __init__(self, config: NodeConfig, *, poll_seconds: float = 0.5) -> None:
        self.config = config
        self.poll_seconds = poll_seconds
        self.store = DurableStore(config.data_dir)
        self.index = NodeIndex(Path(config.data_dir) / "index.sqlite3")
        self.handlers = NodeHandlers(config, self.store, self.index)
        self.sender = OutboxSender(config, self.index)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._running: dict[str, concurrent.futures.Future[StudyOutcome]] = {}

    # -- lifecycle ---------------------------------------------------------------
    def build_ae(self) -> AE:
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = self.config.max_pdu
        ae.require_called_aet = self.config.require_called_ae_title
        ae.require_calling_aet = sorted({p.ae_title for p in self.config.allow})
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
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.config.workers, mp_context=multiprocessing.get_context("spawn")
        )
        ae = self.build_ae()
        self._server = ae.start_server(
            (self.config.bind_address, self.config.port),
            block=False,
            evt_handlers=self.handlers.bindings(),
            ssl_context=_ssl_context(self.config),
        )
        for target, name in ((self._schedule_loop, "mskus-scheduler"), (self._send_loop, "mskus-sender")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.index.audit("node_started", f"ae_title={self.config.ae_title} port={self.port}")
        logger.info("event=node_started ae_title=%s address=%s port=%d", self.config.ae_title, self.config.bind_address, self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            return self.config.port
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
        self.index.audit("node_stopped", f"ae_title={self.config.ae_title}")
        logger.info("event=node_stopped")

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then stop cleanly (finished runs are recorded)."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        self.start()
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
                self._collect_finished()
                for study_uid, run, snapshot in self.index.claim_quiet_studies(self.config.quiet_seconds):
                    self._submit(study_uid, run, snapshot)
            except Exception:  # keep scheduling whatever one study did
                logger.exception("event=scheduler_error")
        self._collect_finished(wait=True)

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
        )
        logger.info("event=study_run_start study=%s run=%d instances=%d", study_uid, run, len(job.instance_paths))
        self._running[study_uid] = self._pool.submit(process_study, job)

    def _collect_finished(self, wait: bool = False) -> None:
        for study_uid, future in list(self._running.items()):
            if not (future.done() or wait):
                continue
            del self._running[study_uid]
            try:
                outcome = future.result()
            except Exception as exc:
                logger.error("event=study_run_failed study=%s reason=%s", study_uid, exc)
                self.index.finish_study(study_uid, time.time(), error=str(exc))
                continue
            destinations = [d.label for d in self.config.destinations]
            for result in outcome.results:
                self.index.add_result(result.sop_instance_uid, study_uid, result.kind, result.path, outcome.run, destinations)
            self.index.finish_study(study_uid, outcome.snapshot, error=outcome.error)
            self.index.audit(
                "study_processed",
                f"study={study_uid} run={outcome.run} images={outcome.images} failed={outcome.failed_images} results={len(outcome.results)}",
            )
            logger.info(
                "event=study_run_done study=%s run=%d images=%d failed=%d results=%d seconds=%.2f",
                study_uid, outcome.run, outcome.images, outcome.failed_images, len(outcome.results), outcome.seconds,
            )

    def _send_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.sender.run_once()
            except Exception:
                logger.exception("event=sender_error")
