"""Ingest speed of the storage node against other C-STORE receivers, and result latency.

The same generated ultrasound files (``--files``, 400 by default, 480 x 640
MONOCHROME2, about 300 KB each, 20 studies) are sent in one association by
DCMTK ``storescu`` to each receiver, on 127.0.0.1:

- ``node``: the node as ``mskus serve`` runs it (:func:`run_node`), shipped settings (fsync of file and
  folder before Success, SQLite index row on the indexer thread); timed once its analysis worker has started, as in service;
- ``bare_fsync``: a bare pynetdicom SCP that writes each instance and fsyncs the file and its folder
  before Success (the durability the node promises, nothing else);
- ``bare``: the same bare SCP without fsync;
- ``orthanc``: Orthanc with a temporary configuration (``SyncStorageArea`` on, its default);
- ``storescp``: DCMTK ``storescp`` (no fsync).

TCP_NODELAY is on everywhere it can be set (pynetdicom sockets; ``TCP_NODELAY=1`` in the
environment of the DCMTK tools and Orthanc, which is their default). Receivers are
started fresh (empty storage) for every run and measured in turn (the order
reversed every other round), ``--rounds`` times; the median and best
instances/s are reported with every run, and the node's ratio to each other
receiver as the median of the per-round ratios (runs of one round are close
in time, so they share the load of a busy machine) and as best over best. A run counts only
when ``storescu`` exits 0 and the receiver holds every instance.

Latency: a node with ``--quiet-seconds`` sends its results to Orthanc; for each
of a few sample studies the time from the last C-STORE response (``storescu``
exits) to the SR being visible in Orthanc's REST API is measured. The first
study is the node's first analysis (models loaded, caches cold), the others
follow it. Target: quiet period + 2 s.

Usage::

    nice -n 5 .venv/bin/python benchmarks/ingest.py [--files 400] [--rounds 9] [--quiet-seconds 2]

Writes ``benchmarks/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

logger = logging.getLogger("mskus.bench.ingest")

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
RECEIVERS = ("node", "bare_fsync", "bare", "orthanc", "storescp")
DCMTK_ENV = {"TCP_NODELAY": "1"}


# -- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestRun:
    """One ``storescu`` run of every file to one receiver."""

    receiver: str
    round: int
    instances: int
    seconds: float

    @property
    def rate(self) -> float:
        """Instances per second."""
        return self.instances / self.seconds


@dataclass(frozen=True)
class ReceiverSummary:
    """Every run of one receiver (in round order), their median and best rate."""

    receiver: str
    rates: tuple[float, ...]
    median_rate: float
    best_rate: float
    seconds: tuple[float, ...]


@dataclass(frozen=True)
class Ratio:
    """The node's rate over another receiver's: median of the per-round ratios (paired runs), and of the best runs."""

    versus: str
    per_round: tuple[float, ...]
    median: float
    best: float


@dataclass(frozen=True)
class LatencyRun:
    """Last C-STORE response to the study's SR visible in Orthanc."""

    study: str
    source: str
    cold: bool
    seconds: float


@dataclass(frozen=True)
class IngestReport:
    """What ``benchmarks/results/ingest.json`` holds."""

    files: int
    mean_file_bytes: int
    studies: int
    rounds: int
    receivers: dict[str, ReceiverSummary]
    ratios: dict[str, Ratio]
    target_node_vs_bare_fsync: float
    latency_quiet_seconds: float
    latency_target_seconds: float
    latency: tuple[LatencyRun, ...]
    latency_warm_max: float | None
    latency_met: bool
    environment: dict[str, object] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


