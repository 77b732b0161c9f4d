"""The node's faster C-STORE path keeps every acknowledged instance: the inbox file is the truth.

An instance's file is fsync'd (file and folder) before Success; its index row
follows on the indexer's thread and is committed without waiting for the disk.
After an unclean stop the node indexes again every inbox file whose row is
missing or older than the file, and moves aside one a crash left half-written.
Real peers: DCMTK storescu, the node's SQLite file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import threading
import time
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta

from dicom_node.handlers import _part10
from dicom_node.index import NodeIndex, ReceivedInstance, StoredInstance, StudyState
from dicom_node.config import NodeConfig
from dicom_node.indexer import InstanceIndexer, StoreReceipt
from dicom_node.server import StorageNode
from dicom_node.storage import DurableStore, SpareFiles
from pipeline.atomic import TMP_SUFFIX
from tests.conftest import SAMPLE_DATA
from tests.test_node import running_node, storescu

SOURCE = SAMPLE_DATA / "04_muscle_mono.dcm"


def _rows(data: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(data / "index.sqlite3") as db:
        db.execute(sql, params)


def test_part10_bytes_are_pynetdicoms(tmp_path: Path) -> None:
    request = C_STORE()
    body = b"\x08\x00\x16\x00UI\x1a\x001.2.840.10008.5.1.4.1.1.6.1\x00"
    request.DataSet = BytesIO(body)
    for sop in ("1.2.3.4", "1.2.3.45"):  # odd and even lengths: UI padding
        for syntax in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"):
            expected = b"\x00" * 128 + b"DICM" + encode_file_meta(create_file_meta(
                sop_class_uid="1.2.840.10008.5.1.4.1.1.6.1", sop_instance_uid=sop, transfer_syntax=syntax)) + body
            assert _part10("1.2.840.10008.5.1.4.1.1.6.1", sop, syntax, request) == expected


def test_a_lost_index_row_is_rebuilt_from_the_inbox_after_an_unclean_stop(tmp_path: Path) -> None:
    sop = str(pydicom.dcmread(SOURCE, stop_before_pixels=True).SOPInstanceUID)
    with running_node(tmp_path, quiet_seconds=600) as node:
        assert storescu(node.port, SOURCE).returncode == 0
        assert node.indexer.flush(10)
        stored = node.index.instance(sop)
        assert stored is not None
        data = Path(node.config.data_dir)
        assert (data / ".node-running").exists()
    assert not (data / ".node-running").exists()  # a clean stop: nothing to reconcile next time
    # What a power loss may leave: the fsync'd inbox file, its row and study gone, the marker still there.
    _rows(data, "DELETE FROM instances")
    _rows(data, "DELETE FROM studies")
    (data / ".node-running").write_text("1\n")
    junk = data / "inbox" / "1.2.3" / "junk.dcm"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"not dicom at all")
    with running_node(tmp_path, quiet_seconds=600) as node:
        again = node.index.instance(sop)
        studies = node.index.studies()
        trail = [event for _, event, _ in node.index.audit_trail()]
    assert again is not None and again.sha256 == stored.sha256 == hashlib.sha256(Path(stored.path).read_bytes()).hexdigest()
    assert [(s.state, s.instances) for s in studies] == [(StudyState.PENDING, 1)]
    assert "instance_recovered" in trail
    assert not junk.exists() and (data / "orphans" / "inbox" / "1.2.3" / "junk.dcm").exists()


def test_a_changed_resend_whose_row_update_was_lost_is_recorded_again(tmp_path: Path) -> None:
    with running_node(tmp_path, quiet_seconds=600) as node:
        assert storescu(node.port, SOURCE).returncode == 0
        data = Path(node.config.data_dir)
    sop = str(pydicom.dcmread(SOURCE, stop_before_pixels=True).SOPInstanceUID)
    # The row still describes an older version of the file (written before the file's last change).
    _rows(data, "UPDATE instances SET sha256='stale', received_at=received_at-60 WHERE sop_instance_uid=?", (sop,))
    (data / ".node-running").write_text("1\n")
    with running_node(tmp_path, quiet_seconds=600) as node:
        row = node.index.instance(sop)
    assert row is not None and row.sha256 == hashlib.sha256(Path(row.path).read_bytes()).hexdigest()
    assert NodeIndex(data / "index.sqlite3").studies()[0].state is StudyState.PENDING


def test_a_half_written_temporary_of_a_crash_is_removed_at_start(tmp_path):
    from dicom_node.config import load_node_config
    from dicom_node.server import StorageNode
    from pipeline.atomic import TMP_SUFFIX

    data = tmp_path / "node"
    (data / "tmp").mkdir(parents=True)
    leftover = data / "tmp" / f"0123abcd{TMP_SUFFIX}"
    leftover.write_bytes(b"half an instance")
    config = load_node_config(None, data_dir=str(data), port=0, destinations=())
    node = StorageNode(config, poll_seconds=0.1)
    node.start()
    try:
        assert not leftover.exists()
    finally:
        node.stop()


# -- the C-STORE path: spare files, the indexer ----------------------------------------------------
def _receipt(sop: str, data: bytes, study: str = "1.2.3") -> StoreReceipt:
    return StoreReceipt(sop, "1.2.840.10008.5.1.4.1.1.6.1", study, "1.2.3.9", f"/inbox/{sop}.dcm", data, "SCU", "127.0.0.1",
                        time.time(), 1.0, audit=("instance_received", f"sop={sop}"))


def test_the_indexer_writes_every_row_in_order_with_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    index = NodeIndex(tmp_path / "index.sqlite3")
    indexer = InstanceIndexer(index, max_batch=7)
    indexer.submit(_receipt("1.2.3.0", b"before start"))  # not started: written on the caller's thread
    assert index.instance("1.2.3.0") is not None
    indexer.start()
    try:
        for n in range(1, 51):
            indexer.submit(_receipt(f"1.2.3.{n}", f"instance {n}".encode()))
        assert indexer.flush(10) and indexer.pending == 0
    finally:
        indexer.stop()
    indexer.submit(_receipt("1.2.3.99", b"after stop"))  # stopped: written on the caller's thread again
    for n in [*range(51), 99]:
        row = index.instance(f"1.2.3.{n}")
        assert row is not None
    assert index.instance("1.2.3.7").sha256 == hashlib.sha256(b"instance 7").hexdigest()
    assert [(s.state, s.instances) for s in index.studies()] == [(StudyState.PENDING, 52)]
    assert sum(1 for _, event, _ in index.audit_trail() if event == "instance_received") == 52


def test_a_database_error_fails_the_batch_once_instead_of_row_by_row(tmp_path: Path, monkeypatch) -> None:
    """A locked or full database costs one wait per batch, not one per row; a bad row costs only itself."""
    index = NodeIndex(tmp_path / "index.sqlite3")
    calls: list[int] = []

    def locked(received, *, sync=True):
        calls.append(len(received))
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(index, "record_instances", locked)
    indexer = InstanceIndexer(index)
    indexer._write([_receipt(f"1.2.3.{n}", b"x") for n in range(5)])
    assert calls == [5] and indexer.failures == 5

    def one_bad_row(received, *, sync=True):
        calls.append(len(received))
        if any(r.instance.sop_instance_uid == "1.2.3.2" for r in received):
            raise sqlite3.IntegrityError("bad row")
        return [True] * len(received)

    calls.clear()
    monkeypatch.setattr(index, "record_instances", one_bad_row)
    indexer._write([_receipt(f"1.2.3.{n}", b"x") for n in range(5)])
    assert calls == [5, 1, 1, 1, 1, 1] and indexer.failures == 6


def test_a_row_written_after_a_run_was_claimed_sends_the_study_back_to_pending(tmp_path: Path) -> None:
    """Stored before the claim, indexed after it: the run never saw the instance, so the study is not done."""
    index = NodeIndex(tmp_path / "index.sqlite3")
    first, late = (
        StoredInstance(f"1.2.3.{k}", "1.2.840.10008.5.1.4.1.1.6.1", "1.2.3", "1.2.3.9", str(tmp_path / f"{k}.dcm"), str(k))
        for k in (1, 2)
    )
    index.record_instance(first, "SCU")
    stored_at = time.time()
    time.sleep(0.01)
    ((study, _run, snapshot),) = index.claim_quiet_studies(0.0)
    time.sleep(0.01)
    index.record_instances([ReceivedInstance(late, "SCU", stored_at)])
    index.finish_study(study, snapshot)
    (row,) = index.studies()
    assert row.state is StudyState.PENDING and row.instances == 2


def test_a_stop_with_rows_still_queued_keeps_the_marker_so_the_next_start_indexes_them(tmp_path: Path, monkeypatch) -> None:
    released = threading.Event()
    node = StorageNode(NodeConfig(port=0, data_dir=tmp_path / "node", quiet_seconds=600), poll_seconds=0.1)
    node.start()
    write = node.index.record_instances

    def stuck(*args, **kwargs):
        released.wait(30)
        return write(*args, **kwargs)

    monkeypatch.setattr(node.index, "record_instances", stuck)
    monkeypatch.setattr(node.indexer, "stop", functools.partial(node.indexer.stop, timeout=0.2))
    try:
        assert storescu(node.port, SOURCE).returncode == 0
    finally:
        node.stop()  # the row is still being written
    try:
        assert node._running_marker.exists(), "stopped with an unwritten row but told the next start all was indexed"
    finally:
        released.set()


def test_an_index_row_that_cannot_be_written_costs_no_instance(tmp_path: Path, monkeypatch) -> None:
    sop = str(pydicom.dcmread(SOURCE, stop_before_pixels=True).SOPInstanceUID)
    with running_node(tmp_path, quiet_seconds=600) as node:
        def index_broken(*args, **kwargs):
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(node.index, "record_instances", index_broken)
        assert storescu(node.port, SOURCE).returncode == 0  # the file is durable: Success
        assert node.indexer.flush(10)
        assert node.indexer.failures == 1 and node.metrics.value("mskus_index_failures_total") == 1
        data = Path(node.config.data_dir)
        monkeypatch.undo()
        assert node.index.instance(sop) is None
    assert (data / ".node-running").exists()  # so the next start reconciles the inbox
    with running_node(tmp_path, quiet_seconds=600) as node:
        row = node.index.instance(sop)
    assert row is not None and Path(row.path).read_bytes() == _stored_bytes(SOURCE)


def _stored_bytes(source: Path) -> bytes:
    """What the node stores for ``source``: its dataset behind the node's file meta."""
    ds = pydicom.dcmread(source)
    request = C_STORE()
    request.DataSet = BytesIO(encode(ds, False, True))
    return _part10(str(ds.SOPClassUID), str(ds.SOPInstanceUID), "1.2.840.10008.1.2.1", request)


