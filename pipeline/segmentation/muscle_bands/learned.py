"""Learned boundary proposals paired with the band search.

**Learned boundaries** (``boundary_finder``, the shipped default): the
aponeurosis network (:mod:`pipeline.segmentation.aponeurosis`) replaces the
band search and pair selection (:mod:`pipeline.segmentation.muscle_bands.search`).
Its shallowest long band and the next one at least 3 mm deeper bound the
muscle; each follows the band search's candidate on the same band, and the
edge tracer (:mod:`pipeline.segmentation.muscle_bands.edges`) places the inner
edges (only over the columns both bands were seen in, when a band has no
candidate). Refused: no band; one band over something other than a bone
surface; a strong parallel band between the two that the network half marks
(ambiguous layer).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pipeline.segmentation.muscle_bands.finder import NoMuscleBoundariesError
from pipeline.segmentation.muscle_bands.fits import _tilt_deg
from pipeline.segmentation.muscle_bands.search import (
    MIN_BAND_SEPARATION_MM,
    MIN_BAND_Z,
    PARALLEL_TOL_DEG,
    _Band,
    _find_bands,
    _rank_pairs,
)

# A band between the learned pair at least this strong (relative to the pair's weaker band), which the
# network marks at least faintly, makes the pair ambiguous (refused).
MISSED_BAND_STRENGTH = 0.8
MISSED_BAND_MIN_PROBABILITY = 0.05
# A learned band follows the band search's candidate whose centre lies this close (mm).
SNAP_MM = 1.0


def _as_band(layer: Any, xc: float) -> _Band:
    return _Band(coef=np.asarray(layer.centre_coef, dtype=np.float64), y_c=float(layer.y(xc)),
                 score=float(layer.probability), z=float("inf"), align=float(layer.coverage), layer=layer,
                 network_support=True, extent=tuple(layer.x_range))


def _common_columns(sup: _Band, deep: _Band) -> tuple[float, float] | None:
    """Crop columns where both learned bands were seen (None: no restriction)."""
    ranges = [b.extent for b in (sup, deep) if b.extent is not None]
    if not ranges:
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if hi > lo else None


def _learned_pairs(layers: list[Any], probability: np.ndarray, gray_f: np.ndarray, sx: float, sy: float,
                   rows: int, cols: int, min_superficial_extent: float = 0.0, layer: int = 1) -> list[tuple[_Band, _Band]]:
    """The muscle under the skin from the network's bands: the shallowest band at least
    ``min_superficial_extent`` of the width long and the next one at least ``MIN_BAND_SEPARATION_MM``
    deeper. With one band only, the deep boundary (often a bone surface, which the network was not
    taught) comes from the classical band search below it. ``layer`` > 1: the same one layer deeper
    each time (its superficial boundary is the deep boundary of the layer above)."""
    xc = (cols - 1) / 2.0
    # No skin zone here: the network does not mark the skin, and a cropped frame may start at the fascia.
    # A short patch above the first long band is not the muscle's fascia.
    first = next((i for i, b in enumerate(layers)
                  if b.x_range[1] - b.x_range[0] + 1 >= min_superficial_extent * cols), len(layers))
    usable = list(layers[first:])
    if not usable:
        raise NoMuscleBoundariesError(
            "muscle boundaries not found with confidence: no fascia or aponeurosis band in the tissue region"
        )
    classical, _noise = _find_bands(gray_f, sx, sy)
    for _ in range(layer - 1):
        # Step down one layer: the next band at least MIN_BAND_SEPARATION_MM deeper starts the next muscle.
        top = _as_band(usable[0], xc)
        usable = [b for b in usable[1:] if (_as_band(b, xc).y_c - top.y_c) * sy >= MIN_BAND_SEPARATION_MM]
        if not usable:
            raise NoMuscleBoundariesError(
                f"muscle boundaries not found with confidence: no muscle layer {layer} (fewer boundary bands)"
            )
    sup = _snap(_as_band(usable[0], xc), classical, sx, sy)
    for deep in (_snap(_as_band(layer, xc), classical, sx, sy) for layer in usable[1:]):
        if (deep.y_c - sup.y_c) * sy >= MIN_BAND_SEPARATION_MM:
            if _missed_boundary(classical, probability, sup, deep, sx, sy, cols) is not None:
                # The image shows a boundary-like band the network barely marks between its two: on
                # the real training frames the deep boundary was then never where the annotators put it.
                raise NoMuscleBoundariesError(
                    "muscle boundaries not found with confidence: a band between the proposed fascia and "
                    "aponeurosis is as strong as they are (which layer is the muscle is ambiguous)"
                )
            return [(sup, deep)]
    below = [b for b in classical if (b.y_c - sup.y_c) * sy >= MIN_BAND_SEPARATION_MM]
    pairs = [(a, b) for a, b in _rank_pairs([sup, *below], sx, sy, rows, cols) if a is sup] if below else []
    if not pairs:
        raise NoMuscleBoundariesError(
            "muscle boundaries not found with confidence: one fascia band and no deep aponeurosis or bone surface"
        )
    return pairs


def _snap(band: _Band, classical: list[_Band], sx: float, sy: float) -> _Band:
    """The classical candidate on the same band (centre within ``SNAP_MM``, parallel), carrying the proposal.

    The network says which band; the band search's own curve follows the
    band's ridge on the image, so the edge tracer starts where it would
    without the network (the network's centre may sit between two close lines).
    """
    if band.extent is None:
        return band
    # Close at the centre and parallel where the network saw the band (a crossing, differently tilted
    # band passes close to it at one column).
    x_mid = 0.5 * (band.extent[0] + band.extent[1])
    tilt = _tilt_deg(band.coef, x_mid, sx, sy)
    close = [c for c in classical
             if abs(c.y_c - band.y_c) * sy <= SNAP_MM and abs(_tilt_deg(c.coef, x_mid, sx, sy) - tilt) <= PARALLEL_TOL_DEG]
    if not close:
        return band
    best = max(close, key=lambda c: c.score)
    # The band search only keeps bands seen over most of the width: no column restriction.
    return dataclasses.replace(best, layer=band.layer, network_support=True, extent=None)


def _missed_boundary(classical: list[_Band], probability: np.ndarray, sup: _Band, deep: _Band, sx: float,
                     sy: float, cols: int) -> _Band | None:
    """A band the network half-missed between its two: parallel, as strong, and some network support.

    A muscle holds no band like its own fasciae (oblique fascicles do not
    count); such a band between the proposed pair, which the network also
    marks faintly (mean probability along it at least
    ``MISSED_BAND_MIN_PROBABILITY``, where muscle texture scores about 0.001),
    makes the pair ambiguous.
    """
    xc = (cols - 1) / 2.0
    xs = np.arange(cols)

    def support(b: _Band) -> float:
        y = np.clip(np.rint(b.y(xs)).astype(np.int64), 0, probability.shape[0] - 1)
        return float(probability[y, xs].mean())

    near = 1.5 / sy

    def match(b: _Band) -> _Band | None:
        close = [c for c in classical if abs(c.y_c - b.y_c) <= near]
        return max(close, key=lambda c: c.score) if close else None

    ends = [m for m in (match(sup), match(deep)) if m is not None]
    if len(ends) < 2:
        return None
    floor = MISSED_BAND_STRENGTH * min(m.score for m in ends)
    tilts = [_tilt_deg(m.coef, xc, sx, sy) for m in ends]

    def parallel(c: _Band) -> bool:
        # Parallel to one of the pair (an aponeurosis), not merely tilted between them as the fascicles
        # of a pennate muscle are.
        tilt = _tilt_deg(c.coef, xc, sx, sy)
        return any(abs(tilt - t) <= PARALLEL_TOL_DEG for t in tilts)

    between = [
        c for c in classical
        if sup.y_c + max(near, MIN_BAND_SEPARATION_MM / sy) < c.y_c < deep.y_c - near
        and c.score >= floor and c.z >= MIN_BAND_Z and parallel(c)
        and support(c) >= MISSED_BAND_MIN_PROBABILITY
    ]
    return min(between, key=lambda c: c.y_c) if between else None
