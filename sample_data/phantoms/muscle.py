"""Long-axis muscle phantoms: scene sampling, amplitude maps, ground truth and the echogenicity ROI."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .bmode import (
    _add_band,
    _band_cov,
    _blend,
    _db,
    _form_bmode,
    _Grid,
    _seed,
    _skin_layers,
)
from .scenes import Acoustics, Band, MuscleScene, sample_acoustics


def sample_muscle_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    bone: bool = False,
    tilt_deg: float | None = None,
    curvature: float | None = None,
    thickness_mm: float | None = None,
    subcutaneous_mm: float | None = None,
    muscle_db: float | None = None,
    myopathic: bool = False,
    acoustics: Acoustics | None = None,
) -> MuscleScene:
    """Draw a random long-axis muscle scene.

    Parameters
    ----------
    rng
        Random generator.
    mm_per_px
        Pixel size in mm.
    shape_px
        Tissue region ``(rows, columns)``.
    bone
        Put a bone surface with acoustic shadow instead of a deep aponeurosis.
    tilt_deg
        Tilt of the superficial fascia (the deep boundary differs by up to 1 degree);
        default uniform -2..2.
    curvature
        Curvature (1/mm) of the deep boundary, positive = convex towards the probe
        (edges deeper than the centre); the superficial fascia gets 40 % of it.
        Default: 0.002-0.006 for bone, -0.002..0.002 otherwise.
    thickness_mm
        Vertical distance between the inner edges at the centre; default drawn to fit
        (8-25 mm).
    subcutaneous_mm
        Depth of the superficial fascia's upper edge at the centre; default 2-6 mm.
    muscle_db
        Echo level of the belly re. soft tissue; default -6..-2 dB (+1..+4 dB when
        ``myopathic``).
    myopathic
        Bright, more attenuating, less structured muscle.
    acoustics
        Imaging parameters; default :func:`sample_acoustics`.

    Returns
    -------
    MuscleScene
    """
    h_px, w_px = shape_px
    depth_max = h_px * mm_per_px
    ac = acoustics if acoustics is not None else sample_acoustics(rng)
    xc = (w_px - 1) / 2.0 * mm_per_px
    skin = float(rng.uniform(0.3, 0.5))
    dermis = skin + float(rng.uniform(0.8, 1.4))
    subcut = float(subcutaneous_mm) if subcutaneous_mm is not None else float(rng.uniform(2.0, 6.0))
    subcut = max(subcut, dermis + 0.5)
    t_sf = float(rng.uniform(0.5, 1.0))
    tilt = float(tilt_deg) if tilt_deg is not None else float(rng.uniform(-2.0, 2.0))
    curv = float(curvature) if curvature is not None else (
        float(rng.uniform(0.002, 0.006)) if bone else float(rng.uniform(-0.002, 0.002)))
    room = depth_max - (subcut + t_sf) - (7.0 if bone else 5.0)
    if thickness_mm is not None:
        thick = float(thickness_mm)
    else:
        if room < 3.0:
            raise ValueError(f"a {depth_max:.1f} mm deep image leaves no room for a muscle")
        hi = min(25.0, room)
        thick = float(rng.uniform(min(8.0, 0.6 * hi), hi))
    if thick > room + 1e-9:
        raise ValueError(f"thickness {thick:.1f} mm does not fit a {depth_max:.1f} mm deep image")
    sup = Band(subcut, t_sf, tilt_deg=tilt, curvature_per_mm=0.4 * curv, xc_mm=xc,
               amp_db=float(rng.uniform(11, 15)), specular=float(rng.uniform(2.0, 3.5)))
    deep_tilt = tilt + float(rng.uniform(-1.0, 1.0))
    if bone:
        deep = Band(subcut + t_sf + thick, float(rng.uniform(0.8, 1.5)), tilt_deg=deep_tilt, curvature_per_mm=curv,
                    xc_mm=xc, amp_db=float(rng.uniform(18, 22)), specular=float(rng.uniform(8.0, 12.0)))
        deeper = None
    else:
        deep = Band(subcut + t_sf + thick, float(rng.uniform(0.6, 1.2)), tilt_deg=deep_tilt, curvature_per_mm=curv,
                    xc_mm=xc, amp_db=float(rng.uniform(11, 15)), specular=float(rng.uniform(2.0, 3.5)))
        dz = float(rng.uniform(4.0, 9.0))
        deeper = None
        if deep.top_mm + deep.thickness_mm + dz + 1 < depth_max - 1:
            deeper = Band(deep.top_mm + deep.thickness_mm + dz, float(rng.uniform(0.4, 0.9)),
                          tilt_deg=deep_tilt + float(rng.uniform(-2, 2)), xc_mm=xc,
                          amp_db=float(rng.uniform(8, 12)), specular=float(rng.uniform(1.0, 2.0)))
    if muscle_db is not None:
        mdb = float(muscle_db)
    else:
        mdb = float(rng.uniform(-1.0, 3.0)) if myopathic else float(rng.uniform(-9.0, -5.0))
    return MuscleScene(
        shape_px=shape_px, mm_per_px=float(mm_per_px), skin_mm=skin, dermis_mm=dermis, superficial=sup, deep=deep,
        bone=bool(bone), deeper_fascia=deeper, muscle_db=mdb, deeper_db=float(rng.uniform(-7.0, -3.0)),
        fat_db=float(rng.uniform(-8.0, -4.0)),
        muscle_atten_db_per_cm=float(rng.uniform(2.0, 3.5)) if myopathic else float(rng.uniform(0.0, 0.8)),
        pennation_deg=float(rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 25.0)),
        fascicle_spacing_mm=float(rng.uniform(0.8, 1.6)),
        fascicle_contrast_db=float(rng.uniform(3.0, 6.0)) if myopathic else float(rng.uniform(10.0, 14.0)),
        shadow_level=float(rng.uniform(0.02, 0.05)), acoustics=ac, texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _striations(grid: _Grid, angle_deg: float, spacing: float, seed: list[int]) -> np.ndarray:
    """Thin, broken, wavy oblique lines (0..1) - perimysium of a muscle in long axis."""
    th = math.radians(angle_deg)
    wob = 0.3 * grid.field([*seed, 1], (4.0, 2.0))
    u = (-grid.X * math.sin(th) + grid.Z * math.cos(th)) / spacing + wob
    d = np.abs(u - np.rint(u)) * spacing  # mm to the nearest line
    lines = np.exp(-(d**2) / (2 * 0.05**2))
    breaks = np.clip(0.5 * grid.field([*seed, 2], (4.0, 0.8)) + 0.75, 0.0, 1.0) ** 1.5
    return lines * breaks


def _muscle_maps(scene: MuscleScene, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amplitude, specular and extra-attenuation maps of a muscle scene."""
    sd = scene.texture_seed
    Z, h = grid.Z, grid.h
    sup, deep = scene.superficial, scene.deep
    y_s = np.asarray(sup.top(grid.x))[None, :]
    y_si = y_s + sup.thickness_mm  # superficial inner edge
    y_d = np.asarray(deep.top(grid.x))[None, :]  # deep inner edge
    y_db = y_d + deep.thickness_mm
    het = grid.field(_seed(sd, 1), 2.0)
    # deeper tissue (below the deep band)
    amp = (_db(scene.deeper_db + 1.5 * het)
           * (1.0 + 0.5 * _db(scene.fascicle_contrast_db) * _striations(grid, -scene.pennation_deg * 0.7, 1.3,
                                                                         _seed(sd, 2)))).astype(np.float32)
    spec = np.zeros_like(amp)
    # muscle belly
    stri = _striations(grid, scene.pennation_deg, scene.fascicle_spacing_mm, _seed(sd, 3))
    belly = _db(scene.muscle_db + 1.5 * grid.field(_seed(sd, 4), 2.5)) * (
        1.0 + (_db(scene.fascicle_contrast_db) - 1.0) * stri)
    cov_belly = np.clip((Z - y_si) / h + 0.5, 0, 1) * np.clip((y_d - Z) / h + 0.5, 0, 1)
    _blend(amp, belly, cov_belly)
    _blend(spec, _db(scene.muscle_db + scene.fascicle_contrast_db - 6.0) * stri, cov_belly)
    # above the superficial fascia: skin, dermis, fat
    _skin_layers(grid, amp, spec, scene.skin_mm, scene.dermis_mm, y_s[0], scene.fat_db, sd)
    _add_band(grid, amp, spec, sup, _seed(sd, 5))
    if scene.bone:
        cov = _band_cov(grid, deep)
        var = 1.0 + 0.2 * grid.field(_seed(sd, 6), (2.0, 0.3))
        _blend(amp, _db(deep.amp_db) * var, cov)
        _blend(spec, deep.specular * var, cov)
        # acoustic shadow: transmission drops through the cortex
        depth_in = np.clip((Z - y_d) / max(deep.thickness_mm, 1e-3), 0.0, 1.0)
        trans = 1.0 - (1.0 - scene.shadow_level) * depth_in ** 1.5
        amp = (amp * np.sqrt(trans) * np.where(Z > y_db, np.sqrt(trans), 1.0)).astype(np.float32)
        spec = (spec * np.sqrt(trans)).astype(np.float32)
    else:
        _add_band(grid, amp, spec, deep, _seed(sd, 6))
        if scene.deeper_fascia is not None:
            _add_band(grid, amp, spec, scene.deeper_fascia, _seed(sd, 7))
    # extra attenuation accumulated inside the belly (dB)
    path_cm = np.clip(np.minimum(Z, y_d) - y_si, 0.0, None) / 10.0
    extra = (scene.muscle_atten_db_per_cm * path_cm).astype(np.float32)
    return amp, spec, extra


