"""Cine clips: fasciculation detection in muscle ultrasound (issue 20, CONTRACT.md sections 2, 4 and 5).

- :mod:`pipeline.cine.timing`: when each frame was acquired (or why that is unknown);
- :mod:`pipeline.cine.flow`: the working geometry and dense optical flow;
- :mod:`pipeline.cine.motion`: global (probe, breathing) motion estimated and removed;
- :mod:`pipeline.cine.quality`: frames excluded for blur, noise, flicker or global motion;
- :mod:`pipeline.cine.events`: events from the local motion of a grid of cells;
- :mod:`pipeline.cine.detector`: the streaming detector (frames in one at a time);
- :mod:`pipeline.cine.clip`: :func:`analyze_clip`, the entry point for an ultrasound image;
- :mod:`pipeline.cine.rows`: ``measurements.csv`` and ``events.csv`` rows.
"""

from pipeline.cine.detector import FasciculationDetector, detect_fasciculations
from pipeline.cine.result import FasciculationEvent, FasciculationResult
from pipeline.cine.settings import FasciculationSettings
from pipeline.cine.timing import FrameTiming, NoFrameTimingError, frame_timing

__all__ = [
    "FasciculationDetector",
    "FasciculationEvent",
    "FasciculationResult",
    "FasciculationSettings",
    "FrameTiming",
    "NoFrameTimingError",
    "detect_fasciculations",
    "frame_timing",
]
