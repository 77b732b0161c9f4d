"""Issue 17: results go to destinations over TLS (verified certificate, optional client certificate).

The peer is DCMTK ``storescp +tls`` on 127.0.0.1, which requires a client
certificate by default; the certificates are made at run time with the
``openssl`` command into the test's temporary folder.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from dicom_node.config import load_node_config
from dicom_node.index import OutboxState
from dicom_node.server import StorageNode
from pipeline.errors import UsageError
from tests.conftest import SAMPLE_DATA, require_tool
from tests.test_node import free_port, storescu, wait_for


@dataclass(frozen=True)
class Pki:
    """A throwaway CA, a server certificate for 127.0.0.1 / localhost and a client certificate it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting it must fail


def _openssl(*args: str, cwd: Path) -> None:
    openssl = require_tool("openssl", "openssl")
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", key.name, "-out", cert.name, cwd=folder)
    return cert, key


def _leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (folder / f"{name}.{s}" for s in ("crt", "key", "csr", "ext"))
    ext.write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key.name, "-out", csr.name, cwd=folder)
    _openssl("x509", "-req", "-in", csr.name, "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial", "0x" + name.encode().hex(),
             "-days", "1", "-extfile", ext.name, "-out", cert.name, cwd=folder)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = _ca(folder, "mskus-test-ca")
    server = _leaf(folder, "pacs", ca, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client = _leaf(folder, "mskus-node", ca, "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=clientAuth\n")
    other_ca, _ = _ca(folder, "some-other-ca")
    return Pki(ca[0], server[0], server[1], client[0], client[1], other_ca)


@dataclass(frozen=True)
class TlsRun:
    """One node run sending to a TLS storescp through a well-configured and a wrong-CA destination."""

    received: Path
    outbox: dict[str, tuple[OutboxState, int, str]]  # destination -> (state, attempts, last error) after the first failure
    dead: tuple[OutboxState, int, str]  # the wrong-CA item once its attempts are spent
    log: list[str]
    good: str
    bad: str


@pytest.fixture(scope="module")
def tls_run(pki: Pki, tmp_path_factory) -> TlsRun:
    folder = tmp_path_factory.mktemp("tls-run")
    storescp = require_tool("storescp", "dcmtk")
    port = free_port()
    received = folder / "pacs"
    received.mkdir()
    scp = subprocess.Popen(
        [storescp, "-aet", "TLSPACS", "-od", str(received), "+tls", str(pki.server_key), str(pki.server_cert),
         "+cf", str(pki.ca), str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    config_file = folder / "node.yaml"
    config_file.write_text(
        "version: 1\n"
        "quiet_seconds: 0.5\n"
        "send: {max_attempts: 2, backoff_seconds: 3}\n"
        "destinations:\n"
        f"  - {{ae_title: TLSPACS, host: 127.0.0.1, port: {port},\n"
        f"     tls: {{ca: '{pki.ca}', cert: '{pki.client_cert}', key: '{pki.client_key}'}}}}\n"
        f"  - {{ae_title: WRONGCA, host: 127.0.0.1, port: {port},\n"
        f"     tls: {{ca: '{pki.other_ca}', cert: '{pki.client_cert}', key: '{pki.client_key}'}}}}\n"
    )
    config = load_node_config(config_file, port=0, data_dir=folder / "node")
    good, bad = (d.label for d in config.destinations)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("mskus.node.send")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    node = StorageNode(config, poll_seconds=0.1)
    node.start()
    try:
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
        first_failure = wait_for(
            lambda: [o for o in node.index.outbox() if o.destination == bad and o.attempts >= 1], timeout=120, interval=0.05
        )[0]
        wait_for(lambda: all(o.state is OutboxState.SENT for o in node.index.outbox() if o.destination == good), timeout=60)
        outbox = {o.destination: (o.state, o.attempts, o.last_error) for o in node.index.outbox()}
        outbox[bad] = (first_failure.state, first_failure.attempts, first_failure.last_error)
        dead = wait_for(lambda: [o for o in node.index.outbox() if o.destination == bad and o.state is OutboxState.DEAD],
                        timeout=30)[0]
    finally:
        node.stop()
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        scp.terminate()
        scp.wait(timeout=10)
    return TlsRun(received, outbox, (dead.state, dead.attempts, dead.last_error), records, good, bad)


def test_results_reach_a_tls_storescp_that_requires_a_client_certificate(tls_run: TlsRun) -> None:
    state, attempts, error = tls_run.outbox[tls_run.good]
    assert (state, attempts, error) == (OutboxState.SENT, 1, "")
    stored = [pydicom.dcmread(p) for p in tls_run.received.rglob("*") if p.is_file()]
    assert [str(ds.Modality) for ds in stored] == ["SR"]
    assert stored[0].StudyInstanceUID == pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm", stop_before_pixels=True).StudyInstanceUID


def test_a_destination_with_the_wrong_ca_is_logged_with_the_reason_and_kept(tls_run: TlsRun) -> None:
    state, attempts, error = tls_run.outbox[tls_run.bad]
    assert (state, attempts) == (OutboxState.PENDING, 1)  # retried later, not dropped
    assert error.startswith("TLS handshake failed: destination certificate not trusted (")
    assert "tls.ca" in error
    lines = [line for line in tls_run.log if "event=send" in line and f"destination={tls_run.bad}" in line]
    assert "status=retry" in lines[0] and "reason=TLS handshake failed: destination certificate not trusted" in lines[0]
    # Attempts spent: dead-lettered with the reason, still in the outbox for mskus retry.
    assert tls_run.dead[:2] == (OutboxState.DEAD, 2) and tls_run.dead[2] == error


def _config_with(tmp_path: Path, tls: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(f"version: 1\ndestinations:\n  - {{ae_title: PACS, host: 127.0.0.1, port: 2762, tls: {tls}}}\n")
    return path


def test_destination_tls_settings_are_checked_with_one_line_naming_key_and_file(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = {
        "{ca: '%s', verify: false}" % pki.ca: r"destination 1: unknown tls setting\(s\) verify",
        "{ca: '%s'}" % (tmp_path / "missing.crt"): r"destination 1: tls.ca: no such file .*missing.crt",
        "{cert: '%s'}" % pki.client_cert: r"destination 1: tls needs both cert and key",
        "{ca: '%s'}" % garbage: r"destination 1: tls.ca: cannot load certificates from .*garbage.pem",
        "{cert: '%s', key: '%s'}" % (pki.client_cert, pki.server_key): r"destination 1: tls.cert / tls.key: cannot load",
        "yes": r"destination 1: tls must be a mapping",
    }
    for tls, message in cases.items():
        path = _config_with(tmp_path, tls)
        with pytest.raises(UsageError, match=message) as caught:
            load_node_config(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value), tls
    extra = tmp_path / "extra.yaml"
    extra.write_text("version: 1\ndestinations:\n  - {ae_title: PACS, host: 127.0.0.1, port: 2762, tsl: {}}\n")
    with pytest.raises(UsageError, match=r"extra.yaml: destination 1: unknown setting\(s\) tsl"):
        load_node_config(extra)
    config = load_node_config(_config_with(tmp_path, "{ca: '%s', server_name: localhost}" % pki.ca))
    tls = config.destinations[0].tls
    assert tls is not None and tls.ca == pki.ca and tls.server_name == "localhost" and tls.cert is None