def _min_dist_to_curve(px: float, pz: float, band: Band, x_lo: float, x_hi: float) -> float:
    xs = np.linspace(x_lo, x_hi, 40001)
    zs = np.asarray(band.top(xs))
    return float(np.min(np.hypot(xs - px, zs - pz)))


def _muscle_truth(scene: MuscleScene) -> dict[str, Any]:
    """Ground truth of a muscle scene in tissue-region pixel coordinates."""
    s = scene.mm_per_px
    w_px = scene.shape_px[1]
    sup, deep = scene.superficial, scene.deep
    xc_px = (w_px - 1) / 2.0
    xc = xc_px * s

    def y_sup(x_mm: np.ndarray | float) -> np.ndarray | float:
        return sup.bottom(x_mm)

    lo, hi = -0.5 * s, (w_px - 0.5) * s
    span = (hi - lo)
    perp_c = _min_dist_to_curve(xc, float(y_sup(xc)), deep, lo - span, hi + span)
    cols = np.arange(w_px)
    central_half = cols[((cols + 0.5) >= 0.25 * w_px) & ((cols + 0.5) <= 0.75 * w_px)]
    perps = [_min_dist_to_curve(c * s, float(y_sup(c * s)), deep, lo - span, hi + span) for c in central_half[::1]]
    xs_line = np.linspace(0, w_px - 1, 21)
    return {
        "kind": "muscle",
        "mm_per_px": s,
        "thickness_mm": round(perp_c, 4),
        "thickness_px": round(perp_c / s, 3),
        "thickness_mean_central_half_mm": round(float(np.mean(perps)), 4),
        "vertical_gap_at_center_mm": round(float(deep.top(xc) - y_sup(xc)), 4),
        "inner_edges_px_at_center": [round(float(y_sup(xc)) / s, 3), round(float(deep.top(xc)) / s, 3)],
        "center_x_px": round(xc_px, 3),
        "inner_edge_superficial_px": [[round(float(x), 3), round(float(y_sup(x * s)) / s, 3)] for x in xs_line],
        "inner_edge_deep_px": [[round(float(x), 3), round(float(deep.top(x * s)) / s, 3)] for x in xs_line],
        "tilt_deg": round(sup.tilt_deg, 3),
        "deep_tilt_deg": round(deep.tilt_deg, 3),
        "curvature_per_mm": round(deep.curvature_per_mm, 5),
        "bone": scene.bone,
        "deep_boundary": "bone surface" if scene.bone else "deep aponeurosis",
        "subcutaneous_thickness_mm": round(float(sup.top(xc)), 4),
        "superficial_fascia_thickness_mm": round(sup.thickness_mm, 4),
        "deep_band_thickness_mm": round(deep.thickness_mm, 4),
    }


