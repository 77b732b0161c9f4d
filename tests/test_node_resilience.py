"""Issue 17: the node survives bad instances and dead workers, never stalls, and says what it does.

Every test uses real peers on 127.0.0.1: DCMTK storescu/storescp, pynetdicom SCUs,
raw sockets, the node's SQLite file and real ``kill -9``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from dicom_node.config import Destination, NodeConfig, SendPolicy, TlsConfig
from dicom_node.index import NodeIndex, OutboxState, StudyState
from dicom_node.logsafe import escape
from dicom_node.processing import StudyJob, process_study
from dicom_node.server import StorageNode
from tests.conftest import REPO, SAMPLE_DATA, require_tool
from tests.test_node import _port_open, free_port, processed, running_node, storescu, wait_for

VERIFICATION = "1.2.840.10008.1.1"


# -- fixtures ----------------------------------------------------------------------
def _copy(source: Path, target: Path, *, study_uid: str | None = None, mutate=None) -> Path:
    """A copy of ``source`` with a new SOP Instance UID (and study), optionally mutated."""
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    if mutate is not None:
        mutate(ds)
    ds.save_as(target, enforce_file_format=True)
    return target


def _list_valued_delta(ds) -> None:
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX = [0.01, 0.02]  # VM 2 where the standard says 1


def _region_outside_frame(ds) -> None:
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMinX0, region.RegionLocationMaxX1 = ds.Columns + 10, ds.Columns + 50


def _patch_vr(path: Path, tag_bytes: bytes, vr: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    at = raw.find(tag_bytes)
    assert at > 0
    raw[at + 4 : at + 6] = vr
    path.write_bytes(bytes(raw))
    return path


def _crashers(folder: Path) -> dict[str, Path]:
    """One file per crash type of the fault-injection campaign (all crashed the loader before)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = SAMPLE_DATA / "01_nerve_mono.dcm"
    return {
        "list_delta": _copy(good, folder / "list_delta.dcm", mutate=_list_valued_delta),
        "outside_box": _copy(good, folder / "outside_box.dcm", mutate=_region_outside_frame),
        # Series Description with the unknown VR "ZZ" (NotImplementedError in pydicom)
        "unknown_vr": _patch_vr(_copy(good, folder / "unknown_vr.dcm"), b"\x08\x00\x3e\x10", b"ZZ"),
        # Region Spatial Format (US, 2 bytes) read as UL: BytesLengthException
        "odd_length": _patch_vr(_copy(good, folder / "odd_length.dcm"), b"\x18\x00\x12\x60", b"UL"),
    }


def _referenced_sops(sr) -> set[str]:
    found = set()
    for item in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in item.ReferencedSeriesSequence:
            for ref in series.ReferencedSOPSequence:
                found.add(str(ref.ReferencedSOPInstanceUID))
    return found


def _self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = require_tool("openssl", "openssl")
    cert, key = folder / "node.crt", folder / "node.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


# -- (1) one bad instance never costs the study -------------------------------------
def test_each_former_crash_type_is_a_typed_refusal(tmp_path):
    from tests.analysis_helpers import analyze_file

    for name, path in _crashers(tmp_path).items():
        result = analyze_file(path)
        assert result.failed, name
        assert result.error_code in {"calibration", "malformed"}, (name, result.error_code, result.error)
        assert "\n" not in result.error


