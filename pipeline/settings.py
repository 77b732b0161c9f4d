"""The analysis settings: loaded once where the program starts, passed down everywhere.

:class:`AnalysisSettings` is everything that decides what the analysis of an
image gives: the protocol rules (as validated YAML text), a forced protocol,
the nerve segmenter and the muscle boundary finder (as specs that pin each
model's SHA-256) and the software version. It is small, frozen and
picklable, so it travels unchanged to worker processes and Dask workers,
and its :attr:`~AnalysisSettings.fingerprint` says when two runs would give
the same results. Nothing below the entry points reads a configuration
file: :func:`load_analysis_settings` does it, the ``mskus`` command calls it.

:class:`Analyzer` is what the settings build in a process (the parsed rules,
the segmenter with its network loaded); :func:`build_analyzer` builds it once
per process and settings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline import __version__
from pipeline.errors import UsageError
from pipeline.protocols import DEFAULT_PROTOCOLS_PATH, Protocol, ProtocolRules
from pipeline.reference import ReferenceTables, load_reference_tables
from pipeline.segmentation.factory import (
    BoundarySpec,
    SegmenterSpec,
    load_muscle_boundary_config,
    load_segmentation_config,
)
from pipeline.yamlfile import parse_yaml_mapping, read_text

if TYPE_CHECKING:
    from pipeline.analysis import FrameResult, ImageResult
    from pipeline.loading import UltrasoundFrame, UltrasoundImage
    from pipeline.segmentation.base import NerveSegmenter
    from pipeline.segmentation.muscle_bands import BoundaryFinder

__all__ = [
    "AnalysisSettings", "Analyzer", "ModelMismatchError", "build_analyzer", "default_analyzer", "load_analysis_settings", "parse_rules",
]

logger = logging.getLogger(__name__)


class ModelMismatchError(RuntimeError):
    """A process cannot build the analysis its settings describe (another model file, another version)."""


@functools.lru_cache(maxsize=8)
def parse_rules(text: str, source: str = "<rules>") -> ProtocolRules:
    """Parse and validate protocol rules YAML (cached per text).

    Raises
    ------
    UsageError
        Invalid YAML or rules; one line naming ``source`` and the key.
    """
    return ProtocolRules.from_mapping(parse_yaml_mapping(text, source=source, empty_ok=False), source=source)


@dataclass(frozen=True)
class AnalysisSettings:
    """What every image of a run is analysed with.

    Attributes
    ----------
    rules_text : str
        Protocol rules YAML, validated (:func:`parse_rules`).
    rules_source : str
        Where the rules came from (for messages).
    protocol : str or None
        ``nerve`` or ``muscle`` to force a protocol; else the rules choose.
    nerve : SegmenterSpec
        The nerve segmenter (kind, model and its SHA-256, parameters).
    muscle : BoundarySpec
        The muscle boundary finder (kind, model and its SHA-256, parameters).
    reference : ReferenceTables
        Reference values behind the flags (``configs/reference/`` and a
        clinic's replacements); empty: no flags.
    preset : str
        The scanner preset the images were taken with (no DICOM attribute
        holds it); z-score models that name a preset apply only with it.
    software_version : str
        The mskus version that set the run up; a worker of another version refuses.
    """

    rules_text: str
    rules_source: str = "<rules>"
    protocol: str | None = None
    nerve: SegmenterSpec = field(default_factory=SegmenterSpec)
    muscle: BoundarySpec = field(default_factory=BoundarySpec)
    reference: ReferenceTables = field(default_factory=ReferenceTables)
    preset: str = ""
    software_version: str = __version__

    def __post_init__(self) -> None:
        if self.protocol is not None:
            try:
                Protocol(self.protocol)
            except ValueError:
                raise ValueError(f"unknown protocol {self.protocol!r} (choose nerve or muscle)") from None
        parse_rules(self.rules_text, self.rules_source)

    def rules(self) -> ProtocolRules:
        """The parsed rules (parsed once per process)."""
        return parse_rules(self.rules_text, self.rules_source)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of everything here that changes results (not where the rules file lay)."""
        payload = json.dumps(
            {
                "version": self.software_version,
                "rules": hashlib.sha256(self.rules_text.encode("utf-8")).hexdigest(),
                "protocol": self.protocol,
                "segmenter": self.nerve.key,
                "muscle_boundaries": self.muscle.key,
                # The rows, not the file names: the same values from another folder flag the same.
                "reference": hashlib.sha256(repr(dataclasses.replace(self.reference, files=())).encode()).hexdigest(),
                "preset": self.preset,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def describe(self) -> str:
        """One line for the log: rules, nerve segmenter, muscle boundaries."""
        return f"rules {self.rules_source}; nerve: {self.nerve.describe()}; muscle boundaries: {self.muscle.describe()}"


def load_analysis_settings(
    *,
    rules: str | os.PathLike[str] | None = None,
    segmentation: str | os.PathLike[str] | None = None,
    protocol: str | None = None,
    reference: Sequence[str | os.PathLike[str]] = (),
    preset: str = "",
) -> AnalysisSettings:
    """Read and validate the analysis configuration: the only place its files are read.

    Parameters
    ----------
    rules : path, optional
        Protocol rules YAML (default: the shipped ``configs/protocols.yaml``).
    segmentation : path, optional
        Segmentation YAML (default: ``MSKUS_SEGMENTATION_CONFIG``, else the
        shipped ``configs/segmentation.yaml``); the environment overrides of
        :mod:`pipeline.segmentation.factory` apply.
    protocol : str, optional
        Force ``nerve`` or ``muscle``.
    reference : sequence of path
        A clinic's reference tables, each replacing the shipped tables of
        its kind (:func:`pipeline.reference.load_reference_tables`).
    preset : str
        The scanner preset (for device- and preset-specific z-score models).

    Raises
    ------
    UsageError
        A file cannot be read, or a key or value in it is wrong (one line
        naming the key and the file).
    """
    source = Path(rules) if rules is not None else DEFAULT_PROTOCOLS_PATH
    text = read_text(source, what="protocol rules")
    try:
        nerve = SegmenterSpec.from_config(load_segmentation_config(segmentation))
        muscle = BoundarySpec.from_config(load_muscle_boundary_config(segmentation))
    except UsageError:
        raise
    except (OSError, ValueError) as exc:
        raise UsageError(f"segmentation configuration: {exc}") from None
    try:
        settings = AnalysisSettings(
            rules_text=text,
            rules_source=str(source),
            protocol=protocol,
            nerve=nerve,
            muscle=muscle,
            reference=load_reference_tables([Path(p) for p in reference]),
            preset=" ".join(preset.split()),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    logger.info("analysis settings: %s", settings.describe())
    return settings


@dataclass(frozen=True, eq=False)
class Analyzer:
    """The analysis a process runs: rules, forced protocol, segmenter and boundary finder, built.

    Build it with :func:`build_analyzer` (once per process and settings).
    """

    settings: AnalysisSettings
    rules: ProtocolRules
    protocol: Protocol | None
    segmenter: NerveSegmenter
    boundary_finder: BoundaryFinder

    def analyze(
        self,
        image: UltrasoundImage,
        *,
        frames: Iterable[int] | None = None,
        on_frame: Callable[[UltrasoundFrame, FrameResult], None] | None = None,
    ) -> ImageResult:
        """:func:`pipeline.analysis.analyze_image` with this analyzer's rules and segmenters."""
        from pipeline.analysis import analyze_image

        return analyze_image(
            image,
            rules=self.rules,
            protocol=self.protocol,
            segmenter=self.segmenter,
            boundary_finder=self.boundary_finder,
            frames=frames,
            on_frame=on_frame,
        )


#: Analyzers built in this process, by settings fingerprint (a worker builds each once).
_BUILT: dict[str, Analyzer] = {}


def build_analyzer(settings: AnalysisSettings) -> Analyzer:
    """The analyzer of ``settings``, built once per process (loading a model takes ~0.1 s).

    Raises
    ------
    ModelMismatchError
        This process runs another mskus version, or a model file here is
        missing or differs from the one the settings pinned.
    """
    key = settings.fingerprint
    if key in _BUILT:
        return _BUILT[key]
    if settings.software_version != __version__:
        raise ModelMismatchError(f"this process runs mskus {__version__}, the run was set up with {settings.software_version}")
    from pipeline.segmentation.factory import ModelMismatchError as SpecMismatch

    try:
        segmenter = settings.nerve.build()
        finder = settings.muscle.build()
    except SpecMismatch as exc:
        raise ModelMismatchError(str(exc)) from None
    protocol = Protocol(settings.protocol) if settings.protocol is not None else None
    analyzer = Analyzer(settings, settings.rules(), protocol, segmenter, finder)
    if len(_BUILT) >= 4:
        _BUILT.pop(next(iter(_BUILT)))
    _BUILT[key] = analyzer
    return analyzer


def default_analyzer(*, protocol: str | None = None) -> Analyzer:
    """The shipped configuration's analyzer, for scripts, notebooks and benchmarks (entry points).

    Reads the configuration files (:func:`load_analysis_settings`); library
    code never calls this, it is given an :class:`Analyzer`.
    """
    return build_analyzer(load_analysis_settings(protocol=protocol))
