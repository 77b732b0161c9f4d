"""The settings of the muscle measurement that its Algorithm Identification lists.

Named one by one (never gathered from a module's namespace), so renaming or
adding a constant cannot silently change what a report says; a new setting
that changes results is added here on purpose.
"""

from __future__ import annotations

__all__ = ["measurement_parameters"]


def measurement_parameters() -> dict[str, object]:
    """``name -> value`` of every fixed setting of the thickness and echogenicity measurement.

    Returns
    -------
    dict
        Lower-case names (as the SR writes them) to numbers or number tuples.
    """
    from pipeline.measurements import muscle
    from pipeline.segmentation.muscle_bands import edges, fits, learned, search

    return {
        "assumed_dynamic_range_db": fits.ASSUMED_DYNAMIC_RANGE_DB,
        "between_penalty": search.BETWEEN_PENALTY,
        "max_candidates": search.MAX_CANDIDATES,
        "max_pairs_tried": muscle.MAX_PAIRS_TRIED,
        "max_tilt_deg": search.MAX_TILT_DEG,
        "min_band_contrast_db": edges.MIN_BAND_CONTRAST_DB,
        "min_band_separation_mm": search.MIN_BAND_SEPARATION_MM,
        "min_band_z": search.MIN_BAND_Z,
        "missed_band_min_probability": learned.MISSED_BAND_MIN_PROBABILITY,
        "missed_band_strength": learned.MISSED_BAND_STRENGTH,
        "parallel_tol_deg": search.PARALLEL_TOL_DEG,
        "ridge_scales_mm": search.RIDGE_SCALES_MM,
        "roi_margin_mm": muscle.ROI_MARGIN_MM,
        "roi_width_fraction": muscle.ROI_WIDTH_FRACTION,
        "separation_prior_mm": search.SEPARATION_PRIOR_MM,
        "shallow_pair_tolerance": search.SHALLOW_PAIR_TOLERANCE,
        "skin_zone_mm": search.SKIN_ZONE_MM,
        "snap_mm": learned.SNAP_MM,
        "tilt_step_deg": search.TILT_STEP_DEG,
    }