# -- helpers -------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], *, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something true; raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def tool(name: str) -> str:
    """Path of a DCMTK / Orthanc executable; ``SystemExit`` naming the Debian package when missing."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if not found:
        package = "orthanc" if name == "Orthanc" else "dcmtk"
        raise SystemExit(f"{name} not found: install the Debian package '{package}'")
    return found


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the data set --------------------------------------------------------------------
def make_files(folder: Path, count: int, *, studies: int = 20, rows: int = 480, columns: int = 640, seed: int = 17) -> list[Path]:
    """Write ``count`` calibrated ultrasound images (about ``rows * columns`` bytes each) in ``studies`` studies.

    Parameters
    ----------
    folder : Path
        Where the files go (one sub-folder per study).
    count : int
        Number of files.
    studies : int
        Studies they are spread over.
    rows, columns : int
        Frame size (8-bit MONOCHROME2).
    seed : int
        Random seed of the speckle.

    Returns
    -------
    list of Path
        The files, in sending order.
    """
    rng = np.random.default_rng(seed)
    base = rng.rayleigh(45, size=(rows, columns + count)).clip(0, 255).astype(np.uint8)
    study_uids = [generate_uid() for _ in range(studies)]
    series_uids = [generate_uid() for _ in range(studies)]
    paths = []
    for number in range(count):
        study = number % studies
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = US_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uids[study], series_uids[study]
        ds.Modality = "US"
        ds.PatientName = f"BENCH^{study:02d}"
        ds.PatientID = f"BENCH{study:02d}"
        ds.StudyDate = "20240101"
        ds.SeriesDescription = "R MEDIAN NERVE"
        ds.InstanceNumber = number // studies + 1
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        region = Dataset()
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 40, 30
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = columns - 41, rows - 31
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
        region.PhysicalDeltaX = region.PhysicalDeltaY = 0.008
        ds.SequenceOfUltrasoundRegions = DicomSequence([region])
        ds.PixelData = np.ascontiguousarray(base[:, number : number + columns]).tobytes()
        path = folder / f"study{study:02d}" / f"IM{number:04d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# -- the bare pynetdicom SCP (run as a subprocess of this script) ----------------------
def run_bare_scp(port: int, folder: Path, *, fsync: bool = True) -> None:
    """A bare pynetdicom Storage SCP: write the received bytes, optionally fsync file and folder, return Success.

    Parameters
    ----------
    port : int
        Port on 127.0.0.1.
    folder : Path
        Where instances are written (``<SOPInstanceUID>.dcm``).
    fsync : bool
        fsync the file and the folder before Success (the node's durability).
    """
    from pynetdicom import AE, evt
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from dicom_node.server import ACCEPTED_TRANSFER_SYNTAXES
    from pipeline.loading import SECONDARY_CAPTURE_SOP_CLASSES, ULTRASOUND_SOP_CLASSES

    folder.mkdir(parents=True, exist_ok=True)

    def on_established(event: evt.Event) -> None:
        sock = getattr(event.assoc.dul.socket, "socket", None)
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_store(event: evt.Event) -> int:
        target = folder / f"{cast(C_STORE, event.request).AffectedSOPInstanceUID}.dcm"
        with open(target, "wb") as fh:
            fh.write(event.encoded_dataset(include_meta=True))
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if fsync:
            _fsync_dir(folder)
        return 0x0000

    ae = AE(ae_title="BARE")
    ae.maximum_pdu_size = 0  # as the node ships (max_pdu: 0)
    ae.maximum_associations = 64
    ae.add_supported_context(Verification)
    for uid in sorted(ULTRASOUND_SOP_CLASSES | SECONDARY_CAPTURE_SOP_CLASSES):
        ae.add_supported_context(uid, ACCEPTED_TRANSFER_SYNTAXES)
    ae.start_server(("127.0.0.1", port), block=True,
                    evt_handlers=[(evt.EVT_C_STORE, on_store), (evt.EVT_ESTABLISHED, on_established)])


# -- receivers -----------------------------------------------------------------------
@dataclass(frozen=True)
class Running:
    """A started receiver: where to send, and how many instances it holds."""

    port: int
    ae_title: str
    count: Callable[[], int]


def _stop(process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, port: int, *, env: dict[str, str] | None = None, ready: Callable[[], bool] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO)
        try:
            def up() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"{cmd[0]} exited with {process.returncode}; see {log}")
                return (ready or (lambda: port_open(port)))()

            wait_for(up, timeout=90, interval=0.1, what=f"{Path(cmd[0]).name} listening")
            yield process
        finally:
            _stop(process)


def _node_config(folder: Path, port: int, quiet_seconds: float, destination: tuple[str, int] | None) -> Path:
    lines = [
        "version: 1",
        "ae_title: MSKUS",
        f"port: {port}",
        f"data_dir: '{folder / 'data'}'",
        f"quiet_seconds: {quiet_seconds}",
    ]
    if destination is not None:
        lines += ["destinations:", f"  - {{ae_title: ORTHANC, host: 127.0.0.1, port: {destination[1]}}}"]
    path = folder / "node.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def node(folder: Path, *, quiet_seconds: float = 10.0, destination: tuple[str, int] | None = None) -> Iterator[Running]:
    """The node (as ``mskus serve`` runs it: :func:`run_node`) with a fresh data folder (no destination unless given)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _node_config(folder, port, quiet_seconds, destination)
    index = folder / "data" / "index.sqlite3"

    def count() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{index}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    with _process([sys.executable, str(Path(__file__).resolve()), "--node", str(config)], folder / "node.log", port) as process:
        _wait_for_idle_children(process.pid)  # a running node's analysis worker is up before traffic, as in service
        yield Running(port, "MSKUS", count)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _wait_for_idle_children(pid: int, *, timeout: float = 60.0) -> None:
    """Wait until process ``pid`` has an analysis worker process (multiprocessing spawn) that has stopped using CPU."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if not children.exists():  # not Linux: give the worker a moment instead
        time.sleep(5)
        return

    def worker() -> int | None:
        for child in children.read_text().split():
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():  # not multiprocessing's resource tracker
                    return int(child)
        return None

    child = int(str(wait_for(worker, timeout=timeout, what="node worker started")))
    deadline = time.monotonic() + timeout
    previous = -1
    while time.monotonic() < deadline:
        ticks = _cpu_ticks(child)
        if ticks == previous:
            return
        previous = ticks
        time.sleep(0.5)


def run_node(config_path: Path) -> None:
    """What ``mskus serve --config FILE`` runs (same logging: INFO lines on stderr), without the CLI's imports.

    The benchmark starts the node this way so that it measures the node
    alone, whatever state the rest of the application is in.
    """
    from dicom_node.config import check_exposure, load_node_config
    from dicom_node.server import StorageNode

    config = load_node_config(config_path)
    check_exposure(config)
    logging.getLogger("mskus").setLevel(logging.INFO)
    StorageNode(config).serve_forever()


@contextlib.contextmanager
def bare(folder: Path, *, fsync: bool) -> Iterator[Running]:
    """The bare pynetdicom SCP of :func:`run_bare_scp` in its own process."""
    port = free_port()
    out = folder / "store"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-scp", str(port), str(out)] + ([] if fsync else ["--no-fsync"])
    folder.mkdir(parents=True, exist_ok=True)
    with _process(cmd, folder / "bare.log", port):
        yield Running(port, "BARE", lambda: sum(1 for _ in out.glob("*.dcm")))


def _storescp(folder: Path) -> contextlib.AbstractContextManager[Running]:
    @contextlib.contextmanager
    def run() -> Iterator[Running]:
        port = free_port()
        out = folder / "store"
        out.mkdir(parents=True, exist_ok=True)
        with _process([tool("storescp"), "-aet", "STORESCP", "-od", str(out), str(port)], folder / "storescp.log", port, env=DCMTK_ENV):
            yield Running(port, "STORESCP", lambda: sum(1 for p in out.iterdir() if p.is_file()))

    return run()


class Orthanc:
    """Orthanc on loopback with a temporary configuration, storage and index."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http_port = free_port()
        self.dicom_port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = {
            "Name": "mskus-bench",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "index"),
            "HttpPort": self.http_port,
            "DicomAet": "ORTHANC",
            "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "StorageCompression": False,
            "SyncStorageArea": True,  # fsync of each stored file (its default); its index runs SQLite synchronous=NORMAL
            "TcpNoDelay": True,
            "Plugins": [],
        }
        (folder / "orthanc.json").write_text(json.dumps(self.config))

    def get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, body: object) -> object:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def count(self) -> int:
        stats = self.get("/statistics")
        assert isinstance(stats, dict)
        return int(stats["CountInstances"])

    def _ready(self) -> bool:
        try:
            self.get("/system")
        except OSError:
            return False
        return port_open(self.dicom_port)

    @contextlib.contextmanager
    def running(self) -> Iterator[Running]:
        cmd = [tool("Orthanc"), str(self.folder / "orthanc.json")]
        with _process(cmd, self.folder / "orthanc.log", self.dicom_port, env=DCMTK_ENV, ready=self._ready):
            yield Running(self.dicom_port, "ORTHANC", self.count)


