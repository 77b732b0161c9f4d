"""Fasciculation detection in muscle cine clips (issue 20; CONTRACT.md sections 2, 4 and 5).

Clips come from ``sample_data/cine_clips.py`` (seeded, generated here at run
time, small frames so the file runs in seconds): a clip with known twitches
gives the right count and times; each confounder alone gives none; a clip
without frame timing is refused with a reason; a still image or a nerve clip
gets no fasciculation values; frames are consumed one at a time; the rows and
the SR group are as the contract says, and the SR passes dciodvfy.
"""

from __future__ import annotations

import gc
import subprocess
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.analysis import ImageResult
from pipeline.calibration import PixelBox
from pipeline.cine import FasciculationResult, FrameTiming, NoFrameTimingError, detect_fasciculations, frame_timing
from pipeline.cine.clip import analyze_clip
from pipeline.cine.result import FasciculationEvent
from pipeline.cine.rows import CLIP_FRAME, EVENT_COLUMNS, event_rows, fasciculation_rows
from pipeline.loading import load_ultrasound
from pipeline.protocols import Protocol, ProtocolChoice
from pipeline.sr import read_measurement_report
from pipeline.sr.sop import build_measurement_report
from sample_data.cine_clips import CONFOUNDERS, iter_clip_frames, sample_clip, write_clip_dicom
from tests.conftest import SAMPLE_DATA, require_tool

SIZE = dict(rows=160, columns=160, mm_per_px=0.2)
MUSCLE = ProtocolChoice(Protocol.MUSCLE, "tibialis anterior muscle", "SeriesDescription", "R TIBIALIS ANTERIOR")
NERVE = ProtocolChoice(Protocol.NERVE, "median nerve", "SeriesDescription", "R MEDIAN NERVE")
TIME_TOLERANCE_S = 0.2
PLACE_TOLERANCE_MM = 5.0


def _detect(clip, frames=None) -> FasciculationResult:
    timing = FrameTiming.uniform(clip.number_of_frames, 1.0 / clip.fps)
    box = PixelBox(0, 0, clip.columns - 1, clip.rows - 1)
    return detect_fasciculations(frames if frames is not None else iter_clip_frames(clip), timing, box, clip.mm_per_px, clip.mm_per_px)


def _matches(events: tuple[FasciculationEvent, ...], clip) -> list[tuple[float, float]]:
    """(time error s, distance mm) of each true twitch's nearest detected event."""
    out = []
    for twitch in clip.twitches:
        best = min(
            ((e.time_s - twitch.peak_time_s, float(np.hypot(e.x_mm - twitch.x_mm, e.y_mm - twitch.y_mm))) for e in events),
            key=lambda m: abs(m[0]) + m[1] / 10.0,
        )
        out.append(best)
    return out


# --------------------------------------------------------------------------------------
# Frame timing
# --------------------------------------------------------------------------------------


def test_timing_from_each_attribute():
    ds = pydicom.Dataset()
    ds.FrameTime = 20.0
    assert frame_timing(ds, 3).frame_times_s == pytest.approx((0.0, 0.02, 0.04))
    ds = pydicom.Dataset()
    ds.FrameTimeVector = [0, 25, 50]
    ds.FrameIncrementPointer = 0x00181065
    timing = frame_timing(ds, 3)
    assert timing.frame_times_s == pytest.approx((0.0, 0.025, 0.075)) and timing.source == "Frame Time Vector"
    ds = pydicom.Dataset()
    ds.CineRate = 25
    assert frame_timing(ds, 2).frames_per_second == pytest.approx(25.0)
    ds = pydicom.Dataset()
    ds.RecommendedDisplayFrameRate = 50
    assert frame_timing(ds, 2).source == "Recommended Display Frame Rate"


