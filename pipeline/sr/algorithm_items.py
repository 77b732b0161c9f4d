"""TID 4019 Algorithm Identification of an SR group, from the identity a frame result carries."""

from __future__ import annotations

import functools

import highdicom as hd

from pipeline.algorithm import AlgorithmIdentity, muscle_identity, segmenter_identity
from pipeline.analysis import FrameResult

__all__ = ["AlgorithmInfo", "algorithm_template", "frame_algorithm", "muscle_algorithm", "nerve_algorithm"]


#: What TID 4019 Algorithm Identification records (name, version, parameters): the identity a
#: frame result carries (:class:`pipeline.algorithm.AlgorithmIdentity`), written as it is.
AlgorithmInfo = AlgorithmIdentity


def algorithm_template(info: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    """The TID 4019 items, built once per algorithm and shared by every group that cites it.

    A report repeats them in each group (up to ~20 TEXT items each); the
    items are never modified after construction, and pydicom writes a
    shared item wherever it appears, so building them once saves a
    fifth of the document's build time.
    """
    return _algorithm_template(info)


@functools.lru_cache(maxsize=16)
def _algorithm_template(info: AlgorithmIdentity) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=info.name, version=info.version, parameters=list(info.parameters) or None)


def nerve_algorithm(segmenter: object) -> AlgorithmIdentity:
    """Algorithm Identification of the nerve measurement made by ``segmenter``
    (:func:`pipeline.algorithm.segmenter_identity`; what :func:`pipeline.analysis.analyze_frame` stamps)."""
    return segmenter_identity(segmenter)


def muscle_algorithm() -> AlgorithmIdentity:
    """Algorithm Identification of the muscle measurement (:func:`pipeline.algorithm.muscle_identity`)."""
    return muscle_identity()


def frame_algorithm(frame: FrameResult, override: AlgorithmIdentity | None) -> AlgorithmIdentity:
    """What measured ``frame``: the caller's override, else the identity the result carries."""
    algorithm = override or frame.algorithm
    if algorithm is None:
        raise ValueError(f"frame {frame.frame_number}: the result carries no algorithm identity")
    return algorithm