def receiver(name: str, folder: Path) -> contextlib.AbstractContextManager[Running]:
    """A fresh receiver called ``name`` (one of :data:`RECEIVERS`) with its storage in ``folder``."""
    if name == "node":
        return node(folder)
    if name == "bare_fsync":
        return bare(folder, fsync=True)
    if name == "bare":
        return bare(folder, fsync=False)
    if name == "orthanc":
        return Orthanc(folder).running()
    if name == "storescp":
        return _storescp(folder)
    raise ValueError(f"unknown receiver {name!r}")


def storescu(port: int, called: str, files: list[Path]) -> float:
    """Send ``files`` in one association with DCMTK ``storescu``; seconds from start to exit.

    Raises
    ------
    RuntimeError
        ``storescu`` exited non-zero.
    """
    cmd = [tool("storescu"), "-aet", "BENCHSCU", "-aec", called, "127.0.0.1", str(port), *map(str, files)]
    started = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **DCMTK_ENV}, timeout=600)
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"storescu to {called} exited {run.returncode}: {run.stderr.strip().splitlines()[-1:]}")
    return seconds


def measure_ingest(files: list[Path], work: Path, rounds: int, names: tuple[str, ...]) -> list[IngestRun]:
    """Every receiver in turn, ``rounds`` times, each started fresh; every run checked complete."""
    runs = []
    for number in range(1, rounds + 1):
        for name in names if number % 2 else tuple(reversed(names)):  # alternate the order: no receiver always runs first
            folder = work / f"{name}-{number}"
            with receiver(name, folder) as target:
                seconds = storescu(target.port, target.ae_title, files)
                wait_for(lambda: target.count() >= len(files), timeout=30, what=f"{name} holding every instance")  # noqa: B023
                held = target.count()
            shutil.rmtree(folder, ignore_errors=True)
            run = IngestRun(name, number, held, seconds)
            runs.append(run)
            logger.info("round %d %-10s %4d instances %6.2f s %7.1f instances/s", number, name, held, seconds, run.rate)
    return runs


