"""``make demo``: the main job end to end on the bundled sample studies.

1. A stand-in PACS (a pynetdicom Storage SCP) listens on 127.0.0.1.
2. The mskus storage node starts with that PACS as its destination.
3. Every file of ``sample_data/`` is sent to the node by C-STORE (in its own
   transfer syntax: JPEG Baseline and RLE stay compressed).
4. The node analyses each study once it is quiet and sends the SR back.
5. The SRs the PACS received are printed as ``mskus sr show`` does, with the
   sample file names in place of the SOP Instance UIDs the node knows them by,
   in lines that fit a 100-column terminal (``mskus sr show --json FILE`` on a
   received SR has every detail).

Run with ``python -m mskus.demo [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.transport import ThreadedAssociationServer

from dicom_node.config import AllowedPeer, Destination, NodeConfig, SendPolicy
from dicom_node.server import StorageNode
from mskus.commands.sr import TERMINAL_WIDTH, format_table
from pipeline.sr.reader import read_measurement_report

REPO = Path(__file__).resolve().parents[1]
logger = logging.getLogger("mskus.demo")
#: The demo's sending AE: the only caller the node accepts (an empty allow-list would accept anyone).
DEMO_SCU = "DEMOSCU"


def _start_pacs(folder: Path) -> tuple[ThreadedAssociationServer, int, list[Path]]:
    received: list[Path] = []
    lock = threading.Lock()

    def on_store(event: evt.Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        path = folder / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with lock:
            received.append(path)
        return 0x0000

    ae = AE(ae_title="DEMOPACS")
    ae.supported_contexts = AllStoragePresentationContexts
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert server is not None  # block=False returns the server
    return server, int(server.server_address[1]), received


def _send_study_files(port: int, files: list[Path]) -> None:
    ae = AE(ae_title=DEMO_SCU)
    datasets = [pydicom.dcmread(f) for f in files]
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", port, ae_title="MSKUS")
    if not assoc.is_established:
        raise SystemExit("demo: the node refused the association")
    try:
        for path, ds in zip(files, datasets):
            status = assoc.send_c_store(ds)
            print(f"sent {path.name}: status 0x{int(status.Status):04X}")
    finally:
        assoc.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mskus demo: PACS -> node -> analysis -> SR back to the PACS")
    parser.add_argument("--out", type=Path, default=REPO / "demo-out", help="working folder (recreated)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the reports")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "pacs").mkdir(parents=True)
    files = sorted((REPO / "sample_data").glob("*.dcm"))
    headers = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
    studies = {ds.StudyInstanceUID for ds in headers.values()}
    # The node only knows the images by SOP Instance UID; the demo knows which sample file each was.
    sample_names = {str(ds.SOPInstanceUID): f.name for f, ds in headers.items()}

    pacs, pacs_port, received = _start_pacs(args.out / "pacs")
    config = NodeConfig(
        port=0,
        data_dir=args.out / "node",
        quiet_seconds=1.0,
        allow=(AllowedPeer(DEMO_SCU, "127.0.0.1"),),
        destinations=(Destination("DEMOPACS", "127.0.0.1", pacs_port),),
        send=SendPolicy(backoff_seconds=1.0),
    )
    node = StorageNode(config, poll_seconds=0.2)
    node.start()
    try:
        print(f"node MSKUS listening on 127.0.0.1:{node.port}; PACS DEMOPACS on 127.0.0.1:{pacs_port}")
        _send_study_files(node.port, files)
        deadline = time.time() + args.timeout
        while time.time() < deadline:
            srs = [p for p in received if p.name.startswith("SR_")]
            if len(srs) >= len(studies):
                break
            time.sleep(0.5)
        else:
            print(f"demo: only {len(received)} report(s) came back within {args.timeout:.0f} s", file=sys.stderr)
            return 1
    finally:
        node.stop()
        pacs.shutdown()
    for path in sorted(p for p in received if p.name.startswith("SR_")):
        print(f"\n== SR received by the PACS: {path.name}")
        for line in format_table(read_measurement_report(path), width=TERMINAL_WIDTH, image_names=sample_names):
            print(line)
    print("\nEvery field of a report: .venv/bin/mskus sr show --json FILE")
    print(f"The reports the PACS received: {args.out / 'pacs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
