"""Progress of a batch run: a tqdm bar on a terminal, plain log lines otherwise.

Counts frames (the unit of work, so the rate and ETA mean something when
studies differ in size), with studies done and error rows alongside. When
stderr is not a terminal (a cluster job, a log file) a line is logged every
``interval`` seconds and once at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

__all__ = ["BatchProgress"]

logger = logging.getLogger("pipeline.batch.progress")


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class BatchProgress:
    """Frames done out of a total, studies, errors, rate and ETA.

    Parameters
    ----------
    total_frames, total_studies : int
        What this run has to do (skipped studies excluded).
    stream : text stream, optional
        Where the bar goes (stderr by default).
    bar : bool, optional
        Force the bar on or off; by default on when ``stream`` is a terminal.
    interval : float
        Seconds between log lines when there is no bar.
    """

    def __init__(
        self,
        total_frames: int,
        total_studies: int,
        *,
        stream: TextIO | None = None,
        bar: bool | None = None,
        interval: float = 10.0,
    ) -> None:
        self.total_frames = total_frames
        self.total_studies = total_studies
        self.frames = 0
        self.studies = 0
        self.errors = 0
        self._interval = interval
        self._started = time.monotonic()
        self._last_line = self._started
        stream = stream if stream is not None else sys.stderr
        use_bar = bar if bar is not None else bool(getattr(stream, "isatty", lambda: False)())
        self._bar = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total_frames, unit="frame", file=stream, dynamic_ncols=True, smoothing=0.1)
            self._bar.set_postfix_str(self._postfix())

    def _postfix(self) -> str:
        return f"studies {self.studies}/{self.total_studies}, errors {self.errors}"

    def advance(self, *, frames: int, studies: int = 1, errors: int = 0) -> None:
        """Count a finished study."""
        self.frames += frames
        self.studies += studies
        self.errors += errors
        if self._bar is not None:
            self._bar.update(frames)
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._log_line(now)

    def _log_line(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.frames / elapsed if elapsed > 0 else 0.0
        remaining = (self.total_frames - self.frames) / rate if rate > 0 else float("nan")
        eta = _clock(remaining) if rate > 0 else "?"
        logger.info(
            "batch: %d/%d frames, %d/%d studies, %d error rows, %.1f frames/s, elapsed %s, ETA %s",
            self.frames,
            self.total_frames,
            self.studies,
            self.total_studies,
            self.errors,
            rate,
            _clock(elapsed),
            eta,
        )

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def close(self) -> None:
        """Finish the bar, or log the last line."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix())
            self._bar.close()
            self._bar = None
        else:
            self._log_line(time.monotonic())

    def __enter__(self) -> BatchProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
