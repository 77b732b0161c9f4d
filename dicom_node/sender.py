"""Send archived results to the configured destinations by C-STORE.

The outbox lives in the index, so unsent results survive restarts. Each
item is tried on its own and every destination has its own sender thread
(:class:`~dicom_node.server.StorageNode`), with bounded connect, ACSE and
DIMSE timeouts, so a destination that is down or hung delays only itself;
failures back off exponentially and end in a dead-letter state
after ``max_attempts`` (``mskus retry`` revives them).

A destination with ``tls`` is sent to over TLS (its certificate verified
against its ``ca`` and its name checked; a client certificate when
configured). A failed handshake is a failed attempt like any other: the
item stays pending (then dead-lettered, never dropped) and its
``last_error`` says why, e.g. "TLS handshake failed: destination
certificate not trusted (...)".
"""

from __future__ import annotations

import logging
import ssl
import threading
import time

import pydicom
from pynetdicom import AE

from dicom_node.config import Destination, NodeConfig, SendPolicy
from dicom_node.index import NodeIndex, OutboxItem
from dicom_node.logsafe import install
from dicom_node.metrics import NodeMetrics
from dicom_node.tls import ClientContext

__all__ = ["OutboxSender", "send_file"]

logger = logging.getLogger("mskus.node.send")
install(logger.name)


def _no_tls_traceback(record: logging.LogRecord) -> bool:
    """Drop pynetdicom's traceback of a failed TLS handshake (its message stays; the send line says why)."""
    if record.exc_info and isinstance(record.exc_info[1], ssl.SSLError):
        record.exc_info = None
        record.exc_text = None
    return True


logging.getLogger("pynetdicom.transport").addFilter(_no_tls_traceback)


def send_file(
    path: str,
    destination: Destination,
    *,
    calling_ae: str,
    policy: SendPolicy | None = None,
) -> tuple[bool, str]:
    """C-STORE one file; returns (delivered, reason).

    ``policy`` bounds each phase (TCP connect, association, C-STORE
    response), so a destination that accepts TCP and never answers costs
    one attempt at most their sum. With ``destination.tls`` the
    association runs over TLS; a failed handshake returns its reason
    (:func:`~dicom_node.tls.describe_tls_error`).
    """
    policy = policy or SendPolicy()
    ds = pydicom.dcmread(path)
    tls_args: tuple[ssl.SSLContext, str] | None = None
    context: ClientContext | None = None
    if destination.tls is not None:
        context = destination.tls.context()
        tls_args = (context, destination.tls.server_name or destination.host)
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = policy.connect_timeout
    ae.acse_timeout = policy.acse_timeout
    ae.dimse_timeout = policy.dimse_timeout
    ae.network_timeout = policy.dimse_timeout
    ae.add_requested_context(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        if assoc.is_rejected:
            return False, "association rejected"
        if context is not None and context.last_failure:
            return False, context.last_failure
        return False, "no association (peer down or not answering)"
    try:
        status = assoc.send_c_store(ds)
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()
    if not status or "Status" not in status:
        return False, "no C-STORE response (timed out or aborted)"
    code = int(status.Status)
    if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
        return True, ""
    return False, f"C-STORE status 0x{code:04X} {status.get('ErrorComment', '')}".strip()


class OutboxSender:
    """Works through due outbox items; call :meth:`run_once` periodically."""

    def __init__(self, config: NodeConfig, index: NodeIndex, metrics: NodeMetrics | None = None) -> None:
        self.config = config
        self.index = index
        self.metrics = metrics or NodeMetrics()
        self._destinations = {d.label: d for d in config.destinations}

    def run_once(self, *, now: float | None = None, destination: str | None = None, stop: threading.Event | None = None) -> int:
        """Try every due item once (of one ``destination``, or of all); returns how many were delivered.

        ``stop`` ends the pass early (node shutting down).
        """
        delivered = 0
        for item in self.index.due_outbox(now=now, destination=destination):
            if stop is not None and stop.is_set():
                break
            delivered += self._send(item)
        return delivered

    def run_unconfigured(self, *, now: float | None = None) -> int:
        """Dead-letter the due items of destinations no longer configured; returns how many."""
        items = self.index.due_outbox(now=now, exclude=tuple(self._destinations))
        for item in items:
            self._send(item)
        return len(items)

    def _send(self, item: OutboxItem) -> int:
        destination = self._destinations.get(item.destination)
        if destination is None:
            # Destination removed from the config: keep the item, dead-lettered with a reason.
            self.index.mark_failed(item.id, "destination no longer configured", time.time(), dead=True)
            return 0
        try:
            ok, reason = send_file(item.path, destination, calling_ae=self.config.ae_title, policy=self.config.send)
        except Exception as exc:  # unreadable archive file, socket errors
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        attempts = item.attempts + 1
        if ok:
            self.index.mark_sent(item.id)
            self.index.audit("result_sent", f"result={item.result_uid} destination={item.destination} attempts={attempts}")
            logger.info("event=send result=%s destination=%s attempts=%d status=sent", item.result_uid, item.destination, attempts)
            self.metrics.inc("mskus_sends_total", destination=item.destination, result="sent")
            return 1
        dead = attempts >= self.config.send.max_attempts
        next_at = time.time() + self.config.send.delay(attempts)
        self.index.mark_failed(item.id, reason, next_at, dead)
        self.metrics.inc("mskus_sends_total", destination=item.destination, result="dead" if dead else "retry")
        logger.warning(
            "event=send result=%s destination=%s attempts=%d status=%s reason=%s",
            item.result_uid, item.destination, attempts, "dead" if dead else "retry", reason,
        )
        return 0
