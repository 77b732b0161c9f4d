"""QA review web page (``mskus review``): a real browser, the node archive, bad requests, login.

The browser test drives Debian's Chromium through Playwright (never a
downloaded browser): list, filter, open a study, reject one measurement, sign
off; the verified SR must be dciodvfy-clean, hold exactly the accepted values
and point to the automated SR. A screenshot of the study page is kept in
``test-artifacts/``.
"""

from __future__ import annotations

import html
import json
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from pipeline.sr.reader import read_measurement_report
from tests.conftest import REPO, SAMPLE_DATA, require_library, require_tool

ARTIFACTS = REPO / "test-artifacts"
NERVE = SAMPLE_DATA / "01_nerve_mono.dcm"
MUSCLE = SAMPLE_DATA / "04_muscle_mono.dcm"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _mskus(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mskus", *args], capture_output=True, text=True, input=stdin, timeout=timeout, cwd=REPO
    )


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _dciodvfy_errors(path: Path) -> list[str]:
    dciodvfy = require_tool("dciodvfy", "dicom3tools")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _values(path: Path) -> Counter:
    report = read_measurement_report(path)
    return Counter((g.tracking_uid, m.label, m.value) for g, m in report.all_measurements())


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> Path:
    """``mskus analyze --out``: one nerve study (01) and one muscle study (04), overlays, SRs, results.json."""
    out = tmp_path_factory.mktemp("analyzed") / "out"
    result = _mskus("analyze", str(NERVE), str(MUSCLE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("SR_*.dcm"))) == 2
    return out


@pytest.fixture
def out_dir(analyzed, tmp_path) -> Path:
    """A private copy of the analysed OUT_DIR."""
    return Path(shutil.copytree(analyzed, tmp_path / "out"))


def _client(source, **kwargs):
    from qa_review.app import create_app

    app = create_app(source, **kwargs)
    app.testing = True
    return app.test_client()


def _form_for(client, study_uid: str) -> dict[str, str]:
    """The sign-off form of a study page as a browser would post it (every finding accepted)."""
    page = client.get(f"/study/{study_uid}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    form = {"csrf_token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)}
    form["automated_sr"] = re.search(r'name="automated_sr" value="([^"]+)"', html).group(1)
    form["version"] = re.search(r'name="version" value="([^"]+)"', html).group(1)
    for finding_id in dict.fromkeys(re.findall(r'name="decision-([^"]+)"', html)):
        form[f"decision-{finding_id}"] = "accept"
    form.update(reviewer="QA^Tester", organisation="mskus test lab")
    return form