def test_no_timing_is_refused_with_a_reason(tmp_path):
    with pytest.raises(NoFrameTimingError, match="no frame timing"):
        frame_timing(pydicom.Dataset(), 10)
    clip = sample_clip(3, duration_s=1.0, fps=20, twitches=0, **SIZE)
    path = tmp_path / "no_timing.dcm"
    write_clip_dicom(path, clip, timing="none")
    result = analyze_clip(load_ultrasound(path), MUSCLE)
    assert result is not None and not result.measured
    assert "no frame timing" in result.refusal_reason and result.count is None
    rows = fasciculation_rows(
        result, study_uid="1", series_uid="2", sop_instance_uid="3", source_file="a.dcm", structure="m", laterality="R"
    )
    assert [r.status.value for r in rows] == ["refused"] * 4 and all("no frame timing" in r.reason for r in rows)


def test_a_still_image_or_a_nerve_clip_gets_no_fasciculation_values():
    still = load_ultrasound(SAMPLE_DATA / "04_muscle_mono.dcm")
    assert analyze_clip(still, MUSCLE) is None
    nerve_cine = load_ultrasound(SAMPLE_DATA / "07_nerve_cine.dcm")
    assert analyze_clip(nerve_cine, NERVE) is None


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------


def test_known_twitches_are_found_at_the_right_times():
    clip = sample_clip(11, duration_s=12.0, fps=30, twitches=5, **SIZE)
    result = _detect(clip)
    assert result.count == len(clip.twitches) == 5, result.events
    for time_error, distance in _matches(result.events, clip):
        assert abs(time_error) <= TIME_TOLERANCE_S and distance <= PLACE_TOLERANCE_MM
    assert result.analysed_seconds == pytest.approx(12.0) and result.excluded_seconds == 0.0
    assert result.rate_per_min == pytest.approx(5 / 12.0 * 60.0)
    assert all(0.0 < e.confidence <= 1.0 and e.peak_speed_mm_s > 0 and 0.05 < e.duration_s < 1.5 for e in result.events)


@pytest.mark.parametrize("confounder", CONFOUNDERS)
def test_each_confounder_alone_gives_no_event(confounder):
    clip = sample_clip(21, duration_s=10.0, fps=25, twitches=0, confounders=(confounder,), **SIZE)
    result = _detect(clip)
    assert result.count == 0, (confounder, result.events)
    if confounder == "noise":
        assert result.excluded_frames > 0 and result.excluded_seconds == pytest.approx(result.excluded_frames / 25.0)
        assert result.analysed_seconds + result.excluded_seconds == pytest.approx(10.0)


def test_frames_are_consumed_one_at_a_time():
    """The detector keeps no frame: at most the one being pushed (and the generator's next) is alive."""

    class Frame(np.ndarray):
        pass

    alive: set[int] = set()
    most_alive = 0

    def frames(clip) -> Iterator[np.ndarray]:
        nonlocal most_alive
        for k, gray in enumerate(iter_clip_frames(clip)):
            frame = gray.view(Frame)
            alive.add(k)
            weakref.finalize(frame, alive.discard, k)
            most_alive = max(most_alive, len(alive))
            yield frame
            del frame
            gc.collect(0)

    clip = sample_clip(5, duration_s=4.0, fps=25, twitches=1, **SIZE)
    result = _detect(clip, frames(clip))
    assert result.number_of_frames == clip.number_of_frames
    assert most_alive <= 2


def test_memory_stays_small_over_a_long_clip():
    """60 s at 50 frames/s of 256x256 frames (188 MB of pixels): frames are never kept, and what the detector
    keeps (each cell's motion per frame, 8 bytes) and works on at the end stays a small fraction of that."""
    import tracemalloc

    rows = columns = 256
    rng = np.random.default_rng(3)
    speckle = rng.integers(30, 200, size=(rows, columns), dtype=np.uint8)
    n = 60 * 50

    def frames() -> Iterator[np.ndarray]:
        noise = np.random.default_rng(4)
        for _ in range(n):
            yield np.clip(speckle.astype(np.int16) + noise.integers(-4, 5, size=(rows, columns)), 0, 255).astype(np.uint8)

    timing = FrameTiming.uniform(n, 1.0 / 50)
    tracemalloc.start()
    try:
        result = detect_fasciculations(frames(), timing, PixelBox(0, 0, columns - 1, rows - 1), 0.16, 0.16)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.number_of_frames == n and result.analysed_seconds > 50
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MB over {n * rows * columns / 2**20:.0f} MB of frames"


