"""Scene descriptions of the synthetic phantoms: acoustics, bands, ellipses, nerve and muscle scenes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np


@dataclass
class Acoustics:
    """Imaging-system parameters of one acquisition.

    Attributes
    ----------
    psf_fwhm_mm
        Point spread function full width at half maximum, ``(lateral, axial)`` in mm.
    dynamic_range_db
        Log-compression dynamic range in dB (``0 dB`` of display = gray 255).
    gain_db
        Display gain added to the envelope in dB before mapping to gray.
    atten_db_per_cm
        Residual depth attenuation after TGC, dB per cm of depth.
    noise_amp
        Amplitude of the electronic noise floor (same units as the echo maps).
    """

    psf_fwhm_mm: tuple[float, float] = (0.4, 0.2)
    dynamic_range_db: float = 50.0
    gain_db: float = -29.0
    atten_db_per_cm: float = 0.8
    noise_amp: float = 0.07


@dataclass
class Band:
    """A roughly horizontal band (fascia, aponeurosis, bone surface, skin line).

    The upper edge is ``z(x) = top_mm + tan(tilt) * (x - xc) + 0.5 * curvature * (x - xc)**2``
    (mm, depth downwards); the lower edge lies ``thickness_mm`` below it.

    Attributes
    ----------
    top_mm, thickness_mm, tilt_deg, curvature_per_mm, xc_mm
        Geometry as above; a positive curvature bends the edges deeper away from
        ``xc_mm`` (a surface convex towards the probe).
    amp_db
        Diffuse echo level relative to the reference soft tissue (0 dB).
    specular
        Amplitude of the coherent (non-speckled) reflection.
    x_range_mm
        Optional lateral extent ``(x_min, x_max)``; ``None`` spans the image.
    """

    top_mm: float
    thickness_mm: float
    tilt_deg: float = 0.0
    curvature_per_mm: float = 0.0
    xc_mm: float = 0.0
    amp_db: float = 12.0
    specular: float = 2.5
    x_range_mm: tuple[float, float] | None = None

    def top(self, x_mm: np.ndarray | float) -> np.ndarray | float:
        """Depth of the upper edge at lateral position ``x_mm``."""
        dx = np.asarray(x_mm, dtype=np.float64) - self.xc_mm
        return self.top_mm + math.tan(math.radians(self.tilt_deg)) * dx + 0.5 * self.curvature_per_mm * dx * dx

    def bottom(self, x_mm: np.ndarray | float) -> np.ndarray | float:
        """Depth of the lower edge at lateral position ``x_mm``."""
        return self.top(x_mm) + self.thickness_mm


@dataclass
class Ellipse:
    """An ellipse in physical coordinates (mm); ``rotation_deg`` turns the major axis
    clockwise on the displayed image (depth axis pointing down)."""

    cx_mm: float
    cz_mm: float
    a_mm: float
    b_mm: float
    rotation_deg: float = 0.0

    def contour(self, n: int = 72) -> np.ndarray:
        """Return ``n`` points ``(x, z)`` in mm on the ellipse, counter-parametric order."""
        t = 2.0 * np.pi * np.arange(n) / n
        th = math.radians(self.rotation_deg)
        u = self.a_mm * np.cos(t)
        v = self.b_mm * np.sin(t)
        x = self.cx_mm + u * math.cos(th) - v * math.sin(th)
        z = self.cz_mm + u * math.sin(th) + v * math.cos(th)
        return np.stack([x, z], axis=1)

    @property
    def area_mm2(self) -> float:
        """Exact area ``pi * a * b``."""
        return math.pi * self.a_mm * self.b_mm

    @property
    def perimeter_mm(self) -> float:
        """Perimeter by dense numerical integration (relative error < 1e-9)."""
        t = np.linspace(0.0, 2.0 * np.pi, 20001)
        x = self.a_mm * np.cos(t)
        y = self.b_mm * np.sin(t)
        return float(np.sum(np.hypot(np.diff(x), np.diff(y))))

    def half_extent_x(self) -> float:
        """Half of the lateral extent of the (rotated) ellipse."""
        th = math.radians(self.rotation_deg)
        return math.hypot(self.a_mm * math.cos(th), self.b_mm * math.sin(th))

    def half_extent_z(self) -> float:
        """Half of the axial extent of the (rotated) ellipse."""
        th = math.radians(self.rotation_deg)
        return math.hypot(self.a_mm * math.sin(th), self.b_mm * math.cos(th))

    def grown(self, d_mm: float) -> "Ellipse":
        """The ellipse with both semi-axes enlarged by ``d_mm``."""
        return replace(self, a_mm=self.a_mm + d_mm, b_mm=self.b_mm + d_mm)


@dataclass
class NerveScene:
    """Everything random about one short-axis nerve scene.

    Attributes
    ----------
    shape_px
        Tissue region size ``(rows, columns)``.
    mm_per_px
        Isotropic pixel size in mm.
    nerve
        True nerve border (inner border of the epineurial rim).
    rim_width_mm
        Width of the hyperechoic rim lying just outside ``nerve``.
    fascicles
        ``(n, 3)`` array of fascicle circles ``(u, v, r)`` in nerve-normalised
        coordinates (the unit disc maps onto ``nerve``).
    vessel
        Anechoic vessel (circle) or ``None``.
    vessel_gap_mm
        Edge-to-edge lateral gap between the vessel and the outer rim.
    fasciae
        Fascia bands (flexor retinaculum, deep fascia).
    tendons
        Hyperechoic tendons in short axis.
    skin_mm, dermis_mm, subcut_mm
        Depths (mm) of the lower edges of the skin entry echo, dermis and
        subcutaneous layer.
    echo_db
        Echo levels (dB re. soft tissue) of ``interior``, ``fascicle``, ``rim``,
        ``tissue``, ``fat``, ``tendon``, ``vessel``; ``rim_specular`` and
        ``enhancement_db`` (posterior acoustic enhancement below the vessel).
    acoustics
        Imaging-system parameters.
    texture_seed
        Seed of all texture fields (kept fixed along a cine loop).
    """

    shape_px: tuple[int, int]
    mm_per_px: float
    nerve: Ellipse
    rim_width_mm: float
    fascicles: np.ndarray
    vessel: Ellipse | None
    vessel_gap_mm: float | None
    fasciae: list[Band]
    tendons: list[Ellipse]
    skin_mm: float
    dermis_mm: float
    subcut_mm: float
    echo_db: dict[str, float]
    acoustics: Acoustics
    texture_seed: int


@dataclass
class MuscleScene:
    """Everything random about one long-axis muscle scene.

    Attributes
    ----------
    shape_px, mm_per_px
        Tissue region size ``(rows, columns)`` and pixel size.
    skin_mm, dermis_mm
        Lower edges of the skin entry echo and dermis.
    superficial
        Superficial fascia band; its *lower* edge is the superficial inner edge.
    deep
        Deep aponeurosis (or bone cortex when ``bone``); its *upper* edge is the
        deep inner edge.
    bone
        Whether ``deep`` is a bone surface casting an acoustic shadow.
    deeper_fascia
        Optional further fascia below the deep aponeurosis (no bone only).
    muscle_db, deeper_db, fat_db
        Echo levels of the muscle belly, the deeper tissue and subcutaneous fat.
    muscle_atten_db_per_cm
        Extra attenuation inside the muscle belly (high in myopathic muscle).
    pennation_deg, fascicle_spacing_mm, fascicle_contrast_db
        Oblique perimysium lines ("striations") of the belly.
    shadow_level
        Amplitude transmission below the bone surface.
    acoustics, texture_seed
        As for :class:`NerveScene`.
    """

    shape_px: tuple[int, int]
    mm_per_px: float
    skin_mm: float
    dermis_mm: float
    superficial: Band
    deep: Band
    bone: bool
    deeper_fascia: Band | None
    muscle_db: float
    deeper_db: float
    fat_db: float
    muscle_atten_db_per_cm: float
    pennation_deg: float
    fascicle_spacing_mm: float
    fascicle_contrast_db: float
    shadow_level: float
    acoustics: Acoustics
    texture_seed: int


def sample_acoustics(rng: np.random.Generator, **overrides: Any) -> Acoustics:
    """Draw plausible imaging-system parameters.

    Parameters
    ----------
    rng
        Random generator.
    **overrides
        Any :class:`Acoustics` field to fix.

    Returns
    -------
    Acoustics
    """
    ac = Acoustics(
        psf_fwhm_mm=(float(rng.uniform(0.30, 0.50)), float(rng.uniform(0.15, 0.25))),
        dynamic_range_db=float(rng.uniform(48.0, 54.0)),
        gain_db=float(rng.uniform(-34.0, -30.5)),
        atten_db_per_cm=float(rng.uniform(0.3, 1.2)),
        noise_amp=float(rng.uniform(0.05, 0.09)),
    )
    return replace(ac, **overrides)
