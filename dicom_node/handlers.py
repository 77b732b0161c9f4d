"""pynetdicom event handlers of the storage node.

Behaviour hangs on explicit handlers (``evt.EVT_C_STORE`` and friends).
The C-STORE handler does no analysis: it checks the header, writes the
instance durably and returns Success; the instance's index row (which
queues its study) follows on the indexer's thread (:mod:`dicom_node.indexer`). Every refusal carries a one-line Error Comment and a log
line.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import struct
import time
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import A_ASSOCIATE

from dicom_node.config import NodeConfig
from dicom_node.index import NodeIndex
from dicom_node.indexer import InstanceIndexer, StoreReceipt
from dicom_node.instance_checks import parse_completely
from dicom_node.logsafe import escape, install
from dicom_node.metrics import NodeMetrics
from dicom_node.storage import DurableStore
from pipeline.errors import MskusInputError
from pipeline.loading import validate_dataset

__all__ = ["NodeHandlers", "STATUS"]

logger = logging.getLogger("mskus.node")
install(logger.name)  # peer-supplied values (AE titles, UIDs, comments) are escaped in every line

STATUS = {
    "success": 0x0000,
    "out_of_resources": 0xA700,
    "does_not_match_sop_class": 0xA900,
    "cannot_understand": 0xC210,
}


def _status(code: int, comment: str) -> Dataset:
    status = Dataset()
    status.Status = code
    # Error Comment is LO: 64 characters at most, one line.
    status.ErrorComment = " ".join(comment.split())[:64]
    return status


def _ui(element: int, value: str) -> bytes:
    raw = value.encode("ascii")
    raw += b"\x00" * (len(raw) % 2)
    return struct.pack("<HH2sH", 0x0002, element, b"UI", len(raw)) + raw


def _part10(sop_class: str, sop_instance: str, transfer_syntax: str, request: C_STORE) -> bytes:
    """The received dataset as a DICOM file: preamble, File Meta Information, the bytes as sent.

    Byte for byte what ``event.encoded_dataset(include_meta=True)`` gives
    (pynetdicom's meta elements, implementation UID and version), without
    building and encoding a pydicom file meta dataset per instance.
    """
    version = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
    version += b" " * (len(version) % 2)
    body = b"".join((
        struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01",
        _ui(0x0002, sop_class),
        _ui(0x0003, sop_instance),
        _ui(0x0010, transfer_syntax),
        _ui(0x0012, PYNETDICOM_IMPLEMENTATION_UID),
        struct.pack("<HH2sH", 0x0002, 0x0013, b"SH", len(version)) + version,
    ))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"".join((b"\x00" * 128, b"DICM", group_length, body, cast(BytesIO, request.DataSet).getbuffer()))


def _peer(event: evt.Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return str(requestor.ae_title).strip(), str(requestor.address)


class NodeHandlers:
    """The node's handlers, bound to its config, store and index."""

    def __init__(
        self,
        config: NodeConfig,
        store: DurableStore,
        index: NodeIndex,
        metrics: NodeMetrics | None = None,
        indexer: InstanceIndexer | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.index = index
        self.metrics = metrics or NodeMetrics()
        #: Writes the rows of stored instances; one not started writes them before Success.
        self.indexer = indexer or InstanceIndexer(index, self.metrics)

    def bindings(self) -> list[evt.EventHandlerType]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_RELEASED, self.on_closed),
            (evt.EVT_ABORTED, self.on_closed),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
        ]

    # -- association -----------------------------------------------------------
    def on_requested(self, event: evt.Event) -> None:
        """Refuse a wrong called AE title, callers not on the allow-list and associations over the limit.

        Each rejection is one log line and one audit row naming the calling
        and called AE titles, the peer's address and the reason.
        """
        primitive = cast(A_ASSOCIATE, event.assoc.requestor.primitive)  # set before EVT_REQUESTED
        calling = str(primitive.calling_ae_title).strip()
        called = str(primitive.called_ae_title).strip()
        host = str(event.assoc.requestor.address)
        port = event.assoc.requestor.port
        reason = ""
        rsd: tuple[int, ...] = ()
        if self.config.require_called_ae_title and called != self.config.ae_title:
            reason, rsd = f"called AE title is not {self.config.ae_title}", (0x01, 0x01, 0x07)
        elif not self.config.peer_allowed(calling, host):
            reason, rsd = "calling AE title / host not on the allow-list", (0x01, 0x01, 0x03)
        else:
            active = [a for a in event.assoc.ae.active_associations if a.is_acceptor]
            if len(active) > self.config.max_associations:
                reason = f"association limit reached ({self.config.max_associations} simultaneous)"
                rsd = (0x02, 0x03, 0x02)  # transient, presentation related: local limit exceeded
        if not reason:
            return
        self._log_rejection(calling, called, host, port, reason)
        event.assoc.acse.send_reject(*rsd)
        event.assoc.kill()  # as pynetdicom does after its own rejections: lets the PDU go out first

    def on_rejected(self, event: evt.Event) -> None:
        """A rejection pynetdicom made itself (after :meth:`on_requested`): logged the same way."""
        primitive = event.assoc.requestor.primitive
        calling = str(getattr(primitive, "calling_ae_title", "") or "").strip()
        called = str(getattr(primitive, "called_ae_title", "") or "").strip()
        self._log_rejection(calling, called, str(event.assoc.requestor.address), event.assoc.requestor.port,
                            "rejected during negotiation")

    def _log_rejection(self, calling: str, called: str, host: str, port: int, reason: str) -> None:
        logger.warning(
            "event=association_rejected calling_ae=%s called_ae=%s host=%s port=%s reason=%s",
            calling, called, host, port, reason,
        )
        self.index.audit(
            "association_rejected",
            f"calling_ae={escape(calling)} called_ae={escape(called)} host={escape(host)} reason={reason}",
        )
        self.metrics.inc("mskus_associations_total", result="rejected", reason=reason.split(" (")[0])

    def on_established(self, event: evt.Event) -> None:
        sock = getattr(event.assoc.dul.socket, "socket", None)
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        calling, host = _peer(event)
        self.metrics.inc("mskus_associations_total", result="accepted", reason="")
        logger.info("event=association_open calling_ae=%s host=%s", calling, host)

    def on_closed(self, event: evt.Event) -> None:
        calling, host = _peer(event)
        logger.info("event=association_closed calling_ae=%s host=%s how=%s", calling, host, event.event.name)

    # -- services ---------------------------------------------------------------
    def on_echo(self, event: evt.Event) -> int:
        calling, host = _peer(event)
        logger.info("event=echo calling_ae=%s host=%s", calling, host)
        return STATUS["success"]

    def on_store(self, event: evt.Event) -> int | Dataset:
        """Check and durably store one instance; Success only once its file and folder are fsync'd.

        The dataset is parsed and checked before anything is written, so a
        refused instance costs no disk work. The index row is handed to
        :attr:`indexer` once the file is in the inbox.
        """
        request = cast(C_STORE, event.request)
        try:
            data = _part10(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                           str(event.context.transfer_syntax), request)
        except (UnicodeEncodeError, struct.error):  # a UID pynetdicom's own encoder copes with differently
            data = event.encoded_dataset(include_meta=True)
        return self._store(event, data)

    def _store(self, event: evt.Event, data: bytes) -> int | Dataset:
        calling, host = _peer(event)
        started = time.perf_counter()
        requested_sop = str(cast(C_STORE, event.request).AffectedSOPInstanceUID)
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            parse_completely(ds)
            sop_uid = str(ds.SOPInstanceUID)
            study_uid = str(ds.StudyInstanceUID)
            series_uid = str(ds.get("SeriesInstanceUID", ""))
            sop_class = str(ds.SOPClassUID)
        except Exception as exc:  # malformed bytes from the network: answer, keep serving
            reason = f"cannot decode dataset: {exc}"
            logger.warning("event=store_refused calling_ae=%s sop=%s status=0xC210 reason=%s", calling, requested_sop, reason)
            self.index.audit("store_refused", f"calling_ae={escape(calling)} sop={escape(requested_sop)} reason={escape(reason)}")
            self.metrics.inc("mskus_instances_refused_total", reason="cannot_understand")
            return _status(STATUS["cannot_understand"], reason)
        problem, code = "", "does_not_match_sop_class"
        if sop_uid != requested_sop:
            problem = "SOP Instance UID differs from the C-STORE request"
        elif sop_class != str(event.request.AffectedSOPClassUID):
            problem = "SOP Class UID differs from the C-STORE request"
        else:
            try:
                validate_dataset(ds)
            except MskusInputError as exc:
                problem, code = str(exc), exc.code
        if problem:
            logger.warning("event=store_refused calling_ae=%s sop=%s status=0xA900 reason=%s", calling, sop_uid, problem)
            self.index.audit("store_refused", f"calling_ae={escape(calling)} sop={escape(sop_uid)} reason={escape(problem)}")
            self.metrics.inc("mskus_instances_refused_total", reason=code)
            return _status(STATUS["does_not_match_sop_class"], problem)
        try:
            existing = self.index.instance(sop_uid)
        except Exception:  # the lookup only spares a second write of the same bytes: store them anyway
            existing = None
        digest: str | None = None  # hashed on the indexer's thread unless needed now
        if existing is not None:
            digest = hashlib.sha256(data).hexdigest()
            if existing.sha256 == digest:
                logger.info("event=store_duplicate calling_ae=%s sop=%s study=%s", calling, sop_uid, study_uid)
                return STATUS["success"]
        try:
            path = self.store.store_instance(study_uid, sop_uid, data)  # fsync'd file and folder
        except OSError as exc:
            reason = f"storage unavailable: {exc.strerror or exc}"
            logger.error("event=store_failed calling_ae=%s sop=%s status=0xA700 reason=%s", calling, sop_uid, reason)
            self.metrics.inc("mskus_instances_refused_total", reason="out_of_resources")
            return _status(STATUS["out_of_resources"], reason)
        # The file is durable: the index row follows on the indexer's thread, off the sender's path
        # (after a crash the node indexes the inbox file again: StorageNode.reconcile_inbox).
        self.indexer.submit(StoreReceipt(
            sop_uid, sop_class, study_uid, series_uid, str(path), data, calling, host, time.time(),
            (time.perf_counter() - started) * 1000,
            audit=("instance_received",
                   f"calling_ae={escape(calling)} host={host} sop={escape(sop_uid)} study={escape(study_uid)}"),
            sha256=digest,
        ))
        self.metrics.inc("mskus_instances_stored_total")
        return STATUS["success"]
