"""Muscle boundary bands: where the fasciae, aponeuroses and bone surfaces of a long-axis frame lie.

The first half of the muscle measurement (:mod:`pipeline.measurements.muscle`
measures thickness and echogenicity between the inner edges found here).
Classical image analysis (NumPy / OpenCV / SciPy), no learned model, no loop
over pixels:

- :mod:`~pipeline.segmentation.muscle_bands.search`: the band search (long,
  nearly horizontal bright bands across the width) and pair selection (which
  two bands bound the first muscle under the skin);
- :mod:`~pipeline.segmentation.muscle_bands.edges`: the inner edges of the two
  bands, sub-pixel, on the linear echo amplitude; a pair that bounds no muscle
  is refused;
- :mod:`~pipeline.segmentation.muscle_bands.learned`: the aponeurosis
  network's proposals (:mod:`pipeline.segmentation.aponeurosis`) paired with
  the band search's candidates;
- :mod:`~pipeline.segmentation.muscle_bands.fits`: echo amplitude, strip
  profiles, robust curve fits;
- :mod:`~pipeline.segmentation.muscle_bands.finder`: the
  :class:`BoundaryFinder` interface, :class:`ClassicalBandSearch` and
  :class:`NoMuscleBoundariesError`.
"""

from pipeline.segmentation.muscle_bands.finder import (
    BoundaryFinder,
    ClassicalBandSearch,
    NoMuscleBoundariesError,
    describe_boundaries,
)

__all__ = ["BoundaryFinder", "ClassicalBandSearch", "NoMuscleBoundariesError", "describe_boundaries"]