# -- latency -------------------------------------------------------------------------
def _sample_study(source: Path, folder: Path) -> tuple[Path, str]:
    """A copy of a sample file as a study of its own (new study, series and SOP instance UIDs)."""
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    target = folder / f"{source.stem}-{ds.StudyInstanceUID[-8:]}.dcm"
    ds.save_as(target, enforce_file_format=True)
    return target, str(ds.StudyInstanceUID)


def measure_latency(work: Path, quiet_seconds: float, sources: list[Path]) -> list[LatencyRun]:
    """Each sample study sent to a node that sends its results to Orthanc; last C-STORE to SR in Orthanc."""
    folder = work / "latency"
    folder.mkdir(parents=True, exist_ok=True)
    orthanc = Orthanc(folder / "orthanc")
    runs = []
    with orthanc.running() as pacs, node(folder / "node", quiet_seconds=quiet_seconds, destination=("ORTHANC", pacs.port)) as mskus:
        for number, source in enumerate(sources):
            path, study_uid = _sample_study(source, folder)
            storescu(mskus.port, mskus.ae_title, [path])
            sent = time.perf_counter()

            def sr_stored() -> bool:
                found = orthanc.post("/tools/find", {"Level": "Series", "Query": {"StudyInstanceUID": study_uid, "Modality": "SR"}})  # noqa: B023
                return bool(found)

            wait_for(sr_stored, timeout=120, interval=0.02, what=f"SR of {source.name} in Orthanc")
            run = LatencyRun(study_uid, source.name, number == 0, time.perf_counter() - sent)
            runs.append(run)
            logger.info("latency %-22s %s %.2f s (quiet period %.1f s)", source.name, "cold" if run.cold else "warm", run.seconds, quiet_seconds)
    return runs


# -- main ----------------------------------------------------------------------------
def _environment() -> dict[str, object]:
    import pynetdicom

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except OSError:
            return "missing"
        return out.strip().splitlines()[0] if out.strip() else "unknown"

    return {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "dcmtk": version([tool("storescu"), "--version"]),
        "orthanc": version([tool("Orthanc"), "--version"]),
        "platform": platform.platform(),
    }


def summarise(runs: list[IngestRun]) -> dict[str, ReceiverSummary]:
    """Median and best instances/s per receiver, with every run."""
    out = {}
    for name in dict.fromkeys(r.receiver for r in runs):
        mine = sorted((r for r in runs if r.receiver == name), key=lambda r: r.round)
        out[name] = ReceiverSummary(
            name,
            tuple(round(r.rate, 1) for r in mine),
            round(statistics.median(r.rate for r in mine), 1),
            round(max(r.rate for r in mine), 1),
            tuple(round(r.seconds, 3) for r in mine),
        )
    return out


