"""Serving the review app: loopback by default, beyond loopback only with a login."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

__all__ = ["LOOPBACK_NAMES", "is_loopback", "make_review_server", "serve_until_stopped"]

logger = logging.getLogger(__name__)

#: Host names accepted in the Host header when bound to loopback.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address or ``localhost``) is on this machine only."""
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def make_review_server(app: Flask, host: str, port: int) -> BaseWSGIServer:
    """A threaded WSGI server bound to ``host:port`` (port 0: any free port).

    Raises
    ------
    OSError
        The address cannot be bound.
    """
    return make_server(host, port, app, threaded=True)


def serve_until_stopped(server: BaseWSGIServer) -> None:
    """Serve until Ctrl-C or SIGTERM, then close the socket."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("review server interrupted")
    finally:
        server.server_close()
