"""The node's faster C-STORE path keeps every acknowledged instance: the inbox file is the truth.

An instance's file is fsync'd (file and folder) before Success; its index row
is committed without waiting for the disk. After an unclean stop the node
indexes again every inbox file whose row is missing or older than the file.
Real peers: DCMTK storescu, the node's SQLite file.
"""

from __future__ import annotations

import hashlib
import sqlite3
from io import BytesIO
from pathlib import Path

import pydicom
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from dicom_node.handlers import _part10
from dicom_node.index import NodeIndex, StudyState
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
