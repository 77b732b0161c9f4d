"""QA review: reference flags and study findings (issue 18), fasciculation events (issue 20), left/right by level (21).

The fixture is made at run time: two short, seeded, small muscle cine clips from
``sample_data/cine_clips.py`` (one with twitches, one without frame timing) and the
sample median nerve at the wrist, run through ``mskus analyze --out``. The pages are
read through Flask's test client; a short browser check (Debian's Chromium through
Playwright) plays the clip around an event.
"""

from __future__ import annotations

import csv
import html
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from qa_review.flags import ValueFlag
from qa_review.model import FrameInfo, FrameView, ReviewItem
from qa_review.studyview import laterality_pairs
from sample_data.cine_clips import sample_clip, write_clip_dicom
from tests.conftest import REPO, require_library, require_tool
from tests.test_review import CHROMIUM_ARGS, NERVE, _form_for, _mskus, _study_uid

CLIP_SIZE = dict(rows=128, columns=128, mm_per_px=0.25)
DECISION_SUPPORT = "Reference flags are decision support, not diagnosis"


@pytest.fixture(scope="module")
def clinical(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(OUT_DIR, clip with twitches, clip without frame timing)."""
    base = tmp_path_factory.mktemp("clinical")
    clip = base / "twitch_clip.dcm"
    write_clip_dicom(clip, sample_clip(11, duration_s=3.0, fps=20, twitches=2, **CLIP_SIZE))
    untimed = base / "untimed_clip.dcm"
    write_clip_dicom(untimed, sample_clip(3, duration_s=1.0, fps=20, twitches=0, **CLIP_SIZE), timing="none")
    nerve = Path(shutil.copy(NERVE, base / NERVE.name))  # one input folder: the tables' source_file is relative to it
    out = base / "out"
    result = _mskus("analyze", str(clip), str(untimed), str(nerve), "--out", str(out), timeout=300)
    assert result.returncode == 0, result.stderr
    return out, clip, untimed


@pytest.fixture
def out_dir(clinical, tmp_path) -> Path:
    return Path(shutil.copytree(clinical[0], tmp_path / "out"))


def _client(out_dir: Path, images: Path | None = None):
    from qa_review.app import create_app
    from qa_review.outdir import OutDirSource

    app = create_app(OutDirSource(out_dir, images_dir=images))
    app.testing = True
    return app.test_client()


def _text(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _section(page: str, css_class: str) -> str:
    match = re.search(rf'<section class="{css_class}".*?</section>', page, re.S)
    assert match, f"no section {css_class}"
    return match.group(0)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# -- fasciculation (issue 20) --------------------------------------------------------
def test_clip_page_lists_each_event_with_key_frame_and_play_window(clinical, out_dir):
    _, clip, _ = clinical
    study = _study_uid(clip)
    sop = str(pydicom.dcmread(clip, stop_before_pixels=True).SOPInstanceUID)
    events = [e for e in _rows(out_dir / "events.csv") if e["sop_instance_uid"] == sop]
    assert events, "the detector found nothing on the fixture clip: the page test would prove nothing"
    client = _client(out_dir, clip.parent)
    page = client.get(f"/study/{study}").get_data(as_text=True)
    section = _section(page, "fasciculation")
    values = {k: _text(v) for k, v in re.findall(r'<dd class="(count|rate|analysed|excluded)">(.*?)</dd>', section, re.S)}
    assert values["count"] == str(len(events))
    rate = next(r for r in _rows(out_dir / "measurements.csv") if r["sop_instance_uid"] == sop and r["measurement"] == "fasciculation_rate")
    assert values["rate"].startswith(f"{float(rate['value']):.1f} /min")
    assert values["analysed"] == "3.0 s" and values["excluded"].startswith("0.0 s")

    rows = re.findall(r'<tr class="event".*?</tr>', section, re.S)
    assert len(rows) == len(events)
    times = [i / 20.0 for i in range(60)]
    for row, expected in zip(rows, events, strict=True):
        cells = [_text(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        assert cells[1] == f"{float(expected['time_s']):.2f}"
        frame = int(cells[2])
        assert times[frame - 1] == pytest.approx(float(expected["time_s"]))  # frame of peak displacement
        assert cells[3] == f"{float(expected['x_px']):.0f}, {float(expected['y_px']):.0f}"
        assert cells[4] == f"{float(expected['x_px']) * 0.25:.1f}, {float(expected['y_px']) * 0.25:.1f}"
        assert cells[6] == f"{float(expected['peak_speed_mm_s']):.2f}" and cells[7] == f"{float(expected['confidence']):.2f}"
        first, last = (int(v) for v in re.search(r'data-from="(\d+)" data-to="(\d+)"', row).groups())
        t = float(expected["time_s"])
        assert first == next(i for i, s in enumerate(times, 1) if s >= t - 1.0 - 1e-9)
        assert last == max(i for i, s in enumerate(times, 1) if s <= t + 1.0 + 1e-9)
        assert first <= frame <= last

        key = html.unescape(re.search(r'<img class="key-frame" src="([^"]+)"', row).group(1))
        response = client.get(key)
        assert response.status_code == 200 and response.mimetype == "image/png"
        marked = cv2.imdecode(np.frombuffer(response.data, np.uint8), cv2.IMREAD_COLOR)
        assert marked.shape[:2] == (128, 128)
        x, y = round(float(expected["x_px"])), round(float(expected["y_px"]))
        b, g, r = (int(v) for v in marked[y, x])
        assert r > 200 and g > 180 and b < 60  # the place is marked (yellow cross)
    assert client.get(f"/study/{study}/event/{sop}/{len(events) + 1}.png").status_code == 404
    # the clip's fasciculation analysis is one finding, decided in its own section (not in frame 1's values)
    assert re.search(r'<fieldset class="finding" id="finding-(g\d+)"', section)
    frame_one = re.search(r'<section class="frame" id="frame-1">.*?</section>', page, re.S).group(0)
    assert "Fasciculation time" not in frame_one


def test_clip_without_frame_timing_shows_the_refusal(clinical, out_dir):
    _, _, untimed = clinical
    page = _client(out_dir).get(f"/study/{_study_uid(untimed)}").get_data(as_text=True)
    section = _text(_section(page, "fasciculation"))
    assert "Not analysed:" in section and "timing" in section.lower()
    assert "Play" not in section


def test_signoff_decides_the_fasciculation_and_study_findings_too(clinical, out_dir):
    from pipeline.sr.reader import read_measurement_report

    for path in (clinical[1], NERVE):
        study = _study_uid(path)
        client = _client(out_dir)
        form = _form_for(client, study)
        assert client.post(f"/study/{study}/signoff", data=form).status_code == 303
        verified = read_measurement_report(next((out_dir / "verified").glob(f"SR_{study}_verified_*.dcm")))
        assert verified.verification_flag == "VERIFIED"
        if path != NERVE:
            times = [m for g in verified.groups for m in g.measurements if m.name.meaning == "Fasciculation time"]
            assert times, "the accepted fasciculation events are kept"
        else:
            assert any(m.name.meaning == "Nerve sites enlarged" for g in verified.groups for m in g.measurements)


# -- flags and study findings (issue 18) -----------------------------------------------
def test_values_show_flag_interval_source_and_the_study_findings(out_dir):
    client = _client(out_dir)
    study = _study_uid(NERVE)
    listing = _text(client.get("/").get_data(as_text=True))
    assert DECISION_SUPPORT in listing
    page = client.get(f"/study/{study}").get_data(as_text=True)
    assert DECISION_SUPPORT in _text(re.search(r'<p class="decision-support".*?</p>', page, re.S).group(0))

    area = next(r for r in _rows(out_dir / "measurements.csv") if r["study_uid"] == study and r["measurement"] == "cross_sectional_area")
    row = _text(re.search(r'<tr class="measurement"[^>]*><td>Area</td>.*?</tr>', page, re.S).group(0))
    assert area["flag"] in row.split()
    assert f"≤ {float(area['reference_high']):.4g} mm²" in row
    assert area["reference_source"][:40] in row
    assert "wrist region" in _text(re.search(r'<dd class="site">.*?</dd>', page, re.S).group(0))
    perimeter = _text(re.search(r'<tr class="measurement"[^>]*><td>Perimeter</td>.*?</tr>', page, re.S).group(0))
    assert "none" in perimeter.split()

    derived = _section(page, "study-findings")
    findings = [r for r in _rows(out_dir / "findings.csv") if r["study_uid"] == study and r["value"]]
    assert findings
    rows = re.findall(r'<tr class="derived-finding".*?</tr>', derived, re.S)
    assert len(rows) == len(findings)
    for shown, expected in zip(rows, findings, strict=True):
        text = _text(shown)
        assert expected["finding"].replace("_", " ") in text and expected["flag"] in text.split()
        assert expected["inputs"].split(":")[0] in text
    assert re.search(r'name="decision-g\d+"', derived)


def test_flags_and_events_come_from_the_sr_alone(clinical, out_dir):
    """As on a node archive: no tables beside the SRs."""
    for name in ("measurements.csv", "findings.csv", "events.csv", "summary.csv"):
        (out_dir / name).unlink(missing_ok=True)
    client = _client(out_dir)
    page = client.get(f"/study/{_study_uid(NERVE)}").get_data(as_text=True)
    assert "≤ 11 mm²" in _text(page) and "Practical Neurology" in page
    clip_page = client.get(f"/study/{_study_uid(clinical[1])}").get_data(as_text=True)
    assert re.findall(r'<tr class="event"', _section(clip_page, "fasciculation"))


# -- left and right (issue 21) ------------------------------------------------------
def _frame(sop: str, side: str, level: str) -> FrameView:
    item = ReviewItem(
        id="g1.m1", group="g", tracking_uid="", name="Area", value=7.0, unit="mm2", site="median nerve",
        laterality=side, sop_instance_uid=sop, level=level, flag=ValueFlag("normal", high=11.0, unit="mm2"),
    )
    return FrameView(sop_instance_uid=sop, frame_number=1, label=sop, items=(item,), overlays=(), info=FrameInfo())


def test_left_and_right_pair_only_at_the_same_level():
    right_wrist, left_forearm = _frame("1", "Right", "Wrist region"), _frame("2", "Left", "Forearm")
    assert laterality_pairs([right_wrist, left_forearm]) == ()
    left_wrist = _frame("3", "Left", "Wrist region")
    (pair,) = laterality_pairs([right_wrist, left_forearm, left_wrist])
    assert (pair.right.sop_instance_uid, pair.left.sop_instance_uid) == ("1", "3")
    assert pair.label == "median nerve at wrist region" and pair.values(left_forearm) == ()
    (unknown,) = laterality_pairs([_frame("4", "Right", ""), _frame("5", "Left", "")])
    assert unknown.label == "median nerve"


# -- the browser ---------------------------------------------------------------------
def test_browser_plays_the_clip_around_an_event(clinical, out_dir):
    chromium = require_tool("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Python package 'playwright' missing: pip install -e '.[test]' (make test does this)")
    require_library("atomic", "libatomic1", "Playwright's bundled driver")
    study = _study_uid(clinical[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "mskus", "review", "--out", str(out_dir), "--port", "0", "--images", str(clinical[1].parent)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "mskus review printed no address"
        url = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline()).group(0)
        problems: list[str] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
            page.goto(f"{url}study/{study}")
            section = page.locator("section.fasciculation").first
            button = section.locator("button.play-event").first
            button.wait_for(state="visible")
            last = button.get_attribute("data-to")
            button.click()
            page.wait_for_function(
                "(to) => document.querySelector('section.fasciculation img.event-frame').getAttribute('data-frame') === to",
                arg=last, timeout=60000,
            )
            assert section.locator("img.event-frame").evaluate("(i) => i.src").endswith(f"/{last}.png")
            page.wait_for_function(
                "() => document.querySelector('section.fasciculation .event-label').textContent.includes('end of t+1 s')",
                timeout=60000,
            )
            assert button.inner_text() == "Play t−1 s to t+1 s"
            assert section.locator("img.key-frame").first.evaluate("(i) => i.complete && i.naturalWidth") == 128
            browser.close()
        assert problems == []
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
