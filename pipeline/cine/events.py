"""Fasciculation events from the local motion of a grid of cells over time.

Input: for every frame, the residual (global motion removed) displacement of
each cell of the ROI since the previous analysed frame (mm). Steps:

1. **Local displacement**: each cell's cumulated residual displacement, less
   its running median over ``baseline_window_s`` (centred). The median of a
   window follows steps and monotonic ramps exactly (a held voluntary
   contraction, slow drift left by the global fit) but not an out-and-back
   pulse shorter than half the window: what is left is twitch-and-relax
   motion.
2. **Noise level** per cell (median displacement magnitude over time, not
   below the median over cells) and a threshold of ``threshold_sigmas``
   noise levels, at least ``min_displacement_mm``.
3. **Exclusions**: frames excluded upstream (global motion, blur, noise,
   flicker) and frames where more than ``widespread_fraction`` of the cells
   exceed their threshold (non-rigid motion of the whole muscle) are not
   searched; cells whose displacement repeats itself at a heart-rate lag
   (autocorrelation peak above ``pulsatility_min_autocorrelation``: a
   pulsating vessel) and their neighbours are not searched.
4. **Candidates**: connected regions in (time, row, column) above the
   threshold; kept when localised (at most ``max_extent_fraction`` of the
   cells), brief (``min_duration_s`` to ``max_duration_s`` above a quarter of
   the peak) and not touching a widespread-motion period; candidates closer
   than ``merge_distance_mm`` and ``merge_time_s`` are one event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline.cine.result import FasciculationEvent
from pipeline.cine.settings import FasciculationSettings

__all__ = ["CellGrid", "EventDetection", "detect_events", "pulsatile_cells"]

logger = logging.getLogger(__name__)

#: Median of a 2-D Gaussian vector's magnitude, in units of its per-axis SD (Rayleigh).
_RAYLEIGH_MEDIAN = 1.1774
#: Event duration is the time the displacement stays above this share of its peak.
DURATION_LEVEL = 0.25
#: Rise of the autocorrelation from its lowest point at shorter lags that marks a repeat.
MIN_REPEAT_PROMINENCE = 0.3


@dataclass(frozen=True)
class CellGrid:
    """Where the cells lie: ``centre_px(row, col)`` gives the frame pixel (x, y) of a cell position."""

    shape: tuple[int, int]
    cell_mm: tuple[float, float]
    centre_px: Callable[[float, float], tuple[float, float]]
    mm_per_px: tuple[float, float]
    active: np.ndarray  # (ny, nx) bool: cells inside the ROI


@dataclass(frozen=True)
class EventDetection:
    """Events found, frames excluded for widespread motion, and cells not searched (pulsatile)."""

    events: tuple[FasciculationEvent, ...]
    widespread_frames: np.ndarray
    pulsatile: np.ndarray


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 else k + 1


def pulsatile_cells(
    magnitude: np.ndarray, usable: np.ndarray, fps: float, lag_s: tuple[float, float], min_autocorrelation: float,
    threshold: np.ndarray,
) -> np.ndarray:
    """Cells whose displacement magnitude repeats itself at a heart-rate lag.

    Parameters
    ----------
    magnitude : ndarray, shape (T, ny, nx)
        Local displacement magnitude (mm).
    usable : ndarray of bool, shape (T,)
        Frames to use.
    fps : float
        Frame rate (frames/s).
    lag_s : (float, float)
        Lag range searched (s).
    min_autocorrelation : float
        Peak normalised autocorrelation that marks a cell.
    threshold : ndarray, shape (ny, nx)
        Detection threshold: a cell that never reaches half of it is not marked.
    """
    t_count = magnitude.shape[0]
    lo, hi = max(2, int(np.floor(lag_s[0] * fps))), int(np.ceil(lag_s[1] * fps))
    if t_count < 3 * max(hi, 1) or hi <= lo:
        return np.zeros(magnitude.shape[1:], dtype=bool)
    x = np.where(usable[:, None, None], magnitude, 0.0).reshape(t_count, -1).astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    x[~usable] = 0.0
    # Only lags up to ``hi`` are needed: summed lag by lag, memory stays at one copy of the clip's
    # cell magnitudes however long the clip (an FFT over the whole clip would hold several).
    ac = np.empty((hi + 1, x.shape[1]))
    for lag in range(hi + 1):
        ac[lag] = np.einsum("ij,ij->j", x[: t_count - lag], x[lag:])
    ac /= np.maximum(ac[0:1], 1e-12)
    # Normalise for the shrinking overlap at longer lags.
    ac[lo : hi + 1] *= t_count / (t_count - np.arange(lo, hi + 1))[:, None]
    # A repeat is a peak after a dip: a single broad pulse correlates with itself at short lags
    # without the dip, a pulsating vessel dips between beats.
    dip_before = np.minimum.accumulate(ac[1:], axis=0)[lo - 1 : hi]
    repeats = (ac[lo : hi + 1] > min_autocorrelation) & (ac[lo : hi + 1] - dip_before > MIN_REPEAT_PROMINENCE)
    peak = repeats.any(axis=0).reshape(magnitude.shape[1:])
    strong = magnitude[usable].max(axis=0) > 0.5 * threshold if usable.any() else np.zeros_like(peak, dtype=bool)
    return peak & strong


def detect_events(
    residual_mm: np.ndarray,
    usable: np.ndarray,
    frame_times_s: np.ndarray,
    grid: CellGrid,
    settings: FasciculationSettings,
) -> EventDetection:
    """Find fasciculations in the residual cell motion of a clip.

    Parameters
    ----------
    residual_mm : ndarray, shape (T, ny, nx, 2)
        Per frame, each cell's residual displacement (x, y) since the
        previous analysed frame (mm); zero for the first and excluded frames.
    usable : ndarray of bool, shape (T,)
        Frames analysed (not excluded upstream).
    frame_times_s : ndarray, shape (T,)
        Time of each frame (s).
    grid : CellGrid
        Cell geometry.
    settings : FasciculationSettings
    """
    t_count, ny, nx, _ = residual_mm.shape
    no_events = EventDetection((), np.zeros(t_count, dtype=bool), np.zeros((ny, nx), dtype=bool))
    if t_count < 3 or not usable.any():
        return no_events
    fps = float(1.0 / np.median(np.diff(frame_times_s)))
    # Whole-clip arrays at cell resolution (T x cells x 2, float32), dropped as soon as the next
    # one is made, so a long clip needs about three of them at once.
    position = np.cumsum(residual_mm, axis=0, dtype=np.float32)
    window = _odd(settings.baseline_window_s * fps)
    local = ndimage.median_filter(position, size=(window, 1, 1, 1), mode="nearest")
    np.subtract(position, local, out=local)
    del position
    local = ndimage.gaussian_filter(local, sigma=(0, 0.7, 0.7, 0), mode="nearest")
    magnitude = np.hypot(local[..., 0], local[..., 1])
    active = grid.active
    if not active.any():
        return no_events
    noise_cell = np.median(magnitude[usable], axis=0) / _RAYLEIGH_MEDIAN
    noise_floor = float(np.median(noise_cell[active]))
    threshold = np.maximum(settings.threshold_sigmas * np.maximum(noise_cell, noise_floor), settings.min_displacement_mm)
    above = (magnitude > threshold) & active
    share = above.reshape(t_count, -1).sum(axis=1) / max(int(active.sum()), 1)
    widespread = (share > settings.widespread_fraction) & usable
    searchable = usable & ~widespread
    pulsatile = pulsatile_cells(
        magnitude, searchable, fps, settings.pulsatility_lag_s, settings.pulsatility_min_autocorrelation, threshold
    )
    pulsatile_zone = ndimage.binary_dilation(pulsatile, structure=np.ones((3, 3), dtype=bool)) if pulsatile.any() else pulsatile
    candidates = above & searchable[:, None, None] & ~pulsatile_zone[None]
    labels, count = ndimage.label(candidates, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return EventDetection((), widespread, pulsatile)
    # Frames near widespread motion: an event touching them is the tail of that motion.
    near_widespread = ndimage.binary_dilation(widespread, iterations=max(1, int(round(0.2 * fps)))) if widespread.any() else widespread
    smoothed_residual = ndimage.gaussian_filter(residual_mm, sigma=(0, 0.7, 0.7, 0), mode="nearest")
    durations = np.append(np.diff(frame_times_s), np.median(np.diff(frame_times_s)))
    n_active = int(active.sum())
    raw: list[tuple[float, FasciculationEvent]] = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        member = labels[region] == index
        cells = member.any(axis=0)
        if cells.sum() > settings.max_extent_fraction * n_active:
            continue
        snr = np.where(member, magnitude[region] / threshold[region[1:]], 0.0)
        tp, yp, xp = np.unravel_index(int(np.argmax(snr)), snr.shape)
        t_peak, y_peak, x_peak = tp + region[0].start, yp + region[1].start, xp + region[2].start
        series = magnitude[:, y_peak, x_peak]
        peak = float(series[t_peak])
        level = DURATION_LEVEL * peak
        start = t_peak
        while start > 0 and series[start - 1] > level:
            start -= 1
        stop = t_peak
        while stop < t_count - 1 and series[stop + 1] > level:
            stop += 1
        duration = float(frame_times_s[stop] - frame_times_s[start] + durations[stop])
        if not settings.min_duration_s <= duration <= settings.max_duration_s:
            continue
        if near_widespread[start : stop + 1].any():
            continue
        # Location: magnitude-weighted centroid of the event's cells at the peak frame.
        weights = np.where(member[tp], magnitude[t_peak, region[1], region[2]], 0.0)
        total = float(weights.sum())
        rows_idx, cols_idx = np.mgrid[region[1], region[2]]
        cy = float((weights * rows_idx).sum() / total) if total > 0 else float(y_peak)
        cx = float((weights * cols_idx).sum() / total) if total > 0 else float(x_peak)
        x_px, y_px = grid.centre_px(cy, cx)
        step = smoothed_residual[start : stop + 1, y_peak, x_peak]
        speed = float((np.hypot(step[:, 0], step[:, 1]) / durations[start : stop + 1]).max())
        ratio = peak / float(threshold[y_peak, x_peak])
        confidence = float(np.clip(1.0 - np.exp(-1.5 * (ratio - 1.0)), 0.0, 1.0))
        event = FasciculationEvent(
            time_s=float(frame_times_s[t_peak]),
            frame_index=int(t_peak),
            duration_s=duration,
            x_px=float(x_px),
            y_px=float(y_px),
            x_mm=float(x_px * grid.mm_per_px[0]),
            y_mm=float(y_px * grid.mm_per_px[1]),
            peak_displacement_mm=peak,
            peak_speed_mm_s=speed,
            confidence=confidence,
        )
        raw.append((ratio, event))
    return EventDetection(_merge(raw, settings), widespread, pulsatile)


def _merge(raw: list[tuple[float, FasciculationEvent]], settings: FasciculationSettings) -> tuple[FasciculationEvent, ...]:
    """Strongest first; a candidate near (space and time) a kept one is the same event."""
    kept: list[FasciculationEvent] = []
    for _, event in sorted(raw, key=lambda item: -item[0]):
        if any(
            abs(event.time_s - other.time_s) < settings.merge_time_s
            and np.hypot(event.x_mm - other.x_mm, event.y_mm - other.y_mm) < settings.merge_distance_mm
            for other in kept
        ):
            continue
        kept.append(event)
    return tuple(sorted(kept, key=lambda e: e.time_s))
