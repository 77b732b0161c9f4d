"""The storage node against real DCMTK peers on 127.0.0.1 (storescu, echoscu, storescp)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE

from dicom_node.config import AllowedPeer, Destination, NodeConfig, SendPolicy, load_node_config, parse_destination
from dicom_node.index import OutboxState, StudyState
from dicom_node.server import StorageNode
from pipeline.filenames import uid_file_name
from pipeline.errors import UsageError
from tests.conftest import SAMPLE_DATA, require_tool

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@contextlib.contextmanager
def running_node(tmp_path: Path, **changes):
    config = replace(NodeConfig(port=0, data_dir=tmp_path / "node", quiet_seconds=0.5), **changes)
    node = StorageNode(config, poll_seconds=0.1)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def storescu(port: int, *files: Path | str, calling: str = "TESTSCU", called: str = "MSKUS", extra=()) -> subprocess.CompletedProcess:
    exe = require_tool("storescu", "dcmtk")
    cmd = [exe, "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def processed(node: StorageNode, count: int = 1):
    studies = node.index.studies()
    done = [s for s in studies if s.state in (StudyState.PROCESSED, StudyState.FAILED)]
    return done if len(done) >= count and len(done) == len(studies) else None


# -- units ------------------------------------------------------------------------
@pytest.mark.parametrize("uid", ["../../etc/passwd", "1.2/../3", "a" * 500, "1.2.3\x00/x", "", "..", "1.2.\\3"])
def test_hostile_uids_make_plain_file_names(uid):
    name = uid_file_name(uid)
    assert "/" not in name and "\\" not in name and "\x00" not in name and name not in ("", ".", "..")
    assert len(name) <= 64


def test_valid_uid_is_kept():
    assert uid_file_name("1.2.840.10008.5.1") == "1.2.840.10008.5.1"


def test_shipped_node_config_loads_and_flags_override(tmp_path):
    config = load_node_config(None, port=4000, destinations=(parse_destination("PACS@127.0.0.1:104"),))
    assert config.port == 4000 and config.destinations[0].label == "PACS@127.0.0.1:104"
    bad = tmp_path / "node.yaml"
    bad.write_text("version: 1\nae_title: 'THIS AE TITLE IS TOO LONG'\n")
    with pytest.raises(UsageError, match="invalid AE title"):
        load_node_config(bad)
    bad.write_text("version: 1\nunknown_key: 1\n")
    with pytest.raises(UsageError, match="unknown setting"):
        load_node_config(bad)
    with pytest.raises(UsageError, match="AET@HOST:PORT"):
        parse_destination("PACS@host")


def test_backoff_doubles_and_is_capped():
    policy = SendPolicy(max_attempts=5, backoff_seconds=2, max_backoff_seconds=10)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [2, 4, 8, 10]


# -- with real peers ----------------------------------------------------------------
def test_echo(tmp_path):
    echoscu = require_tool("echoscu", "dcmtk")
    with running_node(tmp_path) as node:
        result = subprocess.run([echoscu, "-aet", "TESTSCU", "-aec", "MSKUS", "127.0.0.1", str(node.port)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr


def test_study_from_storescu_gives_sr_in_archive(tmp_path):
    dsrdump = require_tool("dsrdump", "dcmtk")
    files = [SAMPLE_DATA / "01_nerve_mono.dcm", SAMPLE_DATA / "02_nerve_rgb.dcm", SAMPLE_DATA / "07_nerve_cine.dcm"]
    with running_node(tmp_path) as node:
        result = storescu(node.port, *files[:2])
        assert result.returncode == 0, result.stderr
        # storescu cannot propose RLE: the RLE cine goes through a pynetdicom SCU, still compressed.
        status, _ = _scu_send(node.port, str(files[2]), sop_class="1.2.840.10008.5.1.4.1.1.3.1", ts="1.2.840.10008.1.2.5")
        assert status.Status == 0
        # JPEG Baseline arrives compressed (proposed with -xy) in another study.
        result = storescu(node.port, SAMPLE_DATA / "03_nerve_jpeg.dcm", extra=["-xy"])
        assert result.returncode == 0, result.stderr
        studies = wait_for(lambda: processed(node, 2))
        assert {s.instances for s in studies} == {3, 1}
        srs = list((tmp_path / "node" / "archive").rglob("*.dcm"))
        assert len(srs) == 2
        jpeg_copy = next((tmp_path / "node" / "inbox").rglob(uid_file_name(pydicom.dcmread(SAMPLE_DATA / "03_nerve_jpeg.dcm", stop_before_pixels=True).SOPInstanceUID) + ".dcm"))
        assert pydicom.dcmread(jpeg_copy, stop_before_pixels=True).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    for sr in srs:
        assert subprocess.run([dsrdump, str(sr)], capture_output=True, timeout=60).returncode == 0
        ds = pydicom.dcmread(sr)
        assert ds.Modality == "SR" and ds.CompletionFlag == "COMPLETE"
        source_study = {pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID for f in files + [SAMPLE_DATA / "03_nerve_jpeg.dcm"]}
        assert ds.StudyInstanceUID in source_study
    audit = " ".join(detail for _, _, detail in node.index.audit_trail())
    assert "MSKUS^ANNA" not in audit and "instance_received" in " ".join(e for _, e, _ in node.index.audit_trail())


def test_unknown_calling_ae_and_wrong_host_are_rejected(tmp_path):
    with running_node(tmp_path, allow=(AllowedPeer("GOODSCU"), AllowedPeer("HOSTSCU", "10.99.99.99"))) as node:
        rejected = storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm", calling="BADSCU")
        assert rejected.returncode != 0
        assert "Rejected" in rejected.stderr + rejected.stdout
        wrong_host = storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm", calling="HOSTSCU")
        assert wrong_host.returncode != 0
        accepted = storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm", calling="GOODSCU")
        assert accepted.returncode == 0, accepted.stderr
        assert node.indexer.flush(10)  # the row follows Success on the indexer's thread
        assert len(node.index.study_instances(pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm", stop_before_pixels=True).StudyInstanceUID)) == 1
        events = [e for _, e, _ in node.index.audit_trail()]
        assert events.count("association_rejected") == 2


def test_wrong_called_ae_title_is_rejected(tmp_path):
    with running_node(tmp_path) as node:
        result = storescu(node.port, SAMPLE_DATA / "01_nerve_mono.dcm", called="SOMEONEELSE")
        assert result.returncode != 0 and "Rejected" in result.stderr + result.stdout


def test_unsupported_sop_class_is_rejected_at_negotiation(tmp_path):
    ct = get_testdata_file("CT_small.dcm", download=False)
    with running_node(tmp_path) as node:
        result = storescu(node.port, ct)
        assert result.returncode != 0
        assert "presentation context" in (result.stderr + result.stdout).lower()
        assert node.index.studies() == []


def _scu_send(port: int, dataset_or_path, sop_class: str = US_IMAGE, ts: str = "1.2.840.10008.1.2.1"):
    ae = AE(ae_title="PYSCU")
    ae.add_requested_context(sop_class, [ts])
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="MSKUS")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(dataset_or_path)
        echo = assoc.send_c_echo()
    finally:
        assoc.release()
    return status, echo


def test_bad_datasets_get_an_error_status_and_the_node_keeps_serving(tmp_path):
    good = SAMPLE_DATA / "01_nerve_mono.dcm"
    no_pixels = pydicom.dcmread(good)
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = "1.2.3.4.5.6.7.1"
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(good.read_bytes()[:-50000])
    wrong_modality = pydicom.dcmread(good)
    wrong_modality.SOPInstanceUID = "1.2.3.4.5.6.7.2"
    wrong_modality.Modality = "CT"
    wrong_modality.SOPClassUID = US_IMAGE
    with running_node(tmp_path) as node:
        status, echo = _scu_send(node.port, no_pixels)
        assert status.Status == 0xA900 and "no pixel data" in status.ErrorComment
        assert echo.Status == 0
        status, echo = _scu_send(node.port, str(truncated))
        assert status.Status in (0xA900, 0xC210) and "truncated" in status.ErrorComment
        assert echo.Status == 0
        status, _ = _scu_send(node.port, wrong_modality)
        # The SOP class (Ultrasound Image Storage) decides, not the Modality attribute.
        assert status.Status == 0x0000
        status, echo = _scu_send(node.port, pydicom.dcmread(good))
        assert status.Status == 0x0000 and echo.Status == 0
        refused = [d for _, e, d in node.index.audit_trail() if e == "store_refused"]
        assert len(refused) >= 2


def test_resent_identical_instance_is_idempotent(tmp_path):
    path = SAMPLE_DATA / "04_muscle_mono.dcm"
    with running_node(tmp_path) as node:
        assert storescu(node.port, path).returncode == 0
        wait_for(lambda: processed(node))
        assert storescu(node.port, path).returncode == 0
        time.sleep(1.5)  # longer than the quiet period: a new run would have started
        (study,) = node.index.studies()
        assert study.runs == 1 and study.instances == 1 and study.state is StudyState.PROCESSED
        assert len(list((tmp_path / "node" / "archive").rglob("*.dcm"))) == 1


def test_late_instance_triggers_a_superseding_report(tmp_path):
    first, second = SAMPLE_DATA / "04_muscle_mono.dcm", SAMPLE_DATA / "05_muscle_bone.dcm"  # study B
    with running_node(tmp_path) as node:
        assert storescu(node.port, first).returncode == 0
        wait_for(lambda: processed(node))
        first_sr = pydicom.dcmread(next((tmp_path / "node" / "archive").rglob("*.dcm")))
        assert storescu(node.port, second).returncode == 0
        wait_for(lambda: node.index.studies()[0].runs == 2 and processed(node))
        reports = [pydicom.dcmread(p) for p in (tmp_path / "node" / "archive").rglob("*.dcm")]
        assert len(reports) == 2
        newest = next(r for r in reports if r.SOPInstanceUID != first_sr.SOPInstanceUID)
        predecessors = [
            ref.ReferencedSOPInstanceUID
            for study in newest.PredecessorDocumentsSequence
            for series in study.ReferencedSeriesSequence
            for ref in series.ReferencedSOPSequence
        ]
        assert predecessors == [first_sr.SOPInstanceUID]


def test_storage_failure_answers_out_of_resources_and_records_nothing(tmp_path, monkeypatch):
    with running_node(tmp_path) as node:
        def disk_full(*_args, **_kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(node.store, "store_instance", disk_full)
        status, echo = _scu_send(node.port, pydicom.dcmread(SAMPLE_DATA / "01_nerve_mono.dcm"))
        assert status.Status == 0xA700 and "No space left" in status.ErrorComment
        assert echo.Status == 0
        assert node.index.studies() == []


def test_destination_down_then_up_gets_the_sr_exactly_once(tmp_path):
    storescp = require_tool("storescp", "dcmtk")
    port = free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    destination = Destination("PACS", "127.0.0.1", port)
    policy = SendPolicy(max_attempts=20, backoff_seconds=0.3, max_backoff_seconds=1.0)
    with running_node(tmp_path, destinations=(destination,), send=policy) as node:
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
        wait_for(lambda: any(o.attempts >= 1 for o in node.index.outbox()), timeout=60)
        assert node.index.outbox()[0].state is OutboxState.PENDING
        scp = subprocess.Popen([storescp, "-aet", "PACS", "-od", str(received), "+xa", str(port)])
        try:
            wait_for(lambda: node.index.outbox()[0].state is OutboxState.SENT, timeout=60)
            time.sleep(1.5)
        finally:
            scp.terminate()
            scp.wait(timeout=10)
        files = list(received.iterdir())
        assert len(files) == 1
        assert pydicom.dcmread(files[0]).Modality == "SR"


def test_one_dead_destination_does_not_block_another(tmp_path):
    storescp = require_tool("storescp", "dcmtk")
    port = free_port()
    received = tmp_path / "pacs"
    received.mkdir()
    destinations = (Destination("DEAD", "127.0.0.1", free_port()), Destination("PACS", "127.0.0.1", port))
    policy = SendPolicy(max_attempts=2, backoff_seconds=0.2, max_backoff_seconds=0.2)
    scp = subprocess.Popen([storescp, "-aet", "PACS", "-od", str(received), str(port)])
    try:
        with running_node(tmp_path, destinations=destinations, send=policy) as node:
            assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm").returncode == 0
            states = wait_for(lambda: (s := {o.destination: o.state for o in node.index.outbox()}) and OutboxState.PENDING not in s.values() and len(s) == 2 and s, timeout=60)
            assert states["PACS@127.0.0.1:%d" % port] is OutboxState.SENT
            assert states[destinations[0].label] is OutboxState.DEAD
            # mskus retry brings the dead-lettered item back.
            assert node.index.retry() == 1
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    assert len(list(received.iterdir())) == 1


def test_restart_after_kill_9_finishes_the_study(tmp_path):
    """Kill -9 between acknowledgement and analysis: the restarted node finishes the work."""
    port = free_port()
    data = tmp_path / "node"
    cmd = [sys.executable, "-m", "mskus", "serve", "--port", str(port), "--data-dir", str(data), "--quiet-seconds", "30"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: _port_open(port), timeout=30)
        assert storescu(port, SAMPLE_DATA / "01_nerve_mono.dcm").returncode == 0
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert not list((data / "archive").rglob("*.dcm"))
    second = subprocess.Popen(cmd[:-1] + ["0.5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    status_cmd = [sys.executable, "-m", "mskus", "status", "--data-dir", str(data), "--json"]
    try:
        wait_for(lambda: '"processed"' in subprocess.run(status_cmd, capture_output=True, text=True).stdout, timeout=90)
        assert len(list((data / "archive").rglob("*.dcm"))) == 1
    finally:
        second.terminate()  # SIGTERM: a clean stop
        assert second.wait(timeout=30) == 0


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_key_images_share_one_series_per_study_run(tmp_path):
    with running_node(tmp_path, key_images=True) as node:
        assert storescu(node.port, SAMPLE_DATA / "04_muscle_mono.dcm", SAMPLE_DATA / "05_muscle_bone.dcm").returncode == 0
        wait_for(lambda: processed(node))
        archived = [pydicom.dcmread(p) for p in (tmp_path / "node" / "archive").rglob("*.dcm")]
    reports = [d for d in archived if d.Modality == "SR"]
    keys = [d for d in archived if d.Modality != "SR"]
    assert len(reports) == 1 and len(keys) == 2
    assert len({k.SeriesInstanceUID for k in keys}) == 1
    assert {k.StudyInstanceUID for k in keys} == {reports[0].StudyInstanceUID}
    assert sorted(int(k.InstanceNumber) for k in keys) == [1, 2]


# -- what an administrator notices (issue 22) -------------------------------------------
def test_serve_says_at_start_that_every_caller_is_accepted_and_results_go_nowhere(tmp_path):
    from dicom_node.config import startup_notes

    notes = startup_notes(NodeConfig(data_dir=tmp_path / "node"))
    assert len(notes) == 2
    assert "allow-list is empty: every calling AE title is accepted (on loopback only)" in notes[0]
    assert f"no destination configured: results stay in {tmp_path / 'node' / 'archive'} only" in notes[1]
    assert startup_notes(NodeConfig(allow=(AllowedPeer("PACS"),), destinations=(parse_destination("PACS@127.0.0.1:104"),))) == ()
    # And the command says them, before it serves.
    port = free_port()
    cmd = [sys.executable, "-m", "mskus", "serve", "--port", str(port), "--data-dir", str(tmp_path / "node")]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in server.stderr:
            lines.append(line)
            if "event=node_started" in line:
                break
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = "".join(lines)
    assert "WARNING" in text and "allow-list is empty" in text and "no destination configured" in text


def test_empty_allow_list_beyond_loopback_is_refused_unless_meant(tmp_path):
    from dicom_node.config import check_exposure, is_loopback_address

    assert is_loopback_address("127.0.0.1") and is_loopback_address("::1") and is_loopback_address("localhost")
    assert not is_loopback_address("0.0.0.0") and not is_loopback_address("pacs.example.org")
    with pytest.raises(UsageError, match="empty allow-list would accept every calling AE"):
        check_exposure(NodeConfig(bind_address="0.0.0.0"))
    check_exposure(NodeConfig(bind_address="0.0.0.0", allow=(AllowedPeer("PACS", "10.0.0.7"),)))
    check_exposure(NodeConfig(bind_address="0.0.0.0", allow_any_peer=True))
    check_exposure(NodeConfig())  # loopback: allowed, with a note at start
    config = tmp_path / "node.yaml"
    config.write_text("version: 1\nbind_address: 0.0.0.0\nallow_any_peer: true\n")
    assert load_node_config(config).allow_any_peer is True
    # The command refuses in one line, before it creates anything.
    data = tmp_path / "node"
    cmd = [sys.executable, "-m", "mskus", "serve", "--bind", "0.0.0.0", "--port", "0", "--data-dir", str(data)]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "--allow-any-peer" in refused.stderr and "Traceback" not in refused.stderr
    assert not data.exists()


def _indexed_study(data: Path):
    """A node data folder with one received sample image and one sent SR, made through the index API."""
    from dicom_node.index import NodeIndex, StoredInstance
    from dicom_node.storage import DurableStore

    store = DurableStore(data)
    index = NodeIndex(data / "index.sqlite3")
    source = pydicom.dcmread(SAMPLE_DATA / "04_muscle_mono.dcm", stop_before_pixels=True)
    study = str(source.StudyInstanceUID)
    path = store.store_instance(study, str(source.SOPInstanceUID), (SAMPLE_DATA / "04_muscle_mono.dcm").read_bytes())
    index.record_instance(
        StoredInstance(str(source.SOPInstanceUID), str(source.SOPClassUID), study, str(source.SeriesInstanceUID), str(path), "x"),
        "TESTSCU",
    )
    ((_, run, snapshot),) = index.claim_quiet_studies(0.0, now=time.time() + 1)
    index.add_result("1.2.3.4.5", study, "sr", str(data / "archive" / "1.2.3.4.5.dcm"), run, ["PACS@127.0.0.1:104"])
    index.mark_sent(index.outbox()[0].id)
    index.finish_study(study, snapshot)
    return source


def test_status_shows_patient_date_and_current_report(tmp_path):
    data = tmp_path / "node"
    source = _indexed_study(data)
    text = subprocess.run([sys.executable, "-m", "mskus", "status", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert f"patient {source.PatientID} {source.PatientName}" in text.stdout
    date = str(source.StudyDate)
    assert f"study date {date[:4]}-{date[4:6]}-{date[6:]}" in text.stdout
    assert "current SR 1.2.3.4.5 (run 1)" in text.stdout and "sent to PACS@127.0.0.1:104" in text.stdout
    as_json = subprocess.run([sys.executable, "-m", "mskus", "status", "--data-dir", str(data), "--json"],
                             capture_output=True, text=True, timeout=60)
    (study,) = __import__("json").loads(as_json.stdout)["studies"]
    assert study["patient_id"] == source.PatientID and study["study_date"] == date
    assert study["current_sr"]["sop_instance_uid"] == "1.2.3.4.5"
    assert study["current_sr"]["delivery"] == [{"destination": "PACS@127.0.0.1:104", "state": "sent"}]


def test_status_without_data_dir_says_how_to_find_the_node(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mskus", "status"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f"no node data in mskus-data ({tmp_path / 'mskus-data'}), the default data folder" in result.stderr
    assert "--data-dir DIR" in result.stderr and "--config FILE" in result.stderr
