"""Send archived results to the configured destinations by C-STORE.

The outbox lives in the index, so unsent results survive restarts. Each
item is tried on its own, so one destination that is down never blocks the
others; failures back off exponentially and end in a dead-letter state
after ``max_attempts`` (``mskus retry`` revives them).
"""

from __future__ import annotations

import logging
import time

import pydicom
from pynetdicom import AE

from dicom_node.config import Destination, NodeConfig
from dicom_node.index import NodeIndex, OutboxItem

__all__ = ["OutboxSender", "send_file"]

logger = logging.getLogger("mskus.node.send")


def send_file(path: str, destination: Destination, *, calling_ae: str, timeout: float = 10.0) -> tuple[bool, str]:
    """C-STORE one file; returns (delivered, reason)."""
    ds = pydicom.dcmread(path)
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    ae.add_requested_context(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        return False, "association rejected" if assoc.is_rejected else "no association (peer down?)"
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    if not status or "Status" not in status:
        return False, "no C-STORE response"
    code = int(status.Status)
    if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
        return True, ""
    return False, f"C-STORE status 0x{code:04X} {status.get('ErrorComment', '')}".strip()


class OutboxSender:
    """Works through due outbox items; call :meth:`run_once` periodically."""

    def __init__(self, config: NodeConfig, index: NodeIndex) -> None:
        self.config = config
        self.index = index
        self._destinations = {d.label: d for d in config.destinations}

    def run_once(self, *, now: float | None = None) -> int:
        """Try every due item once; returns how many were delivered."""
        delivered = 0
        for item in self.index.due_outbox(now=now):
            delivered += self._send(item)
        return delivered

    def _send(self, item: OutboxItem) -> int:
        destination = self._destinations.get(item.destination)
        if destination is None:
            # Destination removed from the config: keep the item, dead-lettered with a reason.
            self.index.mark_failed(item.id, "destination no longer configured", time.time(), dead=True)
            return 0
        try:
            ok, reason = send_file(item.path, destination, calling_ae=self.config.ae_title)
        except Exception as exc:  # unreadable archive file, socket errors
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        attempts = item.attempts + 1
        if ok:
            self.index.mark_sent(item.id)
            self.index.audit("result_sent", f"result={item.result_uid} destination={item.destination} attempts={attempts}")
            logger.info("event=send result=%s destination=%s attempts=%d status=sent", item.result_uid, item.destination, attempts)
            return 1
        dead = attempts >= self.config.send.max_attempts
        next_at = time.time() + self.config.send.delay(attempts)
        self.index.mark_failed(item.id, reason, next_at, dead)
        logger.warning(
            "event=send result=%s destination=%s attempts=%d status=%s reason=%s",
            item.result_uid, item.destination, attempts, "dead" if dead else "retry", reason,
        )
        return 0