def muscle_roi_mask(
    shape: tuple[int, int],
    tissue_region_px: Sequence[int],
    inner_superficial: Any,
    inner_deep: Any,
    mm_per_px: float,
    margin_mm: float = 0.5,
    width_fraction: float = 0.6,
) -> np.ndarray:
    """Echogenicity ROI of CONTRACT.md section 4 as a boolean mask.

    A pixel (centre ``(x, y)``) belongs to the ROI when its column lies in the central
    ``width_fraction`` of the tissue region (``0.2 W <= x - x0 + 0.5 <= 0.8 W``) and it
    is at least ``margin_mm`` (measured perpendicular to the local edge direction)
    below the superficial inner edge and above the deep inner edge.

    Parameters
    ----------
    shape
        Image shape ``(rows, cols)``.
    tissue_region_px
        ``[x0, y0, x1, y1]`` inclusive.
    inner_superficial, inner_deep
        Callables ``f(x_px) -> y_px`` giving the inner edges in the same pixel frame.
    mm_per_px
        Pixel size used to convert ``margin_mm``.
    margin_mm, width_fraction
        As in the contract.

    Returns
    -------
    numpy.ndarray
        Boolean mask of ``shape``.
    """
    x0, y0, x1, y1 = [int(v) for v in tissue_region_px]
    w = x1 - x0 + 1
    mask = np.zeros(shape, dtype=bool)
    f = (1.0 - width_fraction) / 2.0
    m_px = margin_mm / mm_per_px
    ys = np.arange(shape[0])
    for x in range(x0, x1 + 1):
        rel = x - x0 + 0.5
        if rel < f * w or rel > (1.0 - f) * w:
            continue
        ys_s = float(inner_superficial(x))
        yd = float(inner_deep(x))
        sl_s = (float(inner_superficial(x + 0.5)) - float(inner_superficial(x - 0.5)))
        sl_d = (float(inner_deep(x + 0.5)) - float(inner_deep(x - 0.5)))
        top = ys_s + m_px * math.sqrt(1 + sl_s**2)
        bot = yd - m_px * math.sqrt(1 + sl_d**2)
        sel = (ys >= top) & (ys <= bot) & (ys >= y0) & (ys <= y1)
        mask[sel, x] = True
    return mask


