"""QA review against the reference tables: corrected values flagged again, study findings recomputed,
contours kept in the tissue region, the study's history (earlier runs, views), and all of it on a real node.

A right median nerve at the wrist (``sample_data/01``) and the same image relabelled as the forearm (a
second series of the same study) give a wrist-to-forearm ratio, a ΔCSA and sites enlarged; Flask's test
client reviews the OUT_DIR ``mskus analyze --out`` wrote, and a real :class:`dicom_node.server.StorageNode`
on 127.0.0.1 serves the same study in archive mode.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.loading import load_ultrasound
from pipeline.reference import load_reference_tables, study_findings
from pipeline.sr.reader import read_measurement_report
from tests.test_review import NERVE, _dciodvfy_errors, _form_for, _mskus, _study_uid, _wait_for

TABLES = load_reference_tables()


def _forearm_copy(path: Path) -> Path:
    """The wrist image as a forearm image of the same study (new series and instance)."""
    ds = pydicom.dcmread(NERVE)
    ds.SeriesDescription = "R MEDIAN NERVE FOREARM"
    ds.BodyPartExamined = "ARM"
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def two_levels(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(OUT_DIR, images folder, forearm file) of one study: median nerve at wrist and forearm."""
    base = tmp_path_factory.mktemp("two_levels")
    images = base / "images"
    images.mkdir()
    shutil.copy(NERVE, images / "wrist.dcm")
    forearm = _forearm_copy(images / "forearm.dcm")
    out = base / "out"
    result = _mskus("analyze", str(images / "wrist.dcm"), str(forearm), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out, images, forearm


@pytest.fixture
def out_dir(two_levels, tmp_path) -> Path:
    return Path(shutil.copytree(two_levels[0], tmp_path / "out"))


def _client(source, **kwargs):
    from qa_review.app import create_app

    app = create_app(source, **kwargs)
    app.testing = True
    return app.test_client()


def _outdir_client(out_dir: Path, images: Path, **kwargs):
    from qa_review.outdir import OutDirSource

    return _client(OutDirSource(out_dir, images_dir=images), **kwargs)


def _scaled(points: list[list[float]], factor: float) -> list[list[float]]:
    pts = np.asarray(points, dtype=float)
    centre = pts.mean(axis=0)
    return ((pts - centre) * factor + centre).tolist()


def _group_of(report, sop: str, label: str = "Area"):
    return next(g for g in report.groups if g.images and g.images[0].sop_instance_uid == sop
                and any(m.label == label for m in g.measurements))


def _study_values(report) -> dict[str, tuple[float, str]]:
    """Study-level values by concept meaning: (value, normality meaning)."""
    out = {}
    for group in report.groups:
        if group.measurements and not group.images and not group.regions:
            m = group.measurements[0]
            out[m.name.meaning] = (m.value, m.normality.meaning if m.normality else "")
    return out


def _sops(images: Path) -> tuple[str, str]:
    wrist = str(pydicom.dcmread(images / "wrist.dcm", stop_before_pixels=True).SOPInstanceUID)
    forearm = str(pydicom.dcmread(images / "forearm.dcm", stop_before_pixels=True).SOPInstanceUID)
    return wrist, forearm


def _reject_contour(out_dir: Path, images: Path, sop: str):
    """Sign the nerve study off with the contour on ``sop`` rejected, every other finding accepted; the client."""
    study = _study_uid(NERVE)
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    fid = f"g{automated.groups.index(_group_of(automated, sop)) + 1}"
    client = _outdir_client(out_dir, images, reference=TABLES)
    form = _form_for(client, study)
    form.update({f"decision-{fid}": "reject", f"reason-{fid}": "wrong structure"})
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    return client


# -- the rows the review rebuilds from the SR are those of the analysis ---------------------------------


def test_rows_rebuilt_from_the_sr_give_the_analysis_study_findings(two_levels):
    from qa_review.items import reviewable_report
    from qa_review.reread import measurement_rows

    out, _, _ = two_levels
    study = _study_uid(NERVE)
    rows = measurement_rows(reviewable_report(pydicom.dcmread(out / f"SR_{study}.dcm")), study)
    findings = {f.finding: f for f in study_findings(rows, TABLES)}
    written = {r.split(",")[1]: float(r.split(",")[5]) for r in (out / "findings.csv").read_text().splitlines()[1:]}
    assert set(findings) == set(written) == {"wrist_to_forearm_ratio", "wrist_minus_forearm_difference", "sites_enlarged"}
    for name, value in written.items():
        assert findings[name].value == pytest.approx(value, rel=1e-9)


# -- 1 and 2: a corrected contour is flagged again and the study findings follow it --------------------------


def test_corrected_area_gets_its_own_flag_and_the_study_findings_are_recomputed(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    wrist_sop, forearm_sop = _sops(images)
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    wrist_group = _group_of(automated, wrist_sop)
    forearm_area = next(m.value for m in _group_of(automated, forearm_sop).measurements if m.label == "Area")
    before = next(m for m in wrist_group.measurements if m.label == "Area")
    assert before.normality.meaning == "Normal" and before.normal_range_high == 11
    fid = f"g{automated.groups.index(wrist_group) + 1}"

    client = _outdir_client(out_dir, images, reference=TABLES)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    contour = next(f for block in re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
                   for f in json.loads(html.unescape(block)) if f["id"] == fid)
    bigger = _scaled(contour["points"], 1.5)
    form = _form_for(client, study)
    preview = client.post(f"/study/{study}/recompute", data={**form, "finding": fid, "points": json.dumps(bigger)})
    assert preview.status_code == 200
    area = next(v for v in preview.get_json()["values"] if v["name"] == "Area")
    assert area["value"] > 11 and area["flag"].startswith("enlarged") and "≤ 11" in area["flag"]

    form.update({f"decision-{fid}": "correct", f"points-{fid}": json.dumps(bigger),
                 "reviewer": "Doe^Jane", "organisation": "QA lab"})
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    path = out_dir / "verified" / f"SR_{study}_verified_1.dcm"
    assert _dciodvfy_errors(path) == []
    verified = read_measurement_report(path)
    corrected = _group_of(verified, wrist_sop)
    after = next(m for m in corrected.measurements if m.label == "Area")
    assert after.value == pytest.approx(area["value"])
    assert after.normality.meaning == "Abnormally High" and after.normal_range_high == 11
    assert "Practical Neurology" in after.normal_range_description
    perimeter = next(m for m in corrected.measurements if m.label == "Perimeter")
    assert perimeter.normality is None  # no reference: none written, as the analysis does

    # Study findings from the corrected wrist area and the accepted forearm one (the pipeline's functions).
    derived = _study_values(verified)
    assert derived["CSA ratio between levels"][0] == pytest.approx(after.value / forearm_area)
    assert derived["CSA ratio between levels"][1] == "Abnormally High"
    assert derived["CSA difference between levels"][0] == pytest.approx(after.value - forearm_area)
    assert derived["Nerve sites enlarged"] == (1.0, "Abnormally High")
    patterns = [e.value for g in verified.groups for e in g.evaluations if e.name.meaning == "Enlargement pattern"]
    assert patterns == ["focal"]
    assert any("study findings recomputed" in n.value and "Doe^Jane" in n.value for n in verified.notes)

    # The page reads it back: the corrected area flagged, the ratio with its new value.
    page = html.unescape(client.get(f"/study/{study}").get_data(as_text=True))
    derived_section = re.search(r'<section class="study-findings".*?</section>', page, re.S).group(0)
    assert f"{after.value / forearm_area:.4g}" in derived_section and "focal" in derived_section


def test_rejected_contour_no_longer_counts_in_the_study_findings(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    _reject_contour(out_dir, images, _sops(images)[1])
    path = out_dir / "verified" / f"SR_{study}_verified_1.dcm"
    assert _dciodvfy_errors(path) == []
    verified = read_measurement_report(path)
    derived = _study_values(verified)
    # no forearm value left: no ratio, no difference; sites enlarged from the wrist alone
    assert set(derived) == {"Nerve sites enlarged"}
    inputs = [e.value for g in verified.groups for e in g.evaluations if e.name.meaning == "Derived from"]
    assert inputs and all("forearm" not in text for text in inputs)
    note = next(n.value for n in verified.notes if "study findings recomputed" in n.value)
    assert "removed" in note


@pytest.mark.parametrize("rejected", ["wrist", "forearm"])
def test_a_frame_whose_contour_was_rejected_stays_on_the_page(two_levels, out_dir, rejected):
    """The signed version numbers its groups anew: no frame is taken for a study finding's and dropped."""
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    client = _reject_contour(out_dir, images, dict(zip(("wrist", "forearm"), _sops(images)))[rejected])
    page = client.get(f"/study/{study}").get_data(as_text=True)
    frames = re.findall(r'<section class="frame" id="frame-\d+">.*?</section>', page, re.S)
    assert len(frames) == 2
    emptied = [frame for frame in frames if "No finding on this frame left in the current version" in frame]
    assert len(emptied) == 1 and f"{rejected}.dcm" in emptied[0]


def test_rejected_study_finding_stays_out_after_a_correction(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    wrist_sop, _ = _sops(images)
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    ratio = next(g for g in automated.groups if not g.images and g.measurements
                 and g.measurements[0].name.meaning == "CSA ratio between levels")
    rid = f"g{automated.groups.index(ratio) + 1}"
    wrist = _group_of(automated, wrist_sop)
    wid = f"g{automated.groups.index(wrist) + 1}"
    client = _outdir_client(out_dir, images, reference=TABLES)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    contour = next(f for block in re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
                   for f in json.loads(html.unescape(block)) if f["id"] == wid)
    form = _form_for(client, study)
    form.update({f"decision-{rid}": "reject", f"reason-{rid}": "other", f"comment-{rid}": "not a CTS question",
                 f"decision-{wid}": "correct", f"points-{wid}": json.dumps(_scaled(contour["points"], 1.2))})
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    derived = _study_values(read_measurement_report(out_dir / "verified" / f"SR_{study}_verified_1.dcm"))
    assert "CSA ratio between levels" not in derived and "CSA difference between levels" in derived


def test_without_reference_tables_a_corrected_value_carries_no_normality_and_says_why(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    wrist_sop, _ = _sops(images)
    automated = read_measurement_report(out_dir / f"SR_{study}.dcm")
    wid = f"g{automated.groups.index(_group_of(automated, wrist_sop)) + 1}"
    client = _outdir_client(out_dir, images)  # no reference= : the server was started without tables
    page = client.get(f"/study/{study}").get_data(as_text=True)
    contour = next(f for block in re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
                   for f in json.loads(html.unescape(block)) if f["id"] == wid)
    form = _form_for(client, study)
    form.update({f"decision-{wid}": "correct", f"points-{wid}": json.dumps(_scaled(contour["points"], 1.1))})
    assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
    path = out_dir / "verified" / f"SR_{study}_verified_1.dcm"
    assert _dciodvfy_errors(path) == []
    verified = read_measurement_report(path)
    group = _group_of(verified, wrist_sop)
    area = next(m for m in group.measurements if m.label == "Area")
    assert area.normality is None and area.normal_range_high is None
    reasons = [e.value for e in group.evaluations if e.name.meaning == "Reference not applied"]
    assert reasons == ["cross_sectional_area: the review server was started without reference tables, "
                       "so the corrected value was not judged"]
    assert not _study_values(verified)  # not recomputable: removed, and the SR says so
    assert any("study findings removed" in n.value for n in verified.notes)
    row = html.unescape(re.search(rf'<tr class="measurement" id="m-{wid}.m1"><td>Area</td>.*?</tr>',
                                  client.get(f"/study/{study}").get_data(as_text=True), re.S).group(0))
    assert "none" in row and "without reference tables" in row


# -- 3: a redrawn contour stays in the tissue region --------------------------------------------------------


def test_contour_outside_the_tissue_region_is_refused(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    box = next(load_ultrasound(NERVE).iter_frames([0])).calibration.tissue_box
    client = _outdir_client(out_dir, images, reference=TABLES)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    contour = next(f for block in re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
                   for f in json.loads(html.unescape(block)) if f["kind"] == "contour")
    # inside the image, left of the tissue region (the scanner's margin)
    outside = [*contour["points"][:-1], [box.x0 - 10.0, (box.y0 + box.y1) / 2]]
    form = _form_for(client, study)
    preview = client.post(f"/study/{study}/recompute", data={**form, "finding": contour["id"], "points": json.dumps(outside)})
    assert preview.status_code == 422
    assert "tissue region" in preview.get_json()["error"]
    form.update({f"decision-{contour['id']}": "correct", f"points-{contour['id']}": json.dumps(outside)})
    refused = client.post(f"/study/{study}/signoff", data=form)
    assert refused.status_code == 422 and "tissue region" in html.unescape(refused.get_data(as_text=True))
    assert not (out_dir / "verified").exists()
    inside = client.post(f"/study/{study}/recompute", data={**form, "finding": contour["id"],
                                                             "points": json.dumps(contour["points"])})
    assert inside.status_code == 200


# -- 4: earlier runs and views in the history -----------------------------------------------------------------


def test_history_shows_earlier_runs_and_who_viewed_the_study(two_levels, out_dir):
    _, images, _ = two_levels
    study = _study_uid(NERVE)
    current = pydicom.dcmread(out_dir / f"SR_{study}.dcm")
    earlier = pydicom.dcmread(out_dir / f"SR_{study}.dcm")
    earlier.SOPInstanceUID = generate_uid()
    earlier.file_meta.MediaStorageSOPInstanceUID = earlier.SOPInstanceUID
    earlier.ContentDate, earlier.ContentTime = "20200101", "101500"
    earlier.save_as(out_dir / "SR_earlier_run.dcm", enforce_file_format=True)
    named = generate_uid()  # a predecessor whose file is gone
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = current.SOPClassUID, named
    series = pydicom.Dataset()
    series.SeriesInstanceUID, series.ReferencedSOPSequence = generate_uid(), [ref]
    item = pydicom.Dataset()
    item.StudyInstanceUID, item.ReferencedSeriesSequence = study, [series]
    current.PredecessorDocumentsSequence = [item]
    current.save_as(out_dir / f"SR_{study}.dcm", enforce_file_format=True)

    client = _outdir_client(out_dir, images, reference=TABLES)
    client.get(f"/study/{study}")
    page = html.unescape(client.get(f"/study/{study}").get_data(as_text=True))
    history = re.search(r'<section class="history".*?</section>', page, re.S).group(0)
    runs = re.findall(r'<li class="earlier-run" data-uid="([^"]+)">(.*?)</li>', history, re.S)
    assert [uid for uid, _ in runs] == [str(earlier.SOPInstanceUID), named]
    assert "2020-01-01 10:15" in runs[0][1] and "SR_earlier_run.dcm" in runs[0][1]
    assert "named as predecessor" in runs[1][1]
    views = re.findall(r'<li class="view">(.*?)</li>', history, re.S)
    assert len(views) == 2 and all("(no login: loopback only)" in v and "127.0.0.1" in v for v in views)
    # the earlier run is not the study's automated SR: the form still names the current one
    assert re.search(r'name="automated_sr" value="([^"]+)"', page).group(1) == str(current.SOPInstanceUID)


# -- 5: archive mode on a real node -----------------------------------------------------------------------------


def _sr_results(data_dir: Path, study: str) -> list[str]:
    with sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True) as db:
        return [r[0] for r in db.execute("SELECT sop_instance_uid FROM results WHERE study_uid=? AND kind='sr' "
                                         "ORDER BY run", (study,))]


def test_node_archive_correction_stale_form_and_history(tmp_path):
    from pynetdicom import AE

    from dicom_node.config import NodeConfig
    from dicom_node.server import StorageNode
    from qa_review.archive import ArchiveSource

    forearm = _forearm_copy(tmp_path / "forearm.dcm")
    config = replace(NodeConfig(port=0, data_dir=tmp_path / "node", quiet_seconds=0.3), destinations=())
    node = StorageNode(config, poll_seconds=0.1)
    node.start()
    study = _study_uid(NERVE)

    def send(path: Path) -> None:
        scu = AE(ae_title="TESTSCU")
        scu.add_requested_context("1.2.840.10008.5.1.4.1.1.6.1", ExplicitVRLittleEndian)
        assoc = scu.associate("127.0.0.1", node.port, ae_title="MSKUS")
        assert assoc.is_established
        assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
        assoc.release()

    try:
        send(NERVE)
        first_run = _wait_for(lambda: _sr_results(tmp_path / "node", study))[0]
        send(forearm)  # a second series: the node analyses the study again (run 2)
        _wait_for(lambda: len(_sr_results(tmp_path / "node", study)) == 2)
        _wait_for(lambda: all(s.state.value == "processed" for s in node.index.studies()))

        source = ArchiveSource(tmp_path / "node")
        alice = _client(source, reference=TABLES)
        bob = _client(ArchiveSource(tmp_path / "node"), reference=TABLES)
        page = alice.get(f"/study/{study}").get_data(as_text=True)
        automated = source.automated(study)
        report = read_measurement_report(automated)
        wrist_sop = str(pydicom.dcmread(NERVE, stop_before_pixels=True).SOPInstanceUID)
        wrist = _group_of(report, wrist_sop)
        wid = f"g{report.groups.index(wrist) + 1}"
        contour = next(f for block in re.findall(r'class="findings-data">(.*?)</script>', page, re.S)
                       for f in json.loads(html.unescape(block)) if f["id"] == wid)
        bigger = _scaled(contour["points"], 1.5)
        form_alice, form_bob = _form_for(alice, study), _form_for(bob, study)
        preview = alice.post(f"/study/{study}/recompute", data={**form_alice, "finding": wid, "points": json.dumps(bigger)})
        assert preview.status_code == 200
        form_alice.update({f"decision-{wid}": "correct", f"points-{wid}": json.dumps(bigger),
                           "reviewer": "Liddell^Alice", "organisation": "QA A"})
        assert alice.post(f"/study/{study}/signoff", data=form_alice).status_code == 303

        stale = bob.post(f"/study/{study}/signoff", data={**form_bob, "reviewer": "Builder^Bob"})
        assert stale.status_code == 409
        message = html.unescape(stale.get_data(as_text=True))
        assert "Alice Liddell (QA A) signed it off at" in message and "Nothing was saved" in message

        verified_path = Path(node.index.latest_result_path(study, "verified_sr"))
        assert _dciodvfy_errors(verified_path) == []
        verified = read_measurement_report(verified_path)
        area = next(m for m in _group_of(verified, wrist_sop).measurements if m.label == "Area")
        assert area.normality.meaning == "Abnormally High"
        assert _study_values(verified)["Nerve sites enlarged"] == (1.0, "Abnormally High")

        page = html.unescape(bob.get(f"/study/{study}").get_data(as_text=True))
        history = re.search(r'<section class="history".*?</section>', page, re.S).group(0)
        assert "Alice Liddell" in history and "contour redrawn" in history
        runs = re.findall(r'<li class="earlier-run" data-uid="([^"]+)">(.*?)</li>', history, re.S)
        assert [uid for uid, _ in runs] == [first_run] and "run 1" in runs[0][1]
        views = re.findall(r'<li class="view">(.*?)</li>', history, re.S)
        assert len(views) == 4  # Alice's two openings and Bob's two, each in the node's audit table
        events = [e for _, e, _ in node.index.audit_trail()]
        assert "measurement_corrected" in events and "review_signed_off" in events
    finally:
        node.stop()