def node_ratios(runs: list[IngestRun], receivers: dict[str, ReceiverSummary]) -> dict[str, Ratio]:
    """The node against every other receiver: per round (runs close in time share the machine's load), median, best."""
    if "node" not in receivers:
        return {}
    node_rate = {r.round: r.rate for r in runs if r.receiver == "node"}
    out = {}
    for other in receivers:
        if other == "node":
            continue
        per_round = tuple(round(node_rate[r.round] / r.rate, 3) for r in runs if r.receiver == other and r.round in node_rate)
        out[other] = Ratio(other, per_round, round(statistics.median(per_round), 3),
                           round(receivers["node"].best_rate / receivers[other].best_rate, 3))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=400, help="files sent to each receiver (300-500 in the issue)")
    parser.add_argument("--rounds", type=int, default=9, help="runs per receiver, interleaved")
    parser.add_argument("--receivers", default=",".join(RECEIVERS), help="comma-separated subset of " + ", ".join(RECEIVERS))
    parser.add_argument("--quiet-seconds", type=float, default=2.0, help="the node's quiet period in the latency runs")
    parser.add_argument("--latency-studies", type=int, default=4, help="sample studies sent for the latency (first is cold)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one on /tmp's disk)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "ingest.json")
    parser.add_argument("--bare-scp", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--no-fsync", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--node", type=Path, metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s" if args.node else "%(message)s")
    if args.bare_scp:
        run_bare_scp(int(args.bare_scp[0]), Path(args.bare_scp[1]), fsync=not args.no_fsync)
        return 0
    if args.node:
        run_node(args.node)
        return 0
    names = tuple(n.strip() for n in args.receivers.split(",") if n.strip())
    unknown = set(names) - set(RECEIVERS)
    if unknown:
        parser.error(f"unknown receiver(s) {', '.join(sorted(unknown))}")
    environment = _environment()
    with tempfile.TemporaryDirectory(prefix="mskus-ingest-", dir=args.work) as scratch:
        work = Path(scratch)
        files = make_files(work / "files", args.files)
        mean_bytes = int(statistics.mean(p.stat().st_size for p in files))
        logger.info("%d files, %d bytes each on average; %d round(s) of %s", len(files), mean_bytes, args.rounds, ", ".join(names))
        runs = measure_ingest(files, work / "runs", args.rounds, names)
        latency: list[LatencyRun] = []
        if not args.no_latency:
            # uncompressed sample studies (storescu proposes what a file holds; JPEG would need -xy)
            sources = [p for p in sorted((REPO / "sample_data").glob("0[1-6]_*.dcm")) if "jpeg" not in p.name]
            latency = measure_latency(work, args.quiet_seconds, [sources[i % len(sources)] for i in range(args.latency_studies)])
    receivers = summarise(runs)
    ratios = node_ratios(runs, receivers)
    warm = [r.seconds for r in latency if not r.cold]
    target = args.quiet_seconds + 2.0
    report = IngestReport(
        files=len(files),
        mean_file_bytes=mean_bytes,
        studies=20,
        rounds=args.rounds,
        receivers=receivers,
        ratios=ratios,
        target_node_vs_bare_fsync=0.9,
        latency_quiet_seconds=args.quiet_seconds,
        latency_target_seconds=target,
        latency=tuple(latency),
        latency_warm_max=round(max(warm), 3) if warm else None,
        latency_met=bool(latency) and all(r.seconds <= target for r in latency),
        environment=environment,
        notes=(
            "one storescu association per run, all files; wall time of storescu from start to exit",
            "node and bare SCPs: pynetdicom, max PDU unlimited; orthanc and storescp: their default max PDU (16 KB)",
            "durability: node fsyncs file and folder before Success, its index row follows on the indexer thread "
            "(not synced: rebuilt from the inbox after a crash); bare_fsync fsyncs file and folder; orthanc fdatasyncs each file, "
            "written in place under its final name (SyncStorageArea; no rename, no folder fsync: strace), with its index "
            "at SQLite synchronous=NORMAL; bare and storescp do not fsync",
            "node runs are timed once the node's analysis worker process has started (mskus serve starts it at once)",
        ),
    )
    for name, summary in receivers.items():
        logger.info("%-10s median %7.1f  best %7.1f instances/s  (runs: %s)", name, summary.median_rate, summary.best_rate,
                    ", ".join(f"{r:.1f}" for r in summary.rates))
    for name, ratio in ratios.items():
        logger.info("node / %-10s median of rounds %.3f  best / best %.3f  (rounds: %s)", name, ratio.median, ratio.best,
                    ", ".join(f"{r:.2f}" for r in ratio.per_round))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    logger.info("wrote %s", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
