"""Test helpers: the analysis entry points with the shipped configuration filled in.

The library never loads a configuration below its entry points
(:func:`pipeline.settings.load_analysis_settings`); tests that only care about
one piece pass that piece and take the shipped rules, segmenter and boundary
finder for the rest from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.analysis import ImageResult
from pipeline.analysis import analyze_image as _analyze_image
from pipeline.loading import UltrasoundImage
from pipeline.protocols import Protocol, ProtocolRules
from pipeline.settings import Analyzer, default_analyzer

__all__ = ["analyze_file", "analyze_image", "shipped_analyzer"]


def shipped_analyzer() -> Analyzer:
    """The analyzer of the shipped configuration (and the environment's overrides), built once."""
    return default_analyzer()


def analyze_image(
    image: UltrasoundImage,
    *,
    rules: ProtocolRules | None = None,
    protocol: Protocol | str | None = None,
    segmenter: Any = None,
    boundary_finder: Any = None,
    frames: Iterable[int] | None = None,
    on_frame: Callable[..., None] | None = None,
) -> ImageResult:
    """:func:`pipeline.analysis.analyze_image`, the shipped pieces where none is given."""
    shipped = shipped_analyzer()
    return _analyze_image(
        image,
        rules=rules or shipped.rules,
        segmenter=segmenter or shipped.segmenter,
        boundary_finder=boundary_finder or shipped.boundary_finder,
        protocol=protocol,
        frames=frames,
        on_frame=on_frame,
    )


def analyze_file(path: str | os.PathLike[str], analyzer: Analyzer | None = None, *, protocol: str | None = None) -> ImageResult:
    """:func:`pipeline.analysis.analyze_file` with the shipped analyzer (``protocol`` forced) by default."""
    from pipeline.analysis import analyze_file as _analyze_file

    return _analyze_file(path, analyzer or default_analyzer(protocol=protocol))
