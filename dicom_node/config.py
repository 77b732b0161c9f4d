"""Storage node configuration: ``configs/node.yaml`` validated on load, command-line overrides."""

from __future__ import annotations

import ipaddress
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dicom_node.tls import ClientContext, client_context
from pipeline.errors import UsageError
from pipeline.resources import shipped_config
from pipeline.yamlfile import read_yaml_mapping

__all__ = [
    "AllowedPeer",
    "Destination",
    "DestinationTls",
    "NodeConfig",
    "SendPolicy",
    "TlsConfig",
    "check_exposure",
    "is_loopback_address",
    "load_node_config",
    "parse_allow",
    "parse_destination",
    "startup_notes",
]

DEFAULT_NODE_CONFIG = shipped_config("node.yaml")
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, at most 16


def _check_ae(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or not _AE_TITLE.match(value) or value != value.strip():
        raise UsageError(f"{where}: invalid AE title {value!r} (1-16 printable characters, no backslash, no edge spaces)")
    return value


def _check_port(value: object, where: str, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 65536:
        raise UsageError(f"{where}: invalid port {value!r}")
    return value


@dataclass(frozen=True)
class AllowedPeer:
    """A calling AE title allowed to associate, optionally only from ``host``."""

    ae_title: str
    host: str | None = None

    def matches(self, ae_title: str, host: str) -> bool:
        return ae_title == self.ae_title and (self.host is None or self.host == host)


@dataclass(frozen=True)
class DestinationTls:
    """How results are sent to a destination over TLS.

    Parameters
    ----------
    ca : Path, optional
        PEM file of the CA certificates (or the destination's own
        certificate) trusted for the destination; ``None``: the system's
        trust store.
    cert, key : Path, optional
        Client certificate chain and private key (PEM) for destinations
        that require client authentication; both or neither.
    server_name : str, optional
        The name the destination's certificate must carry (DNS name or IP
        address); ``None``: the destination's ``host``.
    """

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise UsageError("destination tls: a client certificate needs both cert and key")

    def context(self) -> ClientContext:
        """A fresh TLS context for one send (files are read now, so renewed certificates are used without a restart)."""
        return client_context(ca=self.ca, cert=self.cert, key=self.key)


@dataclass(frozen=True)
class Destination:
    """A DICOM peer that receives results by C-STORE (over TLS when ``tls`` is set)."""

    ae_title: str
    host: str
    port: int
    tls: DestinationTls | None = None

    @property
    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsConfig:
    cert: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class SendPolicy:
    """How results are sent: retries with exponential backoff, and how long one attempt may hang.

    ``connect_timeout`` bounds the TCP connect, ``acse_timeout`` the
    association negotiation and release, ``dimse_timeout`` the wait for the
    C-STORE response; a destination that accepts TCP and never answers
    costs at most their sum, and only its own queue waits (one sender
    thread per destination).
    """

    max_attempts: int = 8
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0
    connect_timeout: float = 5.0
    acse_timeout: float = 10.0
    dimse_timeout: float = 30.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts (exponential, capped)."""
        return min(self.max_backoff_seconds, self.backoff_seconds * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class NodeConfig:
    """Everything ``mskus serve`` needs; every field has a safe default."""

    ae_title: str = "MSKUS"
    bind_address: str = "127.0.0.1"
    port: int = 11112
    data_dir: Path = Path("./mskus-data")
    max_pdu: int = 0
    require_called_ae_title: bool = True
    allow: tuple[AllowedPeer, ...] = ()
    destinations: tuple[Destination, ...] = ()
    quiet_seconds: float = 10.0
    workers: int = 1
    key_images: bool = False
    send: SendPolicy = field(default_factory=SendPolicy)
    tls: TlsConfig | None = None
    #: An empty ``allow`` list on an address beyond loopback is refused unless this says it is meant.
    allow_any_peer: bool = False
    #: Simultaneous incoming associations; one more is rejected (local limit exceeded) and logged.
    max_associations: int = 64
    #: Seconds a TLS client may take for its handshake (it runs on the association's own thread).
    tls_handshake_timeout: float = 10.0
    #: Analysis runs of one study that may end in a dead worker before the study is marked failed.
    max_analysis_attempts: int = 3
    #: Port of the loopback health/metrics endpoint (Prometheus text at /metrics); ``None``: off, 0: any free port.
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        _check_ae(self.ae_title, "ae_title")
        _check_port(self.port, "port", allow_zero=True)  # 0: any free port (tests)
        if self.quiet_seconds < 0:
            raise UsageError("quiet_seconds must be >= 0")
        if self.workers < 1:
            raise UsageError("workers must be >= 1")
        if self.max_pdu < 0:
            raise UsageError("max_pdu must be >= 0")
        if self.send.max_attempts < 1 or self.send.backoff_seconds < 0:
            raise UsageError("send.max_attempts must be >= 1 and send.backoff_seconds >= 0")
        if min(self.send.connect_timeout, self.send.acse_timeout, self.send.dimse_timeout) <= 0:
            raise UsageError("send timeouts must be > 0")
        if self.max_associations < 1:
            raise UsageError("max_associations must be >= 1")
        if self.tls_handshake_timeout <= 0:
            raise UsageError("tls_handshake_timeout must be > 0")
        if self.max_analysis_attempts < 1:
            raise UsageError("max_analysis_attempts must be >= 1")
        if self.metrics_port is not None:
            _check_port(self.metrics_port, "metrics_port", allow_zero=True)

    def peer_allowed(self, ae_title: str, host: str) -> bool:
        if not self.allow:
            return True
        return any(peer.matches(ae_title, host) for peer in self.allow)


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` (an IP address or ``localhost``) is reachable from this machine only.

    A host name other than ``localhost`` counts as beyond loopback: it may
    resolve to any interface. ``0.0.0.0`` and ``::`` (every interface) are beyond it.
    """
    text = str(address).strip().strip("[]")
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def check_exposure(config: NodeConfig) -> None:
    """Refuse to accept every caller on a network address unless the configuration says it is meant.

    Raises
    ------
    UsageError
        ``bind_address`` is beyond loopback, ``allow`` is empty and
        ``allow_any_peer`` is not set.
    """
    if config.allow or config.allow_any_peer or is_loopback_address(config.bind_address):
        return
    raise UsageError(
        f"listening on {config.bind_address} with an empty allow-list would accept every calling AE on the network: "
        "list the callers (--allow AET[@HOST], or 'allow:' in the config), or pass --allow-any-peer "
        "('allow_any_peer: true') if that is meant"
    )


def startup_notes(config: NodeConfig) -> tuple[str, ...]:
    """What an operator should know about ``config`` when the node starts (empty when nothing stands out).

    An empty allow-list (every calling AE title is accepted) and no
    destination (results are only archived) are both valid settings, but
    neither should go unnoticed.
    """
    notes = []
    if not config.allow:
        where = "on loopback only" if is_loopback_address(config.bind_address) else f"on {config.bind_address}"
        notes.append(f"allow-list is empty: every calling AE title is accepted ({where}); restrict it with --allow AET[@HOST]")
    if not config.destinations:
        notes.append(
            f"no destination configured: results stay in {Path(config.data_dir) / 'archive'} only; "
            "add one with --destination AET@HOST:PORT"
        )
    return tuple(notes)


def parse_allow(text: str) -> AllowedPeer:
    """``AET`` or ``AET@HOST`` from the command line."""
    ae, _, host = text.partition("@")
    return AllowedPeer(_check_ae(ae, "--allow"), host or None)


def parse_destination(text: str) -> Destination:
    """``AET@HOST:PORT`` from the command line."""
    match = re.match(r"^(?P<ae>[^@]+)@(?P<host>[^:]+):(?P<port>\d+)$", text)
    if not match:
        raise UsageError(f"--destination {text!r}: expected AET@HOST:PORT")
    return Destination(_check_ae(match["ae"], "--destination"), match["host"], _check_port(int(match["port"]), "--destination"))


def _ssl_reason(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc).split())


def _destination_tls(value: object, where: str) -> DestinationTls | None:
    """A destination's ``tls`` mapping, checked: known keys, readable PEM files that load.

    Relative paths are taken from the working folder, as the node's other
    paths. Every problem is one line naming the config file and the
    setting (``destination N: tls.ca``).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UsageError(f"{where}: tls must be a mapping (ca, cert, key, server_name) or null, not {value!r}")
    unknown = set(value) - {"ca", "cert", "key", "server_name"}
    if unknown:
        raise UsageError(f"{where}: unknown tls setting(s) {', '.join(sorted(map(str, unknown)))} (known: ca, cert, key, server_name)")
    paths: dict[str, Path | None] = {}
    for name in ("ca", "cert", "key"):
        raw = value.get(name)
        if raw is None:
            paths[name] = None
            continue
        if not isinstance(raw, str) or not raw.strip():
            raise UsageError(f"{where}: tls.{name} must be a file path, not {raw!r}")
        path = Path(raw).expanduser()
        if not path.is_file():
            raise UsageError(f"{where}: tls.{name}: no such file {path}")
        paths[name] = path
    if (paths["cert"] is None) != (paths["key"] is None):
        raise UsageError(f"{where}: tls needs both cert and key for a client certificate (or neither)")
    server_name = value.get("server_name")
    if server_name is not None and (not isinstance(server_name, str) or not server_name.strip()):
        raise UsageError(f"{where}: tls.server_name must be a host name, not {server_name!r}")
    ca, cert, key = paths["ca"], paths["cert"], paths["key"]
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a PEM file that does not load fails here, once, not at every send
    try:
        if ca is not None:
            probe.load_verify_locations(cafile=str(ca))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise UsageError(f"{where}: tls.ca: cannot load certificates from {ca}: {_ssl_reason(exc)}") from None
    try:
        if cert is not None and key is not None:
            probe.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{where}: tls.cert / tls.key: cannot load {cert} with {key}: {_ssl_reason(exc)}") from None
    tls = DestinationTls(ca, cert, key, server_name)
    return tls


def _from_mapping(data: Mapping[str, Any], source: str) -> NodeConfig:
    known = {"version", "ae_title", "bind_address", "port", "data_dir", "max_pdu", "require_called_ae_title", "allow",
             "destinations", "quiet_seconds", "workers", "key_images", "send", "tls", "allow_any_peer",
             "max_associations", "tls_handshake_timeout", "max_analysis_attempts", "metrics_port"}
    unknown = set(data) - known
    if unknown:
        raise UsageError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")
    if data.get("version", 1) != 1:
        raise UsageError(f"{source}: unsupported version {data.get('version')!r} (expected 1)")
    kwargs: dict[str, Any] = {}
    for key in ("ae_title", "bind_address"):
        if key in data:
            kwargs[key] = str(data[key])
    for key in ("port", "max_pdu", "workers", "max_associations", "max_analysis_attempts"):
        if key in data:
            if isinstance(data[key], bool) or not isinstance(data[key], int):
                raise UsageError(f"{source}: {key} must be an integer")
            kwargs[key] = data[key]
    for key in ("quiet_seconds", "tls_handshake_timeout"):
        if key in data:
            if not isinstance(data[key], (int, float)) or isinstance(data[key], bool):
                raise UsageError(f"{source}: {key} must be a number")
            kwargs[key] = float(data[key])
    if data.get("metrics_port") is not None:
        if isinstance(data["metrics_port"], bool) or not isinstance(data["metrics_port"], int):
            raise UsageError(f"{source}: metrics_port must be an integer (or null: off)")
        kwargs["metrics_port"] = data["metrics_port"]
    for key in ("require_called_ae_title", "key_images", "allow_any_peer"):
        if key in data:
            if not isinstance(data[key], bool):
                raise UsageError(f"{source}: {key} must be true or false")
            kwargs[key] = data[key]
    if "data_dir" in data:
        kwargs["data_dir"] = Path(str(data["data_dir"]))
    allow = []
    for number, item in enumerate(data.get("allow") or [], start=1):
        if not isinstance(item, Mapping) or "ae_title" not in item:
            raise UsageError(f"{source}: allow item {number} needs ae_title (and optionally host)")
        allow.append(AllowedPeer(_check_ae(item["ae_title"], f"allow item {number}"), item.get("host")))
    kwargs["allow"] = tuple(allow)
    destinations = []
    for number, item in enumerate(data.get("destinations") or [], start=1):
        if not isinstance(item, Mapping) or not {"ae_title", "host", "port"} <= set(item):
            raise UsageError(f"{source}: destination {number} needs ae_title, host and port")
        unknown = set(item) - {"ae_title", "host", "port", "tls"}
        if unknown:
            raise UsageError(f"{source}: destination {number}: unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
        destinations.append(
            Destination(
                _check_ae(item["ae_title"], f"{source}: destination {number}"),
                str(item["host"]),
                _check_port(item["port"], f"{source}: destination {number}"),
                _destination_tls(item.get("tls"), f"{source}: destination {number}"),
            )
        )
    kwargs["destinations"] = tuple(destinations)
    send = data.get("send") or {}
    if not isinstance(send, Mapping):
        raise UsageError(f"{source}: send must be a mapping")
    defaults = SendPolicy()
    try:
        kwargs["send"] = SendPolicy(
            max_attempts=int(send.get("max_attempts", defaults.max_attempts)),
            backoff_seconds=float(send.get("backoff_seconds", defaults.backoff_seconds)),
            connect_timeout=float(send.get("connect_timeout", defaults.connect_timeout)),
            acse_timeout=float(send.get("acse_timeout", defaults.acse_timeout)),
            dimse_timeout=float(send.get("dimse_timeout", defaults.dimse_timeout)),
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{source}: send: {exc}") from None
    tls = data.get("tls")
    if tls:
        if not isinstance(tls, Mapping) or not {"cert", "key"} <= set(tls):
            raise UsageError(f"{source}: tls needs cert and key (and optionally ca)")
        kwargs["tls"] = TlsConfig(Path(tls["cert"]), Path(tls["key"]), Path(tls["ca"]) if tls.get("ca") else None)
    return NodeConfig(**kwargs)


def load_node_config(path: str | Path | None = None, **overrides: Any) -> NodeConfig:
    """Load and validate a node config; ``overrides`` (non-None values) replace fields.

    Raises
    ------
    UsageError
        Unreadable file, invalid YAML or an invalid value, in one line.
    """
    path = Path(path) if path is not None else DEFAULT_NODE_CONFIG
    data = read_yaml_mapping(path, what="config")
    config = _from_mapping(data, str(path))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return replace(config, **changes) if changes else config
