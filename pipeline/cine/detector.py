"""Streaming fasciculation detector: frames in one at a time, a :class:`FasciculationResult` out.

Per frame (constant memory: the previous working frame and a few numbers per
cell are kept, never the frames): the ROI is resampled to the working size,
its quality judged (:mod:`pipeline.cine.quality`), dense flow computed from
the last good frame (:mod:`pipeline.cine.flow`), the global affine motion
fitted and removed (:mod:`pipeline.cine.motion`) and the residual averaged
over a grid of cells. :meth:`FasciculationDetector.finish` runs the event
search on the cell series (:mod:`pipeline.cine.events`), which hold 8 bytes
per cell per frame (about 5 MB for a 60 s clip at 50 frames/s).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable

import numpy as np

from pipeline.calibration import PixelBox
from pipeline.cine.events import CellGrid, detect_events
from pipeline.cine.flow import WorkGeometry, dense_flow, work_geometry
from pipeline.cine.motion import estimate_global_motion, remove_global_motion
from pipeline.cine.quality import ExclusionReason, FrameQualityMonitor, frame_quality
from pipeline.cine.result import FasciculationResult
from pipeline.cine.settings import FasciculationSettings
from pipeline.cine.timing import FrameTiming

__all__ = ["FasciculationDetector", "detect_fasciculations"]

logger = logging.getLogger(__name__)

#: Share of a cell that must lie inside the ROI mask for the cell to be searched.
MIN_CELL_COVERAGE = 0.5


class FasciculationDetector:
    """Accumulates the local motion of a clip frame by frame.

    Parameters
    ----------
    timing : FrameTiming
        Acquisition time of every frame.
    roi : PixelBox
        Frame pixels analysed (the tissue region, or the muscle's box).
    mm_per_px_x, mm_per_px_y : float
        Calibration (mm per frame pixel).
    roi_mask : ndarray of bool, optional
        Frame-sized mask of the muscle; cells mostly outside it are not searched.
    settings : FasciculationSettings, optional
    """

    def __init__(
        self,
        timing: FrameTiming,
        roi: PixelBox,
        mm_per_px_x: float,
        mm_per_px_y: float,
        *,
        roi_mask: np.ndarray | None = None,
        settings: FasciculationSettings | None = None,
    ) -> None:
        self.settings = settings or FasciculationSettings()
        self.timing = timing
        self.mm_per_px = (float(mm_per_px_x), float(mm_per_px_y))
        self.geometry: WorkGeometry = work_geometry(
            roi, mm_per_px_x, mm_per_px_y, work_mm_per_px=self.settings.work_mm_per_px,
            max_work_pixels=self.settings.max_work_pixels, margin_mm=self.settings.roi_margin_mm,
        )
        rows, cols = self.geometry.work_shape
        self.cell_px = (
            max(2, int(round(self.settings.cell_mm / self.geometry.mm_per_work_px_y))),
            max(2, int(round(self.settings.cell_mm / self.geometry.mm_per_work_px_x))),
        )
        self.cells_shape = (max(1, rows // self.cell_px[0]), max(1, cols // self.cell_px[1]))
        self.cell_origin = ((rows - self.cells_shape[0] * self.cell_px[0]) // 2, (cols - self.cells_shape[1] * self.cell_px[1]) // 2)
        self.active_cells = self._active_cells(roi_mask)
        self._monitor = FrameQualityMonitor(self.settings.sharpness_band, self.settings.brightness_band)
        self._previous: np.ndarray | None = None
        self._previous_time = 0.0
        self._residual: list[np.ndarray] = []
        self._exclusions: list[ExclusionReason | None] = []

    def _active_cells(self, roi_mask: np.ndarray | None) -> np.ndarray:
        ny, nx = self.cells_shape
        if roi_mask is None:
            return np.ones((ny, nx), dtype=bool)
        work_mask = self.geometry.to_work(roi_mask.astype(np.uint8) * 255).astype(np.float32) / 255.0
        return self._cell_mean(work_mask[..., None])[..., 0] >= MIN_CELL_COVERAGE

    def _cell_mean(self, field: np.ndarray) -> np.ndarray:
        (ny, nx), (cy, cx), (oy, ox) = self.cells_shape, self.cell_px, self.cell_origin
        block = field[oy : oy + ny * cy, ox : ox + nx * cx]
        return block.reshape(ny, cy, nx, cx, field.shape[-1]).mean(axis=(1, 3))

    @property
    def frames_seen(self) -> int:
        return len(self._exclusions)

    def push(self, gray: np.ndarray) -> None:
        """Add the next frame (8-bit gray, full frame)."""
        index = len(self._exclusions)
        if index >= self.timing.number_of_frames:
            raise ValueError(f"more frames than the timing describes ({self.timing.number_of_frames})")
        now = self.timing.frame_times_s[index]
        box = self.geometry.box
        work = self.geometry.to_work(gray)
        zero = np.zeros((*self.cells_shape, 2), dtype=np.float32)
        reason = self._monitor.judge(frame_quality(gray[box.y0 : box.y1 + 1, box.x0 : box.x1 + 1]))
        if reason is not None or self._previous is None:
            self._exclusions.append(reason)
            self._residual.append(zero)
            if reason is None:
                self._previous, self._previous_time = work, now
            return
        flow = dense_flow(self._previous, work)
        motion = estimate_global_motion(flow)
        noisy = self._monitor.judge_flow(motion.residual_px)
        if noisy is not None:
            self._exclusions.append(noisy)
            self._residual.append(zero)
            return
        dt = max(now - self._previous_time, 1e-6)
        gx, gy = motion.translation_px
        global_speed = float(np.hypot(gx * self.geometry.mm_per_work_px_x, gy * self.geometry.mm_per_work_px_y)) / dt
        if global_speed > self.settings.max_global_speed_mm_s:
            self._exclusions.append(ExclusionReason.GLOBAL_MOTION)
            self._residual.append(zero)
            self._previous, self._previous_time = work, now
            return
        residual = self._cell_mean(remove_global_motion(flow, motion))
        residual[..., 0] *= self.geometry.mm_per_work_px_x
        residual[..., 1] *= self.geometry.mm_per_work_px_y
        self._exclusions.append(None)
        self._residual.append(residual.astype(np.float32))
        self._previous, self._previous_time = work, now

    def finish(self) -> FasciculationResult:
        """Search the accumulated motion for events and summarise the clip."""
        settings = self.settings
        parameters = settings.as_parameters()
        n = len(self._exclusions)
        if n < 2:
            return FasciculationResult.refused("a clip needs at least two frames", number_of_frames=n, parameters=parameters)
        times = np.asarray(self.timing.frame_times_s[:n], dtype=float)
        durations = FrameTiming(tuple(times), self.timing.source).frame_durations_s
        usable = np.array([reason is None for reason in self._exclusions])
        grid = CellGrid(
            shape=self.cells_shape,
            cell_mm=(self.cell_px[1] * self.geometry.mm_per_work_px_x, self.cell_px[0] * self.geometry.mm_per_work_px_y),
            centre_px=self._cell_centre_px,
            mm_per_px=self.mm_per_px,
            active=self.active_cells,
        )
        residual = np.stack(self._residual)
        self._residual = []  # the stacked copy replaces the per-frame arrays
        detection = detect_events(residual, usable, times, grid, settings)
        del residual
        reasons: list[ExclusionReason | None] = list(self._exclusions)
        for k in np.flatnonzero(detection.widespread_frames):
            reasons[k] = ExclusionReason.WIDESPREAD_MOTION
        excluded = np.array([r is not None for r in reasons])
        excluded_seconds = float(durations[excluded].sum())
        analysed_seconds = float(durations.sum()) - excluded_seconds
        counts = Counter(r.value for r in reasons if r is not None)
        events = detection.events
        rate = len(events) / (analysed_seconds / 60.0) if analysed_seconds > 0 else None
        box = self.geometry.box
        result = FasciculationResult(
            count=len(events),
            rate_per_min=rate,
            analysed_seconds=analysed_seconds,
            excluded_seconds=excluded_seconds,
            excluded_frames=int(excluded.sum()),
            number_of_frames=n,
            events=events,
            exclusions=tuple(sorted(counts.items())),
            timing_source=self.timing.source,
            frames_per_second=self.timing.frames_per_second,
            roi_px=box.as_tuple(),
            pulsatile_cells=int(detection.pulsatile.sum()),
            parameters=parameters,
        )
        logger.info(
            "fasciculation: %d event(s) in %.1f s analysed (%.1f s excluded: %s)",
            result.count, analysed_seconds, excluded_seconds, dict(counts) or "none",
        )
        return result

    def _cell_centre_px(self, row: float, col: float) -> tuple[float, float]:
        (cy, cx), (oy, ox) = self.cell_px, self.cell_origin
        return self.geometry.to_frame_px(ox + (col + 0.5) * cx - 0.5, oy + (row + 0.5) * cy - 0.5)


def detect_fasciculations(
    frames: Iterable[np.ndarray],
    timing: FrameTiming,
    roi: PixelBox,
    mm_per_px_x: float,
    mm_per_px_y: float,
    *,
    roi_mask: np.ndarray | None = None,
    settings: FasciculationSettings | None = None,
) -> FasciculationResult:
    """Run the detector over an iterable of 8-bit gray frames, consumed one at a time.

    Parameters
    ----------
    frames : iterable of ndarray
        Frames in acquisition order (a generator is never materialised).
    timing, roi, mm_per_px_x, mm_per_px_y, roi_mask, settings
        As for :class:`FasciculationDetector`.
    """
    detector = FasciculationDetector(timing, roi, mm_per_px_x, mm_per_px_y, roi_mask=roi_mask, settings=settings)
    for gray in frames:
        detector.push(gray)
    return detector.finish()