def test_an_instance_a_crash_left_half_written_is_moved_aside_not_indexed(tmp_path: Path) -> None:
    with running_node(tmp_path, quiet_seconds=600) as node:
        data = Path(node.config.data_dir)
    whole = _stored_bytes(SOURCE)
    # What a power cut between the rename and the fsync can leave: the inbox name, part of the bytes.
    half = data / "inbox" / "1.2.3" / "1.2.3.4.dcm"
    half.parent.mkdir(parents=True)
    half.write_bytes(whole[: len(whole) // 2])
    (data / ".node-running").write_text("1\n")
    with running_node(tmp_path, quiet_seconds=600) as node:
        assert node.index.studies() == []
    assert not half.exists() and (data / "orphans" / "inbox" / "1.2.3" / "1.2.3.4.dcm").read_bytes() == whole[: len(whole) // 2]


def test_a_resend_replaces_the_stored_file_whole_and_spares_are_removed_on_close(tmp_path: Path) -> None:
    store = DurableStore(tmp_path / "data")
    first = store.store_instance("1.2.3", "1.2.3.4", b"first version")
    second = store.store_instance("1.2.3", "1.2.3.4", b"second, longer version")
    third = store.store_instance("1.2.3", "1.2.3.5", b"another instance")
    assert first == second and second.read_bytes() == b"second, longer version"
    assert third.read_bytes() == b"another instance"
    store.close()
    assert [p.name for p in (tmp_path / "data" / "tmp").iterdir()] == []  # the spares made ahead of need are gone
    assert sorted(p.name for p in (tmp_path / "data" / "inbox" / "1.2.3").iterdir()) == ["1.2.3.4.dcm", "1.2.3.5.dcm"]


def test_spare_files_are_made_ahead_and_created_on_the_spot_when_none_is_ready(tmp_path: Path) -> None:
    spares = SpareFiles(tmp_path, count=2)
    try:
        path, fd = spares.take()  # none ready yet
        os.close(fd)
        assert path.exists() and path.name.endswith(TMP_SUFFIX)
        spares.refill()
        spares.refill()
        spares.refill()
        deadline = time.monotonic() + 10
        while len(list(tmp_path.glob(f"*{TMP_SUFFIX}"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(list(tmp_path.glob(f"*{TMP_SUFFIX}"))) == 3  # the taken one and at most `count` spares
    finally:
        spares.close()
    assert [p for p in tmp_path.iterdir()] == [path]
    with pytest.raises(ValueError, match="count"):
        SpareFiles(tmp_path, count=0)


def test_a_failed_flush_leaves_nothing_half_durable_at_the_inbox_name(tmp_path: Path, monkeypatch) -> None:
    store = DurableStore(tmp_path / "data")
    kept = store.store_instance("1.2.3", "1.2.3.4", b"acknowledged earlier")

    def disk_error(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", disk_error)
    with pytest.raises(OSError, match="Input/output"):
        store.store_instance("1.2.3", "1.2.3.5", b"new instance")  # never acknowledged: gone again
    with pytest.raises(OSError, match="Input/output"):
        store.store_instance("1.2.3", "1.2.3.4", b"changed resend")  # the acknowledged copy stays whole
    monkeypatch.undo()
    store.close()
    assert sorted(p.name for p in kept.parent.iterdir()) == ["1.2.3.4.dcm"] and kept.read_bytes() == b"acknowledged earlier"
    assert list((tmp_path / "data" / "tmp").iterdir()) == []
