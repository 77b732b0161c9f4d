"""Colour Doppler: velocity colours, painted colour flow and the palette of PALETTE COLOR files."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _velocity_rgb(v: float) -> tuple[int, int, int]:
    """Colour-flow map: red/yellow towards the probe (v > 0), blue/cyan away."""
    q = min(abs(v), 1.0)
    if v >= 0:
        return int(round(90 + 165 * q)), int(round(200 * q**2)), 0
    return 0, int(round(200 * q**2)), int(round(110 + 145 * q))


def paint_color_doppler(
    frame_rgb: np.ndarray,
    vessel_center_px: Sequence[float],
    vessel_radius_px: float,
    rng: np.random.Generator,
    *,
    box_px: Sequence[int],
    vmax: float = 1.12,
    fill: float = 0.85,
) -> int:
    """Paint colour-flow pixels over part of a vessel lumen (in place).

    Laminar (parabolic) flow towards the probe is shown in red/yellow; where it
    exceeds the Nyquist limit (``vmax > 1``) it aliases to blue/cyan.  Pixels are
    painted only inside ``fill`` x the lumen radius and inside ``box_px``.

    Parameters
    ----------
    frame_rgb
        ``(rows, cols, 3)`` ``uint8`` frame, modified in place.
    vessel_center_px, vessel_radius_px
        Lumen in frame pixel coordinates.
    rng
        Random generator (velocity noise).
    box_px
        Colour box ``[x0, y0, x1, y1]`` inclusive.
    vmax
        Peak velocity relative to the Nyquist velocity.
    fill
        Fraction of the lumen radius that receives colour.

    Returns
    -------
    int
        Number of coloured pixels.
    """
    cx, cy = vessel_center_px
    x0, y0, x1, y1 = box_px
    yy, xx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    r = np.hypot(xx - cx, yy - cy) / vessel_radius_px
    v = vmax * (1.0 - r**2) + rng.normal(0.0, 0.08, size=r.shape)
    sel = (r < fill) & (v > 0.15)
    v_alias = np.where(v > 1.0, v - 2.0, v)
    count = 0
    for y, x, vv in zip(yy[sel], xx[sel], v_alias[sel]):
        frame_rgb[y, x] = _velocity_rgb(float(vv))
        count += 1
    return count


def doppler_palette() -> np.ndarray:
    """The ``(256, 3)`` lookup table of ``PALETTE COLOR`` Doppler files.

    Indices 0-191 are a gray ramp (0-255); 192-223 the velocities away from the
    probe (blue/cyan, -1 to -0.15 of the Nyquist velocity) and 224-255 those
    towards it (red/yellow, 0.15 to 1), in the colours of :func:`paint_color_doppler`.
    """
    lut = np.zeros((256, 3), np.uint8)
    lut[:192] = np.round(np.arange(192) * 255.0 / 191.0).astype(np.uint8)[:, None]
    velocities = np.concatenate([np.linspace(-1.0, -0.15, 32), np.linspace(0.15, 1.0, 32)])
    lut[192:] = np.array([_velocity_rgb(float(v)) for v in velocities], dtype=np.uint8)
    return lut


def rgb_to_palette(frames_rgb: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Palette indices of RGB pixels: gray pixels to the nearest gray entry, colour to the nearest colour.

    ``lut`` is laid out as :func:`doppler_palette` (gray ramp in 0-191, colours in 192-255).
    """
    rgb = np.asarray(frames_rgb)
    flat = rgb.reshape(-1, 3).astype(np.int32)
    gray = (flat.max(axis=1) - flat.min(axis=1)) == 0
    out = np.empty(len(flat), np.uint8)
    out[gray] = np.round(flat[gray, 0] * 191.0 / 255.0).astype(np.uint8)
    colours = lut[192:].astype(np.int32)
    if (~gray).any():
        d = ((flat[~gray, None, :] - colours[None, :, :]) ** 2).sum(axis=2)
        out[~gray] = (192 + d.argmin(axis=1)).astype(np.uint8)
    return out.reshape(rgb.shape[:-1])


#: Pulse Repetition Frequency (Hz) written into the generated Doppler files.
DOPPLER_PRF_HZ = 1500


def _paint_flow_disc(
    frame_rgb: np.ndarray, centre: Sequence[float], radius: float, rng: np.random.Generator, *, sign: float
) -> np.ndarray:
    """Paint a small vessel's colour flow (parabolic profile, velocity noise) in place; return its mask."""
    cx, cy = centre
    rows, cols = frame_rgb.shape[:2]
    y0, y1 = max(0, int(math.floor(cy - radius)) - 1), min(rows, int(math.ceil(cy + radius)) + 2)
    x0, x1 = max(0, int(math.floor(cx - radius)) - 1), min(cols, int(math.ceil(cx + radius)) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = np.hypot(xx - cx, yy - cy) / radius
    sel = r <= 1.0
    v = np.clip(0.35 + 0.55 * (1.0 - r**2) + rng.normal(0.0, 0.06, size=r.shape), 0.16, 1.0)
    mask = np.zeros((rows, cols), dtype=bool)
    for y, x, vv in zip(yy[sel], xx[sel], v[sel]):
        frame_rgb[y, x] = _velocity_rgb(float(sign * vv))
        mask[y, x] = True
    return mask