def muscle_echogenicity(luma: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean, SD (population) and median of ``luma`` inside ``mask``."""
    v = luma[mask].astype(np.float64)
    return {
        "echogenicity_mean": round(float(v.mean()), 4),
        "echogenicity_sd": round(float(v.std()), 4),
        "echogenicity_median": round(float(np.median(v)), 4),
        "echogenicity_roi_pixels": int(v.size),
    }


def render_muscle_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    bone: bool = False,
    tilt_deg: float | None = None,
    curvature: float | None = None,
    scene: MuscleScene | None = None,
    **scene_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one long-axis muscle B-mode image of the tissue region.

    Parameters
    ----------
    rng
        Random generator; draws the scene (unless given) and the speckle.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    shape_px
        Tissue region ``(rows, columns)``.
    bone
        Bone surface with acoustic shadow instead of a deep aponeurosis.
    tilt_deg, curvature
        Fascia tilt (degrees) and deep-boundary curvature (1/mm); see
        :func:`sample_muscle_scene`.
    scene
        A scene from :func:`sample_muscle_scene`; drawn when ``None``.
    **scene_kwargs
        Passed to :func:`sample_muscle_scene` (``thickness_mm``, ``myopathic``...).

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` gray image of shape ``shape_px``.
    truth : dict
        ``thickness_mm``, ``thickness_mean_central_half_mm``,
        ``inner_edges_px_at_center``, ``tilt_deg``, ``bone``,
        ``subcutaneous_thickness_mm`` and the ROI echogenicity of this image, in
        tissue-region pixel coordinates (tissue region = whole image).
    """
    if scene is None:
        scene = sample_muscle_scene(rng, mm_per_px, shape_px=shape_px, bone=bone, tilt_deg=tilt_deg,
                                    curvature=curvature, **scene_kwargs)
    grid = _Grid(scene.shape_px, scene.mm_per_px)
    amp, spec, extra = _muscle_maps(scene, grid)
    img = _form_bmode(amp, spec, grid, scene.acoustics, rng, extra_atten_db=extra)
    truth = _muscle_truth(scene)
    truth["_scene"] = scene
    h, w = scene.shape_px
    truth.update(_muscle_roi_stats(img.astype(np.float64), scene, (0, 0, w - 1, h - 1), (0, 0)))
    return img, _public(truth)


def _muscle_roi_stats(luma: np.ndarray, scene: MuscleScene, region: Sequence[int],
                      origin: tuple[int, int]) -> dict[str, float]:
    s = scene.mm_per_px
    ox, oy = origin
    mask = muscle_roi_mask(
        luma.shape, region,
        lambda x: float(scene.superficial.bottom((x - ox) * s)) / s + oy,
        lambda x: float(scene.deep.top((x - ox) * s)) / s + oy,
        s,
    )
    return muscle_echogenicity(luma, mask)


def _public(truth: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in truth.items() if not k.startswith("_")}