# --------------------------------------------------------------------------------------
# Outputs: rows, SR
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> tuple[Path, object]:
    clip = sample_clip(11, duration_s=6.0, fps=25, twitches=3, **SIZE)
    path = tmp_path_factory.mktemp("cine") / "clip.dcm"
    write_clip_dicom(path, clip)
    return path, clip


def test_dicom_clip_end_to_end_and_rows(clip_file):
    path, clip = clip_file
    image = load_ultrasound(path)
    result = analyze_clip(image, MUSCLE)
    assert result is not None and result.measured and result.timing_source == "Frame Time"
    assert result.count == len(clip.twitches)
    rows = fasciculation_rows(
        result, study_uid=image.study_instance_uid, series_uid=image.series_instance_uid,
        sop_instance_uid=image.sop_instance_uid, source_file="clip.dcm", structure=MUSCLE.site, laterality="R",
    )
    by_name = {r.measurement: r for r in rows}
    assert list(by_name) == ["fasciculation_count", "fasciculation_rate", "analysed_seconds", "excluded_seconds"]
    assert [by_name[n].unit for n in by_name] == ["1", "/min", "s", "s"]
    assert all(r.frame == CLIP_FRAME and r.status.value == "measured" for r in rows)
    assert by_name["fasciculation_count"].value == result.count
    events = event_rows(result, study_uid="1.2", sop_instance_uid=image.sop_instance_uid, structure=MUSCLE.site, laterality="R")
    assert len(events) == result.count
    cells = events[0].cells()
    assert len(cells) == len(EVENT_COLUMNS) == 10 and float(cells[EVENT_COLUMNS.index("time_s")]) == result.events[0].time_s


def test_sr_group_passes_dciodvfy_and_reads_back(clip_file, tmp_path):
    path, _ = clip_file
    image = load_ultrasound(path)
    fasciculation = analyze_clip(image, MUSCLE)
    assert fasciculation is not None and fasciculation.count
    result = ImageResult(
        source_file=str(path), sop_instance_uid=image.sop_instance_uid, sop_class_uid=image.sop_class_uid,
        study_instance_uid=image.study_instance_uid, series_instance_uid=image.series_instance_uid,
        number_of_frames=image.number_of_frames, protocol=MUSCLE, fasciculation=fasciculation,
    )
    header = pydicom.dcmread(path, stop_before_pixels=True)
    document = build_measurement_report([result], [header])
    out = tmp_path / "sr.dcm"
    document.save_as(out, enforce_file_format=True)
    exe = require_tool("dciodvfy", "dicom3tools")
    proc = subprocess.run([exe, str(out)], capture_output=True, text=True, timeout=60)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
    assert not errors, "\n".join(errors)
    report = read_measurement_report(out)
    groups = [g for g in report.groups if (g.tracking_identifier or "").startswith("fasciculation")]
    assert len(groups) == 1
    group = groups[0]
    assert group.finding is not None and group.finding.value == "127954009"
    values = {m.name.meaning: m for m in group.measurements}
    assert values["Fasciculation count"].value == fasciculation.count
    assert values["Fasciculation rate"].unit is not None and values["Fasciculation rate"].unit.value == "/min"
    assert values["Analysed duration"].value == pytest.approx(fasciculation.analysed_seconds)
    times = [m for m in group.measurements if m.name.meaning == "Fasciculation time"]
    assert len(times) == fasciculation.count
    first, event = times[0], fasciculation.events[0]
    assert first.value == pytest.approx(event.time_s)
    assert first.temporal[0].range_type == "POINT" and first.temporal[0].time_offsets_s == pytest.approx((event.time_s,))
    assert first.temporal[0].image is not None and first.temporal[0].image.frame_numbers == (event.frame_number,)
    assert first.coordinates[0].graphic_type == "POINT"
    assert {p.name.meaning for p in first.nested} == {"Fasciculation duration", "Fasciculation peak speed", "Fasciculation confidence"}
