"""QA review integrity (issue 21): versions and stale forms, per-finding decisions, corrections, throttling, lists.

Real HTTP through Flask's test client on an OUT_DIR that ``mskus analyze --out`` wrote from
``sample_data/``; the browser test drags a caliper end in Debian's Chromium (Playwright) and checks
the verified SR carries the thickness the pipeline's calibration gives for the new caliper.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.loading import load_ultrasound
from pipeline.sr.reader import read_measurement_report
from tests.conftest import SAMPLE_DATA, require_library, require_tool
from tests.test_review import CHROMIUM_ARGS, MUSCLE, NERVE, _dciodvfy_errors, _form_for, _mskus, _study_uid


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("integrity") / "out"
    result = _mskus("analyze", str(NERVE), str(MUSCLE), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def out_dir(analyzed, tmp_path) -> Path:
    return Path(shutil.copytree(analyzed, tmp_path / "out"))


def _client(out_dir: Path, **kwargs):
    from qa_review.app import create_app
    from qa_review.outdir import OutDirSource

    app = create_app(OutDirSource(out_dir, images_dir=SAMPLE_DATA), **kwargs)
    app.testing = True
    return app.test_client()


def _message(response) -> str:
    return html.unescape(re.search(r'class="message">([^<]*)', response.get_data(as_text=True)).group(1))


def _findings(page: str) -> list[dict]:
    blocks = re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
    return [f for block in blocks for f in json.loads(html.unescape(block))]


def test_stale_form_is_refused_with_who_signed_and_history_shows_both(out_dir):
    study = _study_uid(NERVE)
    alice, bob = _client(out_dir), _client(out_dir)
    form_alice = _form_for(alice, study)
    form_bob = _form_for(bob, study)  # loaded before Alice signs
    form_alice.update({"decision-g1": "reject", "reason-g1": "wrong structure", "comment-g1": "that is the artery",
                       "reviewer": "Liddell^Alice", "organisation": "QA A"})
    assert alice.post(f"/study/{study}/signoff", data=form_alice).status_code == 303

    stale = bob.post(f"/study/{study}/signoff", data={**form_bob, "reviewer": "Builder^Bob"})
    assert stale.status_code == 409
    message = _message(stale)
    assert "Alice Liddell (QA A) signed it off at" in message and "Nothing was saved" in message
    assert len(list((out_dir / "verified").glob("*.dcm"))) == 1

    # Bob reloads: the page starts from Alice's version (her rejection gone from it, shown in the history).
    page = bob.get(f"/study/{study}").get_data(as_text=True)
    first = read_measurement_report(out_dir / "verified" / f"SR_{study}_verified_1.dcm")
    assert re.search(r'name="version" value="([^"]+)"', page).group(1) == first.sop_instance_uid
    history = html.unescape(re.search(r'<section class="history".*?</section>', page, re.S).group(0))
    assert "automated analysis" in history and "Alice Liddell" in history
    assert "wrong structure" in history and "that is the artery" in history
    fresh = _form_for(bob, study)
    # the only image finding (the contour) was rejected, and the study finding derived from it (sites enlarged)
    # was recomputed without it: nothing is left to decide
    assert 'data-kind="contour"' not in page and '<section class="study-findings"' not in page
    assert not {k for k in fresh if k.startswith("decision-")}
    fresh.update(reviewer="Builder^Bob", organisation="QA B")
    assert bob.post(f"/study/{study}/signoff", data=fresh).status_code == 303
    second = read_measurement_report(out_dir / "verified" / f"SR_{study}_verified_2.dcm")
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    assert second.predecessors == (automated.sop_instance_uid, first.sop_instance_uid)
    assert len(second.groups) == len(first.groups)  # Alice's rejection stands
    assert any("that is the artery" in n.value for n in second.notes)
    history = html.unescape(bob.get(f"/study/{study}").get_data(as_text=True))
    assert "Alice Liddell" in history and "Bob Builder" in history


def test_decisions_are_per_finding_nothing_preselected(out_dir):
    study = _study_uid(NERVE)
    client = _client(out_dir)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    radios = re.findall(r'<input type="radio"[^>]*>', page)
    assert radios and not [r for r in radios if "checked" in r]
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    finding_ids = sorted(set(re.findall(r'name="decision-(g\d+)"', page)))
    assert len(finding_ids) == len([g for g in automated.groups if g.measurements])  # one per contour, not per value
    assert len(finding_ids) < len(list(automated.all_measurements()))
    form = _form_for(client, study)
    undecided = {k: v for k, v in form.items() if not k.startswith("decision-")}
    refused = client.post(f"/study/{study}/signoff", data=undecided)
    assert refused.status_code == 400 and "no decision for finding g1" in _message(refused)
    assert not (out_dir / "verified").exists()
    accepted = client.post(f"/study/{study}/signoff", data={**undecided, "accept_remaining": "1"})
    assert accepted.status_code == 303
    events = [json.loads(line) for line in (out_dir / "audit.jsonl").read_text().splitlines()]
    signed = next(e for e in events if e["event"] == "review_signed_off")
    assert signed["accepted"] == ",".join(finding_ids) and signed["version"] == automated.sop_instance_uid


def test_corrected_caliper_is_measured_by_the_pipeline_and_signed_by_the_reviewer(out_dir):
    study = _study_uid(MUSCLE)
    client = _client(out_dir)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    caliper = next(f for f in _findings(page) if f["kind"] == "caliper")
    (x0, y0), (x1, y1) = caliper["points"]
    moved = [[x0, y0], [x1 + 3.0, y1 + 20.0]]
    frame = next(load_ultrasound(MUSCLE).iter_frames([0]))
    expected = frame.calibration.distance_mm(np.array(moved[0]) - 0.5, np.array(moved[1]) - 0.5)

    form = _form_for(client, study)
    preview = client.post(f"/study/{study}/recompute", data={**form, "finding": caliper["id"], "points": json.dumps(moved)})
    assert preview.status_code == 200
    assert preview.get_json()["values"][0]["value"] == pytest.approx(expected, rel=1e-9)
    outside = client.post(f"/study/{study}/recompute",
                          data={**form, "finding": caliper["id"], "points": json.dumps([[x0, y0], [5000, 5000]])})
    assert outside.status_code == 422 and "outside the image" in outside.get_json()["error"]

    form.update({f"decision-{caliper['id']}": "correct", f"points-{caliper['id']}": json.dumps(moved),
                 "reviewer": "Doe^Jane", "organisation": "QA lab"})
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    path = out_dir / "verified" / f"SR_{study}_verified_1.dcm"
    assert _dciodvfy_errors(path) == []
    report = read_measurement_report(path)
    group = next(g for g in report.groups if any(m.label == "Thickness" for m in g.measurements))
    assert group.measurements[0].value == pytest.approx(expected, abs=1e-9)
    # What two caliper ends cannot give (the mean over the central half follows the automated edges) and the
    # algorithm's confidence in what it drew leave the corrected group; the note says so.
    assert [m.label for m in group.measurements] == ["Thickness"]
    assert any("Thickness (Mean, central half of width) removed" in e.value for e in group.evaluations)
    untouched = next(g for g in report.groups if g.finding is not None and g.finding.value == "71966008")
    assert [m.label for m in untouched.measurements] == ["Thickness", "Confidence"]
    assert group.regions[0].points[1] == pytest.approx(tuple(moved[1]), abs=1e-3)
    assert any(e.value.startswith("corrected by Doe^Jane") and "Thickness" in e.value for e in group.evaluations)
    # The person as observer of the corrected group (TID 1002 / 1003, HAS OBS CONTEXT).
    ds = pydicom.dcmread(path)
    groups = [g for c in ds.ContentSequence if "ContentSequence" in c for g in c.ContentSequence
              if g.get("ValueType") == "CONTAINER" and "ContentSequence" in g]
    corrected = next(g for g in groups if any(i.get("ValueType") == "PNAME" for i in g.ContentSequence))
    context = {i.ConceptNameCodeSequence[0].CodeValue: i for i in corrected.ContentSequence
               if i.RelationshipType == "HAS OBS CONTEXT"}
    assert context["121005"].ConceptCodeSequence[0].CodeValue == "121006"  # Observer Type: Person
    assert str(context["121008"].PersonName) == "Doe^Jane"
    events = [json.loads(line) for line in (out_dir / "audit.jsonl").read_text().splitlines()]
    fixed = next(e for e in events if e["event"] == "measurement_corrected")
    assert fixed["reviewer"] == "Doe^Jane" and fixed["values"].startswith("Thickness ")
    listing = client.get("/?review=corrected").get_data(as_text=True)
    assert f'data-study="{study}"' in listing


def test_wrong_passwords_are_throttled_and_views_are_audited(out_dir):
    from qa_review.auth import User, hash_password
    from qa_review.throttle import FREE_FAILURES, LoginThrottle

    now = [1000.0]
    users = {"alice": User("alice", hash_password("right-one"), "Liddell^Alice", "QA")}
    client = _client(out_dir, users=users, throttle=LoginThrottle(clock=lambda: now[0]))
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    codes = [client.post("/login", data={"csrf_token": token, "login": "alice", "password": f"wrong{i}"}).status_code
             for i in range(21)]
    assert codes[:FREE_FAILURES] == [401] * FREE_FAILURES and set(codes[FREE_FAILURES + 1:]) == {429}
    locked = client.post("/login", data={"csrf_token": token, "login": "alice", "password": "right-one"})
    assert locked.status_code == 429 and "try again in" in locked.get_data(as_text=True) and locked.headers["Retry-After"]
    now[0] += 3600  # the lock has passed
    assert client.post("/login", data={"csrf_token": token, "login": "alice", "password": "right-one"}).status_code == 303
    study = _study_uid(NERVE)
    assert client.get(f"/study/{study}").status_code == 200
    events = [json.loads(line) for line in (out_dir / "audit.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "review_login_throttled" for e in events) >= 15
    opened = [e for e in events if e["event"] == "review_opened"]
    assert opened[-1]["login"] == "alice" and opened[-1]["study"] == study and opened[-1]["at"]


def test_list_shows_patient_structures_flags_and_review_state(out_dir):
    client = _client(out_dir)
    page = html.unescape(client.get("/").get_data(as_text=True))
    nerve = _study_uid(NERVE)
    row = re.search(rf'<tr class="study" data-study="{re.escape(nerve)}">(.*?)</tr>', page, re.S).group(1)
    patient = str(pydicom.dcmread(NERVE, stop_before_pixels=True).PatientName).split("^")[0]
    assert patient in row and "median nerve" in row and "automated" in row
    assert re.search(r'class="num flags">(none|0)<', row)
    assert client.get("/?review=lost").status_code == 400
    assert f'data-study="{nerve}"' not in client.get("/?review=verified").get_data(as_text=True)


def test_a_uid_with_a_slash_opens_like_any_other(out_dir):
    study = _study_uid(NERVE)
    odd = study + "/x"
    path = out_dir / f"SR_{study}.dcm"
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = odd
    ds.save_as(out_dir / "SR_odd.dcm", enforce_file_format=True)
    client = _client(out_dir)
    assert f'href="/study/{odd}"' in client.get("/").get_data(as_text=True)
    assert client.get(f"/study/{odd}").status_code == 200


def test_browser_moves_a_caliper_and_the_verified_sr_carries_the_new_thickness(out_dir):
    chromium = require_tool("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python package 'playwright' missing: pip install -e '.[test]' (make test does this)")
    require_library("atomic", "libatomic1", "Playwright's bundled driver")
    import threading

    from qa_review.app import create_app
    from qa_review.outdir import OutDirSource
    from qa_review.server import make_review_server

    study = _study_uid(MUSCLE)
    server = make_review_server(create_app(OutDirSource(out_dir, images_dir=SAMPLE_DATA), organisation="QA lab"), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{server.server_port}/study/{study}")
            box = page.locator("fieldset.finding[data-kind=caliper]").first  # the muscle's (then the subcutaneous one)
            fid = box.get_attribute("data-finding")
            page.locator("figure.viewer canvas.image").first.wait_for()
            box.locator("button.edit").click()
            handle = page.locator(f'g.finding[data-finding="{fid}"] circle.handle[data-index="1"]')
            handle.wait_for()
            handle.scroll_into_view_if_needed()
            canvas = page.locator("figure.viewer canvas.image").first
            scale = page.evaluate("(c) => c.getBoundingClientRect().width / c.width", canvas.element_handle())
            hb = handle.bounding_box()
            cx, cy = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(cx, cy + 15 * scale, steps=5)
            page.mouse.up()
            page.wait_for_function(f"() => document.getElementById('preview-{fid}').textContent.startsWith('recomputed')")
            points = json.loads(box.locator("input.points").input_value())
            assert box.locator('input[value="correct"]').is_checked()
            page.fill("#reviewer", "Doe^Jane")
            page.click("#accept-remaining")
            page.wait_for_load_state("networkidle")
            assert "Signed off" in page.inner_text("#signed")
            assert "corrected" in page.inner_text("#history")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    frame = next(load_ultrasound(MUSCLE).iter_frames([0]))
    expected = frame.calibration.distance_mm(np.array(points[0]) - 0.5, np.array(points[1]) - 0.5)
    before = read_measurement_report(out_dir / f"SR_{study}.dcm")
    old = next(m.value for _, m in before.all_measurements() if m.label == "Thickness")
    path = out_dir / "verified" / f"SR_{study}_verified_1.dcm"
    new = next(m.value for _, m in read_measurement_report(path).all_measurements() if m.label == "Thickness")
    assert new == pytest.approx(expected, abs=1e-9)
    assert abs(new - old) > 0.5  # moved about 15 px at 0.1 mm/px
    assert _dciodvfy_errors(path) == []
    assert str(pydicom.dcmread(path).VerifyingObserverSequence[0].VerifyingObserverName) == "Doe^Jane"
