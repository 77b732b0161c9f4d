"""Global motion (probe drift and tilt, breathing) estimated from the flow field and removed.

The whole field of view moves together when the probe slides, tilts or the
patient breathes: that motion is close to an affine map of the image. A
least-squares affine fit to the dense flow, refitted on the 70 % of points
that agree with it best (so a twitch or a pulsating vessel does not pull the
fit), is the global motion; what is left is local.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GlobalMotion", "estimate_global_motion", "remove_global_motion"]

#: Flow is sampled every this many working pixels for the fit.
SAMPLE_STEP = 2
#: Share of sample points kept for the refit.
INLIER_SHARE = 0.7


@dataclass(frozen=True)
class GlobalMotion:
    """Affine motion ``(dx, dy) = A @ (x - cx, y - cy, 1)`` in working pixels per frame pair.

    Attributes
    ----------
    coefficients : tuple of float
        ``(ax, bx, cx0, ay, by, cy0)``: dx = ax (x-xc) + bx (y-yc) + cx0, dy likewise.
    centre : tuple of float
        (xc, yc), the working-image centre the fit is expressed about.
    residual_px : float
        RMS of the inlier residual (working pixels).
    """

    coefficients: tuple[float, float, float, float, float, float]
    centre: tuple[float, float]
    residual_px: float

    @property
    def translation_px(self) -> tuple[float, float]:
        """Displacement of the image centre (working pixels per frame pair)."""
        return self.coefficients[2], self.coefficients[5]

    def field(self, shape: tuple[int, int]) -> np.ndarray:
        """The affine displacement at every working pixel, (rows, columns, 2), float32."""
        rows, cols = shape
        x = np.arange(cols, dtype=np.float32) - self.centre[0]
        y = np.arange(rows, dtype=np.float32) - self.centre[1]
        ax, bx, cx, ay, by, cy = (np.float32(c) for c in self.coefficients)
        out = np.empty((rows, cols, 2), dtype=np.float32)
        out[..., 0] = ax * x[None, :] + bx * y[:, None] + cx
        out[..., 1] = ay * x[None, :] + by * y[:, None] + cy
        return out


def estimate_global_motion(flow: np.ndarray) -> GlobalMotion:
    """Robust affine fit to a dense flow field.

    Parameters
    ----------
    flow : ndarray, shape (rows, columns, 2)
        Flow in working pixels per frame pair.
    """
    rows, cols = flow.shape[:2]
    centre = ((cols - 1) / 2.0, (rows - 1) / 2.0)
    ys, xs = np.mgrid[0:rows:SAMPLE_STEP, 0:cols:SAMPLE_STEP]
    sample = flow[0:rows:SAMPLE_STEP, 0:cols:SAMPLE_STEP].reshape(-1, 2).astype(np.float64)
    design = np.column_stack([(xs.ravel() - centre[0]), (ys.ravel() - centre[1]), np.ones(xs.size)])
    keep = np.ones(len(sample), dtype=bool)
    coef = np.zeros((3, 2))
    residual = np.zeros(len(sample))
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(design[keep], sample[keep], rcond=None)
        residual = np.hypot(*(sample - design @ coef).T)
        keep = residual <= np.quantile(residual, INLIER_SHARE)
    rms = float(np.sqrt(np.mean(residual[keep] ** 2))) if keep.any() else 0.0
    return GlobalMotion(
        coefficients=(
            float(coef[0, 0]), float(coef[1, 0]), float(coef[2, 0]), float(coef[0, 1]), float(coef[1, 1]), float(coef[2, 1]),
        ),
        centre=centre,
        residual_px=rms,
    )


def remove_global_motion(flow: np.ndarray, motion: GlobalMotion) -> np.ndarray:
    """Local (residual) flow: the flow less the global affine motion, float32."""
    return (flow - motion.field(flow.shape[:2])).astype(np.float32, copy=False)
