"""TLS for the node's outgoing associations (results sent to destinations).

:func:`client_context` builds the context a destination's sends use: the
destination's certificate is verified against ``ca`` (or the system's
trust store) and its name checked, TLS 1.2 at least (BCP 195); an optional
client certificate is presented to destinations that require one.

pynetdicom reports a failed handshake only as "unable to connect", so the
context is a :class:`ClientContext`, whose sockets remember why their
connect or handshake failed (:attr:`ClientContext.last_failure`): the
sender logs and records that reason with the pending item.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer  # the socket address type of typeshed

__all__ = ["ClientContext", "client_context", "describe_tls_error"]


def describe_tls_error(exc: BaseException) -> str:
    """One line saying why a TLS handshake failed, in words an operator can act on.

    Parameters
    ----------
    exc : BaseException
        What the handshake raised.

    Returns
    -------
    str
        E.g. ``"TLS handshake failed: destination certificate not trusted
        (unable to get local issuer certificate); check the destination's tls.ca"``.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = str(exc.verify_message or exc.reason or exc).strip().rstrip(".")
        if "hostname mismatch" in detail.lower() or "ip address mismatch" in detail.lower():
            hint = "check the destination's host or tls.server_name"
        else:
            hint = "check the destination's tls.ca"
        return f"TLS handshake failed: destination certificate not trusted ({detail}); {hint}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "TLS handshake failed: timed out (is the destination's port TLS?)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"TLS handshake failed: {type(exc).__name__}: {exc}"


class _RecordingSocket(ssl.SSLSocket):
    """An :class:`ssl.SSLSocket` that tells its :class:`ClientContext` why connect or handshake failed."""

    def _record(self, reason: str) -> None:
        context = self.context
        if isinstance(context, ClientContext) and not context.last_failure:
            context.last_failure = reason

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except OSError as exc:
            self._record(describe_tls_error(exc))
            raise

    def connect(self, addr: tuple[Any, ...] | str | Buffer) -> None:
        try:
            super().connect(addr)
        except OSError as exc:
            self._record(f"connect failed: {type(exc).__name__}: {exc}")
            raise


class ClientContext(ssl.SSLContext):
    """A client :class:`ssl.SSLContext` whose sockets record the reason of a failed connect or handshake.

    Use one context per attempt: :attr:`last_failure` holds the first
    failure of any socket made from it (empty while none failed).
    """

    sslsocket_class = _RecordingSocket
    last_failure: str = ""


def client_context(
    *,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> ClientContext:
    """The TLS context of a send to one destination.

    Parameters
    ----------
    ca : Path, optional
        PEM file of the certificate authorities (or the destination's own
        certificate) trusted for the destination; ``None``: the system's
        trust store.
    cert, key : Path, optional
        Client certificate chain and its private key (PEM), for
        destinations that require client authentication. Both or neither.

    Returns
    -------
    ClientContext
        Verifies the destination's certificate and name, TLS 1.2 or later.

    Raises
    ------
    OSError, ssl.SSLError
        A file cannot be read or holds no usable certificate / key.
    ValueError
        Only one of ``cert`` and ``key`` is given.
    """
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both cert and key")
    context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED are its defaults
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        context.load_verify_locations(cafile=str(ca))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if cert is not None and key is not None:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    return context
