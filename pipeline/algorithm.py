"""Algorithm identity: what produced a measurement (name, version, parameters).

Every segmenter and measurer says who it is; :func:`pipeline.analysis.analyze_frame`
stamps the identity on each frame result, and the SR writer writes exactly
what the result carries (TID 4019 Algorithm Identification). Nothing reads
module constants or configuration at report time, so renaming a constant
cannot change a report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pipeline import __version__
from pipeline.measurements.muscle_parameters import measurement_parameters

__all__ = ["AlgorithmIdentity", "format_parameter", "muscle_identity", "segmenter_identity"]


def format_parameter(name: str, value: object) -> str:
    """``name=value`` as the SR writes a parameter (floats with 10 significant digits)."""
    if isinstance(value, float):
        return f"{name}={value:.10g}"
    if isinstance(value, (tuple, list)):
        return f"{name}=" + ",".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in value)
    return f"{name}={value}"


@dataclass(frozen=True)
class AlgorithmIdentity:
    """Name, version and the parameters that affect the results.

    Attributes
    ----------
    name : str
        e.g. ``mskus-learned-nerve``.
    version : str
        e.g. the model's version and the first 12 hex digits of its SHA-256.
    parameters : tuple of str
        ``name=value`` for every setting that changes results.

    Raises
    ------
    ValueError
        An empty name or version.
    """

    name: str
    version: str
    parameters: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise ValueError("an algorithm needs a name and a version")

    def with_parameters(self, extra: Iterable[str]) -> AlgorithmIdentity:
        """This identity with more ``name=value`` parameters appended."""
        return AlgorithmIdentity(self.name, self.version, (*self.parameters, *extra))

    @classmethod
    def of(cls, name: str, version: str, parameters: Mapping[str, object], *, notes: Iterable[str] = ()) -> AlgorithmIdentity:
        """An identity from a parameter mapping (sorted by name), after the mskus version and ``notes``."""
        formatted = (format_parameter(k, v) for k, v in sorted(parameters.items()))
        return cls(name, version, (f"mskus={__version__}", *notes, *formatted))


def segmenter_identity(segmenter: object) -> AlgorithmIdentity:
    """The identity of a nerve segmenter or muscle boundary finder.

    The interface of both (:class:`pipeline.segmentation.base.NerveSegmenter`,
    :class:`pipeline.measurements.muscle.BoundaryFinder`): ``name``,
    ``version``, optionally ``parameters.as_dict()`` (or ``as_dict()`` on the
    object itself) and ``fallback_note`` (why a stand-in is used).
    """
    name = str(getattr(segmenter, "name", "") or type(segmenter).__name__)
    version = str(getattr(segmenter, "version", "") or "unknown")
    notes = []
    fallback = str(getattr(segmenter, "fallback_note", "") or "")
    if fallback:
        notes.append(f"fallback={fallback}")
    parameters = getattr(segmenter, "parameters", None)
    as_dict = getattr(parameters, "as_dict", None) or getattr(segmenter, "as_dict", None)
    values = as_dict() if callable(as_dict) else {}
    return AlgorithmIdentity.of(name, version, values, notes=notes)


def muscle_identity() -> AlgorithmIdentity:
    """Identity of the muscle thickness / echogenicity measurement (the boundary finder is named per
    measurement, in its ``boundaries`` note)."""
    return AlgorithmIdentity.of("mskus-muscle", __version__, measurement_parameters())