# -- the browser ------------------------------------------------------------------
def test_browser_reviews_rejects_one_measurement_and_signs_off(out_dir, tmp_path):
    chromium = require_tool("chromium", "chromium")
    dsrdump = require_tool("dsrdump", "dcmtk")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python package 'playwright' missing: pip install -e '.[test]' (make test does this)")
    require_library("atomic", "libatomic1", "Playwright's bundled driver")

    nerve_study, muscle_study = _study_uid(NERVE), _study_uid(MUSCLE)
    automated = out_dir / f"SR_{nerve_study}.dcm"
    server = subprocess.Popen(
        [sys.executable, "-m", "mskus", "review", "--out", str(out_dir), "--port", "0", "--organisation", "mskus test lab",
         "--images", str(SAMPLE_DATA)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "mskus review printed no address"
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        problems: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)

            page.goto(url)
            rows = page.locator("tr.study")
            assert rows.count() == 2
            assert page.locator(f'tr[data-study="{nerve_study}"] td.review-state .badge').inner_text() == "automated"
            assert "MSKUS, ANNA" in page.locator(f'tr[data-study="{nerve_study}"] td.patient').inner_text()
            page.select_option('select[name="protocol"]', "nerve")
            page.click("#filters button[type=submit]")
            page.wait_for_load_state()
            assert [rows.nth(i).get_attribute("data-study") for i in range(rows.count())] == [nerve_study]

            page.click(f'tr[data-study="{nerve_study}"] a.review')
            page.wait_for_load_state("networkidle")
            images = page.locator("figure.viewer canvas.image")
            images.first.wait_for()
            assert images.count() >= 1
            assert all(page.evaluate("(c) => c.width > 0", images.nth(i).element_handle()) for i in range(images.count()))
            assert page.locator('input[type="radio"]:checked').count() == 0  # nothing pre-selected
            overflowing = page.evaluate(
                "() => [...document.querySelectorAll('main *')].filter(e => e.scrollWidth > e.clientWidth + 1"
                " && getComputedStyle(e).overflow === 'visible' && e.clientWidth > 0 && !['CANVAS','svg','IMG'].includes(e.tagName))"
                ".map(e => e.tagName + '.' + e.className)"
            )
            assert overflowing == [], overflowing
            assert page.evaluate("() => document.documentElement.scrollWidth <= 1400")
            assert "Confidence" in page.inner_text("main") and "0.0800" in page.inner_text("main")  # mm/px of 01
            ARTIFACTS.mkdir(exist_ok=True)
            shot = tmp_path / "review_study_page.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, ARTIFACTS / "review_study_page.png")

            page.fill("#reviewer", "QA^Tester")
            page.click("#sign-off")  # nothing decided: refused, nothing written
            page.wait_for_load_state("networkidle")
            assert "no decision for finding" in page.inner_text("#error")
            assert not (out_dir / "verified").exists()
            page.go_back()
            page.wait_for_load_state("networkidle")
            contour = page.locator("fieldset.finding", has_text="Area").first
            rejected_id = contour.get_attribute("data-finding")
            contour.locator('input[value="reject"]').check()
            contour.locator("select").select_option("contour or caliper misplaced")
            contour.locator("input.comment").fill("contour includes the vessel wall")
            page.fill("#reviewer", "QA^Tester")
            page.fill("#comment", "reviewed by the browser test")
            page.click("#accept-remaining")
            page.wait_for_load_state("networkidle")
            assert "Signed off by QA^Tester" in page.inner_text("#signed")
            assert page.inner_text("#status") == "verified"
            assert "contour includes the vessel wall" in page.inner_text("#history")
            page.goto(url + "?status=verified")
            assert [rows.nth(i).get_attribute("data-study") for i in range(rows.count())] == [nerve_study]
            browser.close()
        assert [p for p in problems if "400" not in p] == []  # the refused sign-off was a 400
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)

    verified = out_dir / "verified" / f"SR_{nerve_study}_verified_1.dcm"
    assert verified.is_file()
    assert _dciodvfy_errors(verified) == []
    assert subprocess.run([dsrdump, str(verified)], capture_output=True, timeout=60).returncode == 0
    report = read_measurement_report(verified)
    before = read_measurement_report(automated)
    assert report.verification_flag == "VERIFIED"
    assert report.predecessors == (before.sop_instance_uid,)
    assert report.study_instance_uid == nerve_study and report.series_instance_uid != before.series_instance_uid
    assert rejected_id == "g1"
    contour = [(g.tracking_uid, m.label, m.value) for g, m in before.all_measurements() if g is before.groups[0]]
    assert len(contour) >= 5  # area, perimeter, axes, echogenicity: one finding
    # The study finding derived from it (sites enlarged, the contour its only input) is recomputed without it: gone.
    derived = [(g.tracking_uid, m.label, m.value) for g, m in before.all_measurements()
               if g is not None and not g.images and m.label == "Nerve sites enlarged"]
    assert _values(verified) == _values(automated) - Counter(contour) - Counter(derived)
    notes = [n.value for n in report.notes]
    assert any("study findings recomputed" in n and "removed" in n for n in notes)
    assert any(n.startswith("rejected by QA^Tester: nerve contour") and "contour or caliper misplaced" in n
               and "contour includes the vessel wall" in n for n in notes)
    assert "reviewed by the browser test" in notes
    ds = pydicom.dcmread(verified)
    observer = ds.VerifyingObserverSequence[0]
    assert str(observer.VerifyingObserverName) == "QA^Tester"
    assert observer.VerifyingOrganization == "mskus test lab" and len(observer.VerificationDateTime) >= 14
    assert ds.PreliminaryFlag == "FINAL" and ds.CompletionFlag == "COMPLETE"
    events = [json.loads(line) for line in (out_dir / "audit.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert "review_opened" in kinds and "measurement_rejected" in kinds
    signed = next(e for e in events if e["event"] == "review_signed_off")
    assert signed["rejected"] == "g1" and signed["verified_sr"] == report.sop_instance_uid
    assert not (out_dir / "verified" / f"SR_{muscle_study}_verified_1.dcm").exists()


# -- bad requests -----------------------------------------------------------------
def test_bad_requests_get_clear_4xx_pages_and_change_nothing(out_dir):
    from qa_review.outdir import OutDirSource
    from qa_review.server import LOOPBACK_NAMES

    study = _study_uid(NERVE)
    client = _client(OutDirSource(out_dir), allowed_hosts=LOOPBACK_NAMES)
    good = _form_for(client, study)  # opening the page is audited: snapshot after it
    before = _snapshot(out_dir)

    def post(changes: dict[str, str | None], where: str = study):
        form = {k: v for k, v in {**good, **changes}.items() if v is not None}
        return client.post(f"/study/{where}/signoff", data=form)

    cases = [
        (client.get("/study/1.2.3.999"), 404, "there is no study 1.2.3.999"),
        (post({}, where="1.2.3.999"), 404, "there is no study"),
        (post({"csrf_token": "forged"}), 403, "form token"),
        (post({"csrf_token": None}), 403, "form token"),
        (post({"decision-g9": "reject"}), 400, "finding 'g9' is not in the report under review"),
        (post({"decision-g1": None}), 400, "no decision for finding g1"),
        (post({"decision-g1": "maybe"}), 400, "must be 'accept', 'reject' or 'correct'"),
        (post({"decision-g1": "reject"}), 400, "choose why finding g1"),
        (post({"decision-g1": "reject", "reason-g1": "other"}), 400, "say in the comment why"),
        (post({"decision-g1": "correct"}), 400, "no corrected region was drawn"),
        (post({"decision-g1": "correct", "points-g1": "[[1, 2]]"}), 422, "needs at least 3 points"),
        (post({"version": "1.2.3"}), 409, "no longer current"),
        (post({"reviewer": ""}), 400, "reviewer name is required"),
        (post({"reviewer": "   "}), 400, "reviewer name is required"),
        (post({"reviewer": "Back\\slash"}), 400, "backslashes"),
        (post({"organisation": ""}), 400, "organisation is required"),
        (post({"automated_sr": "1.2.3.4"}), 409, "changed since the page was loaded"),
        (client.get(f"/study/{study}/frame/1.2.3/1.png"), 404, "no such analysed frame"),
        (client.get("/?date_from=yesterday"), 400, "must be a date"),
        (client.get("/?status=lost"), 400, "unknown status"),
        (client.get("/", headers={"Host": "evil.example:80"}), 400, "unexpected Host header"),
    ]
    for response, status, text in cases:
        body = html.unescape(response.get_data(as_text=True))
        assert response.status_code == status, body
        assert text in body
        assert "Nothing was changed" in body
    assert _snapshot(out_dir) == before

    # The same form, untampered, is accepted: the refusals above were for their stated reasons.
    done = post({})
    assert done.status_code == 303
    assert (out_dir / "verified" / f"SR_{study}_verified_1.dcm").is_file()


def test_second_signoff_supersedes_the_first_and_rejecting_everything_stays_valid(out_dir):
    from qa_review.outdir import OutDirSource

    study = _study_uid(MUSCLE)
    client = _client(OutDirSource(out_dir))
    first = _form_for(client, study)
    assert client.post(f"/study/{study}/signoff", data=first).status_code == 303
    second = _form_for(client, study)
    assert second["version"] == read_measurement_report(out_dir / "verified" / f"SR_{study}_verified_1.dcm").sop_instance_uid
    second.update({k: "reject" for k in second if k.startswith("decision-")})
    second.update({f"reason-{k[len('decision-'):]}": "wrong structure" for k in list(second) if k.startswith("decision-")})
    assert client.post(f"/study/{study}/signoff", data=second).status_code == 303
    one, two = out_dir / "verified" / f"SR_{study}_verified_1.dcm", out_dir / "verified" / f"SR_{study}_verified_2.dcm"
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    first_uid = read_measurement_report(one).sop_instance_uid
    assert read_measurement_report(two).predecessors == (automated.sop_instance_uid, first_uid)
    assert not list(read_measurement_report(two).all_measurements())
    assert len([n for n in read_measurement_report(two).notes if n.value.startswith("rejected by ")]) == len(
        [g for g in automated.groups if g.measurements]
    )
    assert _dciodvfy_errors(two) == []
    listing = client.get("/?status=verified").get_data(as_text=True)
    assert f'data-study="{study}"' in listing


def test_batch_out_dir_shows_its_overlays_tables_and_errors(tmp_path):
    from qa_review.outdir import OutDirSource

    images = tmp_path / "in" / "P1"
    images.mkdir(parents=True)
    for name in ("04_muscle_mono.dcm", "08_muscle_uncalibrated.dcm"):  # one study, one image uncalibrated
        shutil.copy(SAMPLE_DATA / name, images / name)
    out = tmp_path / "batch-out"
    result = _mskus("batch", str(tmp_path / "in"), "--out", str(out), "--workers", "1")
    assert result.returncode == 0, result.stderr
    study = _study_uid(MUSCLE)
    client = _client(OutDirSource(out))
    assert f'data-study="{study}"' in client.get("/?protocol=muscle&date_from=2000-01-01").get_data(as_text=True)
    assert f'data-study="{study}"' not in client.get("/?protocol=nerve").get_data(as_text=True)
    page = html.unescape(client.get(f"/study/{study}").get_data(as_text=True))
    assert "R RECTUS FEMORIS" in page and "L RECTUS FEMORIS" in page  # series descriptions from measurements.csv
    assert "mm values not reported" in page  # errors.csv / the SR's note on the uncalibrated image
    assert "uncalibrated" in page
    sop = str(pydicom.dcmread(MUSCLE, stop_before_pixels=True).SOPInstanceUID)
    png = client.get(f"/study/{study}/frame/{sop}/1.png")
    assert png.status_code == 200
    assert png.data == (out / "overlays" / study / f"{sop}_frame0001.png").read_bytes()
    assert client.post(f"/study/{study}/signoff", data=_form_for(client, study)).status_code == 303
    verified = out / "verified" / f"SR_{study}_verified_1.dcm"
    assert _values(verified) == _values(out / f"SR_{study}.dcm")
    assert _dciodvfy_errors(verified) == []


def test_verified_sr_of_a_partial_report_is_complete_and_keeps_the_unmeasured_images(tmp_path):
    from pipeline.analysis import ImageResult
    from tests.analysis_helpers import analyze_image
    from pipeline.loading import load_ultrasound
    from pipeline.sr.sop import build_measurement_report
    from pipeline.sr.sources import header_dataset
    from qa_review.findings import findings_of
    from qa_review.items import reviewable_report
    from qa_review.model import Decision, FindingDecision, SignOff
    from qa_review.verified import PARTIAL_NOTE, build_verified_report

    image = load_ultrasound(NERVE)
    broken = pydicom.dcmread(SAMPLE_DATA / "02_nerve_rgb.dcm", stop_before_pixels=True)  # same study as 01
    refused = ImageResult(
        source_file="02_nerve_rgb.dcm", sop_instance_uid=str(broken.SOPInstanceUID), sop_class_uid=str(broken.SOPClassUID),
        study_instance_uid=str(broken.StudyInstanceUID), series_instance_uid=str(broken.SeriesInstanceUID),
        error="pixel data cannot be decoded", error_code="undecodable",
    )
    automated = build_measurement_report([analyze_image(image), refused], [header_dataset(image.dataset), header_dataset(broken)])
    assert automated.CompletionFlag == "PARTIAL"
    findings = findings_of(reviewable_report(automated))
    signoff = SignOff(
        study_uid=str(automated.StudyInstanceUID), automated_sr_uid=str(automated.SOPInstanceUID),
        reviewer="Müller^Jörg", organisation="QA Zürich", comment="",
        decisions=tuple(FindingDecision(f.id, Decision.ACCEPT) for f in findings),
    )
    path = tmp_path / "verified.dcm"
    build_verified_report(automated, signoff).save_as(path, enforce_file_format=True)
    assert _dciodvfy_errors(path) == []
    ds = pydicom.dcmread(path)
    assert (ds.CompletionFlag, ds.CompletionFlagDescription, ds.VerificationFlag) == ("COMPLETE", PARTIAL_NOTE, "VERIFIED")
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Müller^Jörg"  # stored as UTF-8
    notes = [n.value for n in read_measurement_report(path).notes]
    assert any("02_nerve_rgb.dcm" in n and "cannot be decoded" in n for n in notes)
    kept = [m for _, m in read_measurement_report(path).all_measurements()]
    # Accepted as is: every value, and each group's confidence (not a reviewable item: the frame's confidence).
    assert [m.label for m in kept if m.label != "Confidence"] == [i.name for f in findings for i in f.items]
    assert sum(m.label == "Confidence" for m in kept) == len(findings)


# -- the node archive -------------------------------------------------------------
def test_node_archive_signoff_is_archived_queued_and_delivered_by_the_node(tmp_path):
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from dicom_node.config import Destination, NodeConfig, SendPolicy
    from dicom_node.index import OutboxState
    from dicom_node.server import StorageNode
    from qa_review.archive import ArchiveSource

    received: list[pydicom.Dataset] = []

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    pacs = AE(ae_title="PACS")
    pacs.supported_contexts = AllStoragePresentationContexts
    port = _free_port()
    scp = pacs.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    config = replace(
        NodeConfig(port=0, data_dir=tmp_path / "node", quiet_seconds=0.3),
        destinations=(Destination("PACS", "127.0.0.1", port),),
        send=SendPolicy(max_attempts=5, backoff_seconds=0.2, max_backoff_seconds=1.0),
    )
    node = StorageNode(config, poll_seconds=0.1)
    node.start()
    try:
        scu = AE(ae_title="TESTSCU")
        scu.add_requested_context("1.2.840.10008.5.1.4.1.1.6.1", ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", node.port, ae_title="MSKUS")
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(MUSCLE)).Status == 0
        assoc.release()
        _wait_for(lambda: len(received) == 1)
        _wait_for(lambda: [o.state for o in node.index.outbox()] == [OutboxState.SENT])
        study = _study_uid(MUSCLE)

        client = _client(ArchiveSource(tmp_path / "node"))
        listing = client.get("/").get_data(as_text=True)
        assert re.search(rf'data-study="{study}".*?badge sent', listing, re.S)
        page = client.get(f"/study/{study}").get_data(as_text=True)
        assert "R RECTUS FEMORIS" in page and "0.1000" in page and "Right" in page
        # No results table in an archive: the frame's confidence is the SR's own (each group's CONFIDENCE NUM).
        confidence = next(m.value for _, m in read_measurement_report(received[0]).all_measurements()
                          if m.label == "Confidence")
        assert f'<dd class="confidence">{confidence:.2f}</dd>' in page
        sop = str(pydicom.dcmread(MUSCLE, stop_before_pixels=True).SOPInstanceUID)
        png = client.get(f"/study/{study}/frame/{sop}/1.png")
        assert png.status_code == 200 and png.data.startswith(b"\x89PNG")

        form = _form_for(client, study)
        thickness = re.search(r'data-finding="(g\d+)" data-kind="caliper"', page).group(1)
        form[f"decision-{thickness}"] = "reject"
        form[f"reason-{thickness}"] = "contour or caliper misplaced"
        form[f"comment-{thickness}"] = "caliper on the wrong fascia"
        assert client.post(f"/study/{study}/signoff", data=form).status_code == 303

        _wait_for(lambda: len(received) == 2)
        verified = received[1]
        assert verified.VerificationFlag == "VERIFIED"
        automated_uid = str(received[0].SOPInstanceUID)
        report = read_measurement_report(verified)
        assert report.predecessors == (automated_uid,)
        automated = read_measurement_report(received[0])
        rejected = automated.groups[int(thickness[1:]) - 1]  # the caliper group, whole (with its confidence)
        assert any(m.label == "Thickness" for m in rejected.measurements)
        assert [m.label for _, m in report.all_measurements()] == [
            m.label for g, m in automated.all_measurements() if g is not rejected
        ]
        item = next(o for o in node.index.outbox() if o.result_uid == str(verified.SOPInstanceUID))
        _wait_for(lambda: next(o for o in node.index.outbox() if o.id == item.id).state is OutboxState.SENT)
        assert item.destination == "PACS@127.0.0.1:" + str(port)
        assert Path(item.path).parent == tmp_path / "node" / "archive" / study
        assert _dciodvfy_errors(Path(item.path)) == []
        assert re.search(rf'data-study="{study}".*?badge verified', client.get("/").get_data(as_text=True), re.S)
        trail = node.index.audit_trail()
        events = [event for _, event, _ in trail]
        assert "review_opened" in events and "review_signed_off" in events and "measurement_rejected" in events
        assert "MSKUS^BERT" not in " ".join(detail for _, _, detail in trail)
    finally:
        node.stop()
        scp.shutdown()


# -- login and binding ------------------------------------------------------------
def test_beyond_loopback_needs_a_login_and_the_login_names_the_reviewer(out_dir, tmp_path):
    refused = _mskus("review", "--out", str(out_dir), "--bind", "0.0.0.0", "--port", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
    assert "without a login" in refused.stderr
    missing = _mskus("review", "--archive", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "index.sqlite3 missing" in missing.stderr

    hashed = _mskus("review", "--hash-password", stdin="s3cret-pass\n")
    assert hashed.returncode == 0 and hashed.stdout.startswith("scrypt:")
    users_file = tmp_path / "users.yaml"
    users_file.write_text(
        "users:\n  alice:\n"
        f"    password: \"{hashed.stdout.strip()}\"\n"
        "    name: Liddell^Alice\n    organisation: QA team\n"
    )
    from qa_review.auth import load_users
    from qa_review.outdir import OutDirSource

    client = _client(OutDirSource(out_dir), users=load_users(users_file))
    assert client.get("/").status_code == 302
    login_page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    wrong = client.post("/login", data={"csrf_token": token, "login": "alice", "password": "nope"})
    assert wrong.status_code == 401 and "wrong login or password" in wrong.get_data(as_text=True)
    assert client.post("/login", data={"login": "alice", "password": "s3cret-pass"}).status_code == 403
    assert client.post("/login", data={"csrf_token": token, "login": "alice", "password": "s3cret-pass"}).status_code == 303
    study = _study_uid(NERVE)
    form = _form_for(client, study)
    form["reviewer"] = "Someone^Else"  # ignored: the login decides who signed
    form["organisation"] = "QA team"
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    ds = pydicom.dcmread(out_dir / "verified" / f"SR_{study}_verified_1.dcm")
    assert str(ds.VerifyingObserverSequence[0].VerifyingObserverName) == "Liddell^Alice"
    events = [json.loads(line) for line in (out_dir / "audit.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events][:2] == ["review_login_failed", "review_login"]
    assert next(e for e in events if e["event"] == "review_opened")["login"] == "alice"
    assert next(e for e in events if e["event"] == "review_signed_off")["login"] == "alice"


def test_study_page_names_each_echogenicity_statistic(out_dir):
    """Viewers that drop the Derivation modifier show three "Echogenicity" values; this page must not."""
    from qa_review.outdir import OutDirSource

    page = _client(OutDirSource(out_dir)).get(f"/study/{_study_uid(MUSCLE)}").get_data(as_text=True)
    names = re.findall(r'<tr class="measurement"[^>]*><td>([^<]+)</td>', page)
    echo = [n for n in names if n.startswith("Echogenicity")]
    assert echo == ["Echogenicity (Mean)", "Echogenicity (Standard Deviation)", "Echogenicity (Median)"]
