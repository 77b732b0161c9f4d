"""The node's counters and its loopback health / metrics endpoint (Prometheus text format).

:class:`NodeMetrics` counts events as they happen (associations, stored and
refused instances, TLS handshake failures, worker restarts, sends); gauges
(studies and outbox items by state, queue age) are read from the index at
scrape time, so a restarted node reports the true backlog at once.
:class:`MetricsServer` serves ``/metrics`` and ``/healthz`` on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["MetricsServer", "NodeMetrics", "index_gauges"]

logger = logging.getLogger("mskus.node")


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class NodeMetrics:
    """Thread-safe event counters of one running node."""

    #: name -> (type, help) of every metric :meth:`render` writes.
    HELP = {
        "mskus_associations_total": ("counter", "Incoming associations by result (accepted, rejected) and reason."),
        "mskus_tls_handshake_failures_total": ("counter", "Incoming TLS connections whose handshake failed or timed out."),
        "mskus_instances_stored_total": ("counter", "Instances acknowledged with Success (file durable in the inbox)."),
        "mskus_index_failures_total": ("counter", "Stored instances whose index row could not be written (indexed again at the next start)."),
        "mskus_instances_refused_total": ("counter", "C-STORE requests answered with an error status, by reason."),
        "mskus_images_refused_total": ("counter", "Stored instances the analysis refused (each named in its study's SR)."),
        "mskus_worker_restarts_total": ("counter", "Times the analysis worker pool was rebuilt after a worker died."),
        "mskus_sends_total": ("counter", "Send attempts by destination and result (sent, retry, dead)."),
        "mskus_studies": ("gauge", "Studies in the index by state."),
        "mskus_outbox_items": ("gauge", "Outbox items by state (pending, sent, dead)."),
        "mskus_queue_age_seconds": ("gauge", "Seconds since the oldest study waiting for analysis got its last instance."),
        "mskus_index_rows_pending": ("gauge", "Stored instances whose index row is not yet written."),
        "mskus_up": ("gauge", "1 while the node's threads are running."),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name`` with ``labels``."""
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        with self._lock:
            self._counters[key] += amount

    def value(self, name: str, **labels: str) -> int:
        """The counter's current value (0 when never incremented)."""
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        with self._lock:
            return self._counters[key]

    def total(self, name: str) -> int:
        """The counter summed over all its labels."""
        with self._lock:
            return sum(v for (n, _), v in self._counters.items() if n == name)

    def render(self, gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] | None = None) -> str:
        """Prometheus text exposition (version 0.0.4) of the counters and ``gauges``."""
        with self._lock:
            samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = dict(self._counters)
        samples.update(gauges or {})
        lines = []
        for name, (kind, text) in self.HELP.items():
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            rows = sorted((labels, value) for (n, labels), value in samples.items() if n == name)
            if not rows and kind == "counter":
                rows = [((), 0)]
            for labels, value in rows:
                shown = "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels) + "}" if labels else ""
                lines.append(f"{name}{shown} {float(value):g}")
        return "\n".join(lines) + "\n"


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` on 127.0.0.1, in a daemon thread.

    Parameters
    ----------
    port : int
        TCP port; 0 picks a free one (see :attr:`port`).
    render : callable
        Returns the metrics text.
    healthy : callable
        Returns ``(ok, detail)`` for ``/healthz`` (200 or 503).
    """

    def __init__(self, port: int, render: Callable[[], str], healthy: Callable[[], tuple[bool, str]]) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] == "/metrics":
                    status, body, kind = 200, outer.render().encode(), "text/plain; version=0.0.4; charset=utf-8"
                elif self.path.split("?")[0] == "/healthz":
                    ok, detail = outer.healthy()
                    status, body, kind = (200 if ok else 503), (detail + "\n").encode(), "text/plain; charset=utf-8"
                else:
                    status, body, kind = 404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's signature
                logger.debug("metrics request: " + format, *args)

        self.render = render
        self.healthy = healthy
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="mskus-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def index_gauges(index, now: float | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Gauges read from the node's index: studies and outbox items by state, queue age."""
    now = time.time() if now is None else now
    counts = index.counts()
    gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for state, n in counts["studies"].items():
        gauges[("mskus_studies", (("state", state),))] = n
    for state, n in counts["outbox"].items():
        gauges[("mskus_outbox_items", (("state", state),))] = n
    oldest = index.oldest_pending_received_at()
    gauges[("mskus_queue_age_seconds", ())] = max(0.0, now - oldest) if oldest is not None else 0.0
    return gauges
