"""End to end with Orthanc as the PACS: PACS -> node -> analysis -> SR back into the same study."""

from __future__ import annotations

import io
import json
import subprocess
import urllib.request
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from dicom_node.config import AllowedPeer, Destination, NodeConfig
from dicom_node.server import StorageNode
from tests.conftest import SAMPLE_DATA, require_tool
from tests.test_node import free_port, wait_for


class Orthanc:
    """An Orthanc server on loopback with its own config, storage and ports."""

    def __init__(self, folder: Path, node_port: int) -> None:
        self.executable = require_tool("Orthanc", "orthanc")
        folder.mkdir(parents=True, exist_ok=True)
        # A port found free can be taken by another process before Orthanc binds it: try fresh ones.
        for attempt in range(3):
            try:
                self._start(folder, node_port)
                return
            except AssertionError:
                if attempt == 2 or b"already in use" not in (folder / "orthanc.log").read_bytes():
                    raise

    def _start(self, folder: Path, node_port: int) -> None:
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port()
            if port != node_port and port not in ports:
                ports.append(port)
        self.http_port, self.dicom_port = ports
        config = {
            "Name": "mskus-test-pacs",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "HttpServerEnabled": True,
            "DicomServerEnabled": True,
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": {"mskus": ["MSKUS", "127.0.0.1", node_port]},
            "Plugins": [],
        }
        self.config_path = folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "wb")
        self.process = subprocess.Popen([self.executable, str(self.config_path)], stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(self._up, timeout=60)
        except AssertionError:
            self.log.close()
            raise

    def _up(self) -> bool:
        try:
            self.get("/system")
            return True
        except OSError:
            if self.process.poll() is not None:
                raise AssertionError(f"Orthanc exited with {self.process.returncode}") from None
            return False

    def request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.read()

    def get(self, path: str):
        return json.loads(self.request("GET", path))

    def post(self, path: str, body: bytes):
        return json.loads(self.request("POST", path, body))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def test_orthanc_sends_study_and_receives_the_sr_in_the_same_study(tmp_path):
    files = [SAMPLE_DATA / "01_nerve_mono.dcm", SAMPLE_DATA / "02_nerve_rgb.dcm"]  # study A
    node_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", node_port)
    # The node only accepts Orthanc, and sends its results back to it.
    node_config = NodeConfig(
        port=node_port,
        data_dir=tmp_path / "node",
        quiet_seconds=1.0,
        allow=(AllowedPeer("ORTHANC", "127.0.0.1"),),
        destinations=(Destination("ORTHANC", "127.0.0.1", orthanc.dicom_port),),
    )
    node = StorageNode(node_config, poll_seconds=0.2)
    node.start()
    try:
        uploaded = [orthanc.post("/instances", f.read_bytes()) for f in files]
        study_id = uploaded[0]["ParentStudy"]
        assert {u["ParentStudy"] for u in uploaded} == {study_id}
        orthanc.post("/modalities/mskus/store", study_id.encode())

        def sr_instances():
            found = []
            for series_id in orthanc.get(f"/studies/{study_id}")["Series"]:
                series = orthanc.get(f"/series/{series_id}")
                if series["MainDicomTags"].get("Modality") == "SR":
                    found.extend(series["Instances"])
            return found

        (sr_id,) = wait_for(sr_instances, timeout=120, interval=0.5)
        report = hd.sr.srread(io.BytesIO(orthanc.request("GET", f"/instances/{sr_id}/file")))
    finally:
        node.stop()
        orthanc.stop()
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert report.StudyInstanceUID == source.StudyInstanceUID
    assert report.PatientID == source.PatientID
    groups = report.content.get_planar_roi_measurement_groups()
    assert len(groups) == 2
    truths = {json.loads(f.with_suffix(".json").read_text())["sop_instance_uid"]: json.loads(f.with_suffix(".json").read_text())["frames"][0] for f in files}
    for group in groups:
        area = next(m for m in group.get_measurements() if m.name.value == "42798000")
        # The SCOORD's selected-from IMAGE item names the source instance.
        referenced = group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        assert area.value == pytest.approx(truths[referenced]["csa_mm2"], rel=0.12)
        assert area.unit.value == "mm2"
