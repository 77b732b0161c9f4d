"""Settings of the fasciculation detector (every number that changes a result, with its unit)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["FasciculationSettings"]


@dataclass(frozen=True)
class FasciculationSettings:
    """Parameters of :class:`pipeline.cine.detector.FasciculationDetector`.

    Attributes
    ----------
    work_mm_per_px : float
        Pixel size (mm) the ROI is resampled to before optical flow (area
        averaging); coarser than the scanner's pixels, which speckle tracking
        does not need, and the main speed lever.
    max_work_pixels : int
        Upper bound on the working image's width and height (pixels).
    roi_margin_mm : float
        Kept away from each edge of the ROI (mm): flow is unreliable there.
    cell_mm : float
        Side of the square cells residual motion is averaged over (mm).
    baseline_window_s : float
        Window of the running median that removes slow and sustained motion
        (s). A centred median keeps out-and-back pulses shorter than half the
        window and removes steps and monotonic ramps (a held contraction).
    threshold_sigmas : float
        Detection threshold on the local displacement, in robust noise levels.
    min_displacement_mm : float
        Smallest peak local displacement reported (mm).
    min_duration_s, max_duration_s : float
        Accepted duration of an event (s): a twitch lasts about 0.1 to 1 s.
    max_extent_fraction : float
        Largest share of the ROI's cells an event may involve: beyond it the
        motion is not localised (whole-muscle motion, voluntary contraction).
    widespread_fraction : float
        A frame in which more than this share of cells is displaced is
        excluded (widespread non-rigid motion).
    max_global_speed_mm_s : float
        A frame pair whose global (probe, breathing) motion is faster is
        excluded: flow and speckle are unreliable (mm/s).
    sharpness_band : tuple of float
        Accepted ratio of a frame's sharpness (variance of the Laplacian) to
        the recent median: below the band the frame is blurred, above it
        noisy; outside it is excluded.
    brightness_band : tuple of float
        Accepted ratio of a frame's mean gray value to the recent median
        (flicker, gain jumps).
    pulsatility_lag_s : tuple of float
        Lags (s) at which a cell's displacement that repeats itself is taken
        for a pulsating vessel (heart rate 30 to 180 beats/min).
    pulsatility_min_autocorrelation : float
        Autocorrelation peak above which a cell counts as pulsatile.
    merge_distance_mm, merge_time_s : float
        Candidates closer in space and time are one event.
    """

    work_mm_per_px: float = 0.4
    max_work_pixels: int = 160
    roi_margin_mm: float = 1.5
    cell_mm: float = 2.4
    baseline_window_s: float = 2.0
    threshold_sigmas: float = 5.0
    min_displacement_mm: float = 0.12
    min_duration_s: float = 0.08
    max_duration_s: float = 1.5
    max_extent_fraction: float = 0.25
    widespread_fraction: float = 0.3
    max_global_speed_mm_s: float = 25.0
    sharpness_band: tuple[float, float] = (0.6, 1.6)
    brightness_band: tuple[float, float] = (0.9, 1.1)
    pulsatility_lag_s: tuple[float, float] = (0.33, 2.0)
    pulsatility_min_autocorrelation: float = 0.4
    merge_distance_mm: float = 5.0
    merge_time_s: float = 0.3

    def as_parameters(self) -> tuple[str, ...]:
        """``name=value`` strings for Algorithm Identification."""
        out = []
        for key, value in asdict(self).items():
            if isinstance(value, tuple):
                text = ",".join(f"{v:g}" for v in value)
            elif isinstance(value, float):
                text = f"{value:g}"
            else:
                text = str(value)
            out.append(f"{key}={text}")
        return tuple(out)
