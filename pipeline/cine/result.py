"""What the fasciculation analysis of one clip found (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FasciculationEvent", "FasciculationResult"]


@dataclass(frozen=True)
class FasciculationEvent:
    """One detected fasciculation.

    Attributes
    ----------
    time_s : float
        Time of peak local displacement, from the clip's first frame (s).
    frame_index : int
        0-based frame of peak displacement (``frame_number`` is 1-based).
    duration_s : float
        Time the local displacement stays above a quarter of its peak (s).
    x_px, y_px : float
        Centre of the displaced patch in frame pixels (pixel-centre
        coordinates, column and row).
    x_mm, y_mm : float
        The same centre in mm from the top-left pixel centre of the frame.
    peak_displacement_mm : float
        Largest local displacement after global motion removal (mm).
    peak_speed_mm_s : float
        Largest local speed during the event (mm/s).
    confidence : float
        0 to 1: how far the peak stands above the detection threshold (a
        heuristic score, not a calibrated probability).
    """

    time_s: float
    frame_index: int
    duration_s: float
    x_px: float
    y_px: float
    x_mm: float
    y_mm: float
    peak_displacement_mm: float
    peak_speed_mm_s: float
    confidence: float

    @property
    def frame_number(self) -> int:
        return self.frame_index + 1


@dataclass(frozen=True)
class FasciculationResult:
    """Per-clip fasciculation values, or why there are none.

    Attributes
    ----------
    count : int or None
        Events detected; ``None`` when refused.
    rate_per_min : float or None
        Events per minute of analysed time; ``None`` when refused or when no
        time could be analysed.
    analysed_seconds, excluded_seconds : float
        Clip time analysed and excluded (s); they add up to the clip length.
    excluded_frames : int
        Frames excluded (too much global motion, blur, noise, flicker or
        widespread non-rigid motion).
    number_of_frames : int
        Frames in the clip.
    refusal_reason : str
        Why nothing was measured (empty when measured).
    events : tuple of FasciculationEvent
        In time order.
    exclusions : tuple of (str, int)
        Excluded frames per reason (``"global motion"``, ``"blur"``,
        ``"noise"``, ``"flicker"``, ``"widespread motion"``).
    timing_source : str
        The attribute the frame times came from.
    frames_per_second : float
        Median frame rate (frames/s).
    roi_px : tuple of int
        The analysed box (x0, y0, x1, y1), inclusive frame pixels.
    pulsatile_cells : int
        Cells found moving periodically (a pulsating vessel) and not searched.
    parameters : tuple of str
        The settings used, ``name=value``.
    """

    count: int | None
    rate_per_min: float | None
    analysed_seconds: float
    excluded_seconds: float
    excluded_frames: int
    number_of_frames: int
    refusal_reason: str = ""
    events: tuple[FasciculationEvent, ...] = ()
    exclusions: tuple[tuple[str, int], ...] = ()
    timing_source: str = ""
    frames_per_second: float = 0.0
    roi_px: tuple[int, int, int, int] | None = None
    pulsatile_cells: int = 0
    parameters: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        return self.count is not None

    @classmethod
    def refused(cls, reason: str, *, number_of_frames: int = 0, parameters: tuple[str, ...] = ()) -> FasciculationResult:
        """A result with no values and the reason."""
        return cls(
            count=None, rate_per_min=None, analysed_seconds=0.0, excluded_seconds=0.0, excluded_frames=0,
            number_of_frames=number_of_frames, refusal_reason=" ".join(reason.split()), parameters=parameters,
        )