def test_analyze_goes_on_after_bad_files_without_traceback(tmp_path):
    folder = tmp_path / "in"
    crashers = _crashers(folder)
    _copy(SAMPLE_DATA / "04_muscle_mono.dcm", folder / "zz_good.dcm")
    run = subprocess.run(
        [sys.executable, "-m", "mskus", "analyze", str(folder), "--json"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 1  # refusals: non-zero, but every file was looked at
    assert "Traceback" not in run.stderr
    import json

    rows = json.loads(run.stdout)
    errors = {Path(r["source_file"]).name: r["reason"] for r in rows if r["status"] == "error"}
    assert set(errors) == {p.name for p in crashers.values()}
    assert all(reason and "\n" not in reason for reason in errors.values())
    assert any(r["status"] == "measured" and r["source_file"].endswith("zz_good.dcm") for r in rows)


def test_two_good_and_one_crasher_give_a_partial_sr_with_both_good_images(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    study = pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm", stop_before_pixels=True).StudyInstanceUID
    files = [SAMPLE_DATA / "04_muscle_mono.dcm", SAMPLE_DATA / "05_muscle_bone.dcm"]  # one study
    bad = _copy(SAMPLE_DATA / "04_muscle_mono.dcm", tmp_path / "bad.dcm", study_uid=study, mutate=_list_valued_delta)
    with running_node(tmp_path) as node:
        assert storescu(node.port, *files, bad).returncode == 0  # the bad one passes the C-STORE checks
        (row,) = wait_for(lambda: processed(node))
    assert row.state is StudyState.PROCESSED and row.instances == 3
    (sr_path,) = (tmp_path / "node" / "archive").rglob("*.dcm")
    sr = pydicom.dcmread(sr_path)
    assert sr.CompletionFlag == "PARTIAL"
    good = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert good <= _referenced_sops(sr)
    refused = [r.getMessage() for r in caplog.records if "event=study_run_done" in r.getMessage()]
    assert refused and "images=3 failed=1" in refused[-1]


def test_an_unexpected_exception_in_one_image_is_a_refusal_of_that_image(tmp_path, monkeypatch):
    """Any exception (not only the known four) while analysing one instance: the others are reported."""
    from pipeline.settings import Analyzer, load_analysis_settings

    data = tmp_path / "node"
    study = generate_uid()
    paths = [str(_copy(SAMPLE_DATA / name, tmp_path / name, study_uid=study)) for name in ("04_muscle_mono.dcm", "05_muscle_bone.dcm")]
    real = Analyzer.analyze

    def flaky(self, image, **kwargs):
        if image.source.endswith("05_muscle_bone.dcm"):
            raise RuntimeError("decoder bug")
        return real(self, image, **kwargs)

    monkeypatch.setattr(Analyzer, "analyze", flaky)
    job = StudyJob(str(data), study, 1, tuple(paths), None, False, time.time(), load_analysis_settings())
    outcome = process_study(job)
    assert outcome.failed_images == 1 and len(outcome.results) == 1
    sr = pydicom.dcmread(outcome.results[0].path)
    assert sr.CompletionFlag == "PARTIAL"
    texts = [str(el.value) for el in sr.iterall() if el.keyword == "TextValue"]
    assert any("internal error while analysing: RuntimeError: decoder bug" in t for t in texts)


def test_fuzzed_sample_files_are_analysed_or_refused_with_a_typed_reason(tmp_path):
    """Seeded mutations of the sample files: no exception escapes, none is an 'internal error'."""
    import random

    from tests.analysis_helpers import analyze_file

    rng = random.Random(17)
    sources = [SAMPLE_DATA / n for n in ("01_nerve_mono.dcm", "04_muscle_mono.dcm", "08_muscle_uncalibrated.dcm")]
    vrs = [b"ZZ", b"UL", b"FD", b"US", b"SQ", b"OB", b"DS", b"xx"]
    started, outcomes = time.monotonic(), {"analysed": 0, "refused": 0}
    for n in range(240):
        raw = bytearray(rng.choice(sources).read_bytes())
        header_end = raw.find(b"\xe0\x7f\x10\x00")  # mutate the header, not the pixels
        kind = n % 3
        if kind == 0:  # change the VR of a random element
            positions = [m.start() for m in re.finditer(rb"[\x08\x10\x18\x20\x28]\x00..[A-Z]{2}", bytes(raw[132:header_end]))]
            at = 132 + rng.choice(positions)
            raw[at + 4 : at + 6] = rng.choice(vrs)
        elif kind == 1:  # flip a few bytes
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(132, header_end)] = rng.randrange(256)
        else:  # mutate the ultrasound regions at the dataset level
            ds = pydicom.dcmread(rng.choice(sources[:2]))
            region = ds.SequenceOfUltrasoundRegions[0]
            keyword = rng.choice(["RegionLocationMinX0", "RegionLocationMaxY1", "PhysicalDeltaX", "PhysicalUnitsXDirection",
                                  "RegionSpatialFormat", "RegionDataType", "ReferencePixelX0"])
            value = rng.choice([[1, 2], 0, 10**6, -5, 2**31 - 1, None])
            try:
                setattr(region, keyword, value)
                target = tmp_path / f"f{n}.dcm"
                ds.save_as(target)
            except (ValueError, TypeError, OverflowError, OSError, struct_error()):
                continue
            raw = bytearray(target.read_bytes())
        path = tmp_path / f"f{n}.dcm"
        path.write_bytes(bytes(raw))
        result = analyze_file(path)  # must not raise
        assert result.error_code != "internal_error", (n, result.error)
        if result.failed:
            assert result.error and "\n" not in result.error
            outcomes["refused"] += 1
        else:
            assert result.frames and all(f.measured or f.reason for f in result.frames)
            outcomes["analysed"] += 1
        assert time.monotonic() - started < 240, "fuzz test over its time budget"
    assert outcomes["refused"] > 20 and outcomes["analysed"] > 20, outcomes


def struct_error():
    import struct

    return struct.error


# -- (2) supervised workers -------------------------------------------------------------
def test_killed_worker_is_replaced_the_study_redone_and_the_next_analysed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    with running_node(tmp_path, quiet_seconds=0.3) as node:
        assert storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm").returncode == 0
        wait_for(lambda: node.index.studies() and node.index.studies()[0].state is StudyState.PROCESSING, interval=0.02)
        pids = wait_for(node.worker_pids, interval=0.02)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        (first,) = wait_for(lambda: processed(node), timeout=120)
        assert first.state is StudyState.PROCESSED and first.runs == 2  # redone, not left failed
        assert node.metrics.value("mskus_worker_restarts_total") == 1
        assert any("event=worker_died" in r.getMessage() and "requeued" in r.getMessage() for r in caplog.records)
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
        studies = wait_for(lambda: processed(node, 2), timeout=120)
        assert all(s.state is StudyState.PROCESSED for s in studies)
        assert not set(pids) & set(node.worker_pids())
    assert len(list((tmp_path / "node" / "archive").rglob("*.dcm"))) == 2


def test_a_study_whose_worker_keeps_dying_is_failed_with_the_reason_and_retry_requeues_it(tmp_path):
    index = NodeIndex(tmp_path / "index.sqlite3")
    from dicom_node.index import StoredInstance

    index.record_instance(StoredInstance("1.2.3.1", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.3", "1.2.3.9", "/x", "00"), "SCU")
    for attempt in (1, 2):
        index.claim_quiet_studies(0)
        state = index.requeue_after_crash("1.2.3", "worker killed", max_attempts=2)
        assert state is (StudyState.PENDING if attempt == 1 else StudyState.FAILED)
    (study,) = index.studies()
    assert study.state is StudyState.FAILED and "died 2 times" in study.last_error
    run = subprocess.run([sys.executable, "-m", "mskus", "retry", "--studies", "--data-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "1 stud" in run.stdout
    assert index.studies()[0].state is StudyState.PENDING


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_the_main_process_leaves_no_worker_writing_results(tmp_path):
    port, data = free_port(), tmp_path / "node"
    cmd = [sys.executable, "-m", "mskus", "serve", "--port", str(port), "--data-dir", str(data), "--quiet-seconds", "0.3"]
    node = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _port_open(port), timeout=30)
        assert storescu(port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0  # warms the worker up
        index = NodeIndex(data / "index.sqlite3")
        wait_for(lambda: processed_rows(index, 1), timeout=120)
        study = generate_uid()
        long_study = [  # the RLE cine decompressed (storescu cannot propose RLE): about 0.7 s of analysis each
            _copy(SAMPLE_DATA / "07_nerve_cine.dcm", tmp_path / f"cine{i}.dcm", study_uid=study, mutate=lambda ds: ds.decompress())
            for i in range(8)
        ]
        assert storescu(port, *long_study).returncode == 0
        wait_for(lambda: any(s.study_uid == study and s.state is StudyState.PROCESSING for s in index.studies()), interval=0.05)
        time.sleep(1.0)  # the warm worker is inside the long study now
        workers = _children(node.pid)
        assert workers
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=10)
    wait_for(lambda: not any(_alive(pid) for pid in workers), timeout=5, interval=0.1)
    time.sleep(8)  # longer than the long study takes: a surviving worker would have written its SR by now
    assert len(list((data / "archive").rglob("*.dcm"))) == 1


def processed_rows(index: NodeIndex, count: int):
    rows = index.studies()
    return len(rows) >= count and all(s.state is StudyState.PROCESSED for s in rows)


def test_restart_moves_archive_files_no_index_row_knows_aside(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    orphan = tmp_path / "node" / "archive" / "1.2.3" / "1.2.3.4.dcm"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"written by a worker whose node died")
    with running_node(tmp_path):
        pass
    assert not orphan.exists() and (tmp_path / "node" / "orphans" / "1.2.3" / "1.2.3.4.dcm").exists()
    assert any("event=orphan_result" in r.getMessage() for r in caplog.records)


# -- (3) no stalls -------------------------------------------------------------------------
def test_idle_tls_connection_does_not_block_a_tls_echo(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    cert, key = _self_signed(tmp_path)
    with running_node(tmp_path, tls=TlsConfig(cert, key), tls_handshake_timeout=2.0) as node:
        idle = socket.create_connection(("127.0.0.1", node.port))  # TCP only, never a ClientHello
        try:
            client = ssl.create_default_context(cafile=str(cert))
            client.check_hostname = False
            ae = AE(ae_title="TLSSCU")
            ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 5
            ae.add_requested_context(VERIFICATION)
            started = time.monotonic()
            assoc = ae.associate("127.0.0.1", node.port, ae_title="MSKUS", tls_args=(client, None))
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()
            assert time.monotonic() - started < 1.5
        finally:
            failed = wait_for(
                lambda: [r.getMessage() for r in caplog.records if "event=tls_handshake_failed" in r.getMessage()],
                timeout=10,
            )
            idle.close()
    assert "host=127.0.0.1" in failed[0] and "timed out" in failed[0]
    assert node.metrics.value("mskus_tls_handshake_failures_total") == 1


def test_hung_destination_does_not_delay_another(tmp_path):
    storescp = require_tool("storescp", "dcmtk")
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts TCP (the kernel does), never answers a PDU
    port = free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    destinations = (Destination("HUNG", "127.0.0.1", hung.getsockname()[1]), Destination("PACS", "127.0.0.1", port))
    policy = SendPolicy(max_attempts=3, backoff_seconds=30, connect_timeout=2, acse_timeout=6, dimse_timeout=6)
    scp = subprocess.Popen([storescp, "-aet", "PACS", "-od", str(received), str(port)])
    try:
        with running_node(tmp_path, destinations=destinations, send=policy) as node:
            assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
            wait_for(lambda: len(node.index.outbox()) == 2, interval=0.05)
            queued = time.monotonic()
            wait_for(lambda: {o.destination: o.state for o in node.index.outbox()}[destinations[1].label] is OutboxState.SENT,
                     interval=0.05)
            delay = time.monotonic() - queued
            hung_item = wait_for(lambda: [o for o in node.index.outbox() if o.destination == destinations[0].label and o.attempts], timeout=20)
    finally:
        scp.terminate()
        scp.wait(timeout=10)
        hung.close()
    assert delay < 3.0, f"the good destination waited {delay:.1f} s behind the hung one"
    assert hung_item[0].state is OutboxState.PENDING and hung_item[0].last_error


def _held_associations(port: int, count: int, files: list, calling: str = "MANYSCU"):
    """``count`` associations opened together (all established before any sends), then one C-STORE each."""
    barrier = threading.Barrier(count, timeout=30)
    results: list[object] = [None] * count

    def one(i: int) -> None:
        ae = AE(ae_title=calling)
        ae.acse_timeout = ae.network_timeout = 30
        ae.add_requested_context(str(files[i].SOPClassUID), [str(files[i].file_meta.TransferSyntaxUID)])
        assoc = ae.associate("127.0.0.1", port, ae_title="MSKUS")
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        if not assoc.is_established:
            results[i] = "rejected"
            return
        status = assoc.send_c_store(files[i])
        results[i] = int(status.Status) if "Status" in status else "no status"
        assoc.release()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results


def _datasets(count: int):
    study = generate_uid()
    out = []
    for _ in range(count):
        ds = pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm")
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = study
        out.append(ds)
    return out


def test_thirty_concurrent_associations_are_all_stored(tmp_path):
    with running_node(tmp_path, quiet_seconds=30) as node:
        results = _held_associations(node.port, 30, _datasets(30))
        assert results == [0] * 30
        assert node.indexer.flush(10)
        (study,) = node.index.studies()
        assert study.instances == 30


def test_association_over_the_limit_is_rejected_and_logged(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    with running_node(tmp_path, quiet_seconds=30, max_associations=2) as node:
        ae = AE(ae_title="MANYSCU")
        ae.add_requested_context(VERIFICATION)
        held = [ae.associate("127.0.0.1", node.port, ae_title="MSKUS") for _ in range(2)]
        assert all(a.is_established for a in held)
        third = ae.associate("127.0.0.1", node.port, ae_title="MSKUS")
        assert third.is_rejected
        for assoc in held:
            assoc.release()
        # The node frees the slots when its association threads end (asynchronously after the release).
        server = node._server
        deadline = time.monotonic() + 10
        while server is not None and server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        again = ae.associate("127.0.0.1", node.port, ae_title="MSKUS")  # room again once they are gone
        assert again.is_established
        again.release()
    lines = [r.getMessage() for r in caplog.records if "event=association_rejected" in r.getMessage()]
    assert len(lines) == 1
    assert "calling_ae=MANYSCU" in lines[0] and "host=127.0.0.1" in lines[0] and "association limit" in lines[0]


# -- (4) blind spots --------------------------------------------------------------------------
def test_wrong_called_ae_rejection_is_logged_with_both_ae_titles_and_the_peer(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mskus")
    with running_node(tmp_path) as node:
        assert storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm", calling="SOMESCU", called="NOTMSKUS").returncode != 0
        audit = [d for _, e, d in node.index.audit_trail() if e == "association_rejected"]
    (line,) = [r.getMessage() for r in caplog.records if "event=association_rejected" in r.getMessage()]
    assert "calling_ae=SOMESCU" in line and "called_ae=NOTMSKUS" in line and "host=127.0.0.1" in line
    assert "called AE title is not MSKUS" in line
    assert audit and "NOTMSKUS" in audit[0]


def test_newline_in_a_uid_does_not_forge_a_log_line(tmp_path):
    records: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.extend(self.format(record).splitlines())

    handler = Lines()
    logging.getLogger("mskus").addHandler(handler)
    logging.getLogger("mskus").setLevel(logging.INFO)
    forged = "1.2.3.4\nevent=node_stopped forged=yes"
    try:
        with running_node(tmp_path, quiet_seconds=30) as node:
            ds = pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm")
            ds.SOPInstanceUID = forged
            ae = AE(ae_title="EVILSCU")
            ae.add_requested_context(str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)])
            assoc = ae.associate("127.0.0.1", node.port, ae_title="MSKUS")
            assert assoc.is_established
            assoc.send_c_store(ds)
            assoc.release()
            wait_for(lambda: any("EVILSCU" in line and "sop=" in line for line in records), timeout=10)
    finally:
        logging.getLogger("mskus").removeHandler(handler)
    assert not any(line.startswith("event=node_stopped forged") for line in records)
    assert any("1.2.3.4\\nevent=node_stopped forged=yes" in line for line in records)


def test_escape_makes_every_control_character_visible():
    assert escape("a\nb\rc\x00d\x1b[31m\u2028") == "a\\nb\\rc\\x00d\\x1b[31m\\u2028"
    assert escape("plain 1.2.3") == "plain 1.2.3"
    assert escape("a\\nb") == "a\\\\nb"  # a typed backslash-n is told apart from a newline


# -- (5) conformance statement ------------------------------------------------------------------
def test_conformance_statement_matches_the_running_ae(tmp_path):
    from pydicom.uid import UID

    text = (REPO / "docs" / "conformance-statement.md").read_text(encoding="utf-8")
    storage_section = text.split("### SOP classes")[1].split("###")[0]
    ts_section = text.split("### Transfer syntaxes")[1].split("###")[0]
    uid = re.compile(r"`(1\.2\.840\.10008[0-9.]+)`")
    def table_uids(section: str) -> set[str]:
        return {u for line in section.splitlines() if line.startswith("| ") for u in uid.findall(line)}

    declared_sops = table_uids(storage_section)
    declared_ts = table_uids(ts_section)
    candidates = declared_sops | {
        "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
        "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR (we send it, we do not accept it)
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    }
    syntaxes = declared_ts | {"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.100"}  # HTJ2K, MPEG2: not accepted
    accepted: dict[str, set[str]] = {}
    with running_node(tmp_path) as node:
        for sop in sorted(candidates):
            ae = AE(ae_title="CONFSCU")
            for ts in sorted(syntaxes):
                ae.add_requested_context(sop, [ts])
            assoc = ae.associate("127.0.0.1", node.port, ae_title="MSKUS")
            if assoc.is_established:
                accepted[sop] = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
                assoc.release()
    assert set(accepted) == declared_sops, "SOP classes in the statement differ from what the AE accepts"
    for sop, got in accepted.items():
        assert got == declared_ts, (UID(sop).name, sorted(got ^ declared_ts))
    assert "Verification" in text and "`1.2.840.10008.1.1`" in text
    for needed in ("max_associations", "tls_handshake_timeout", "Called AE", "TLS", "ISO_IR 192", "TID 1500"):
        assert needed in text, needed


# -- (6) metrics --------------------------------------------------------------------------------
def test_metrics_endpoint_counts_a_store_and_a_refusal(tmp_path):
    from tests.test_node import _scu_send

    with running_node(tmp_path, metrics_port=0, quiet_seconds=30) as node:
        base = f"http://127.0.0.1:{node.metrics_port}"
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
        no_pixels = pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm")
        del no_pixels.PixelData
        status, _ = _scu_send(node.port, no_pixels)
        assert status.Status == 0xA900
        assert node.indexer.flush(10)
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
        with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
            assert response.status == 200 and response.read().strip() == b"ok"
    assert "\nmskus_instances_stored_total 1\n" in body
    assert '\nmskus_instances_refused_total{reason="no_pixel_data"} 1\n' in body
    assert '\nmskus_studies{state="pending"} 1\n' in body
    assert re.search(r'\nmskus_associations_total\{reason="",result="accepted"\} 2\n', body)
    assert "# TYPE mskus_worker_restarts_total counter" in body


def test_status_json_has_the_same_counts(tmp_path):
    with running_node(tmp_path, quiet_seconds=30) as node:
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
    import json

    run = subprocess.run([sys.executable, "-m", "mskus", "status", "--data-dir", str(tmp_path / "node"), "--json"],
                         capture_output=True, text=True, timeout=60)
    summary = json.loads(run.stdout)["summary"]
    assert summary["studies_pending"] == 1 and summary["studies_processed"] == 0 and summary["outbox_dead"] == 0
