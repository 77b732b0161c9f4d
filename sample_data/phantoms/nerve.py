"""Short-axis nerve phantoms: scene sampling, amplitude maps, ground truth, still frames and cine loops."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from .bmode import (
    SUPERSAMPLE,
    _add_band,
    _blend,
    _db,
    _ellipse_sdf,
    _form_bmode,
    _Grid,
    _ramp,
    _scatterers,
    _seed,
    _skin_layers,
)
from .echogenicity import nerve_echogenicity
from .scenes import Acoustics, Band, Ellipse, NerveScene, sample_acoustics


def _sample_fascicles(rng: np.random.Generator, mean_axis_mm: float) -> np.ndarray:
    """Poisson-disc packing of round fascicles in the unit disc (normalised units)."""
    target = int(rng.integers(7, 16))
    out: list[tuple[float, float, float]] = []
    for _ in range(3000):
        if len(out) >= target:
            break
        r_mm = rng.uniform(0.22, 0.50)
        r = r_mm / mean_axis_mm
        rad = math.sqrt(rng.uniform(0.0, 1.0)) * (0.86 - r)
        if rad < 0:
            continue
        ang = rng.uniform(0.0, 2.0 * math.pi)
        u, v = rad * math.cos(ang), rad * math.sin(ang)
        gap = 0.12 / mean_axis_mm
        if all(math.hypot(u - p, v - q) > r + rr + gap for p, q, rr in out):
            out.append((u, v, r))
    return np.asarray(out, dtype=np.float64).reshape(-1, 3)


def sample_nerve_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    csa_mm2: float | None = None,
    flattening: float | None = None,
    rotation_deg: float | None = None,
    rim_width_mm: float | None = None,
    depth_mm: float | None = None,
    vessel: bool = True,
    vessel_gap_mm: float | None = None,
    n_tendons: int | None = None,
    acoustics: Acoustics | None = None,
) -> NerveScene:
    """Draw a random short-axis nerve scene.

    Parameters
    ----------
    rng
        Random generator (all randomness comes from it).
    mm_per_px
        Pixel size in mm.
    shape_px
        Tissue region ``(rows, columns)``.
    csa_mm2
        True cross-sectional area (inside the rim); default uniform 5-15 mm².
    flattening
        Major/minor axis ratio; default uniform 1.2-2.2.
    rotation_deg
        Major-axis rotation; default a few degrees.
    rim_width_mm
        Epineurial rim width; default uniform 0.3-0.6 mm.
    depth_mm
        Depth of the nerve centre; default drawn to fit the image.
    vessel
        Add an anechoic vessel beside the nerve.
    vessel_gap_mm
        Gap between vessel and outer rim (>= 1.5 mm); default uniform 1.6-4 mm.
    n_tendons
        Number of hyperechoic tendons; default 0-2.
    acoustics
        Imaging parameters; default :func:`sample_acoustics`.

    Returns
    -------
    NerveScene
    """
    h_px, w_px = shape_px
    width_mm, depth_max = w_px * mm_per_px, h_px * mm_per_px
    ac = acoustics if acoustics is not None else sample_acoustics(rng)
    csa = float(csa_mm2) if csa_mm2 is not None else float(rng.uniform(5.0, 15.0))
    fl = float(flattening) if flattening is not None else float(rng.uniform(1.2, 2.2))
    rot = float(rotation_deg) if rotation_deg is not None else float(rng.uniform(-8.0, 8.0))
    rim = float(rim_width_mm) if rim_width_mm is not None else float(rng.uniform(0.3, 0.6))
    b = math.sqrt(csa / (math.pi * fl))
    a = fl * b
    skin = float(rng.uniform(0.3, 0.5))
    dermis = skin + float(rng.uniform(0.8, 1.3))
    subcut = dermis + float(rng.uniform(1.0, 2.5))
    outer = Ellipse(0.0, 0.0, a + rim, b + rim, rot)
    hz = outer.half_extent_z()
    hx = outer.half_extent_x()
    ret_t = float(rng.uniform(0.4, 0.8))
    z_min = subcut + ret_t + 0.6 + rng.uniform(0.4, 2.0) + hz
    z_hi = min(depth_max * 0.55, depth_max - hz - 3.0)
    if depth_mm is not None:
        cz = float(depth_mm)
    else:
        cz = float(rng.uniform(z_min, max(z_min + 0.1, min(z_min + 5.0, z_hi))))
    cx = float(rng.uniform(0.35, 0.65) * width_mm)
    nerve = Ellipse(cx, cz, a, b, rot)
    fascicles = _sample_fascicles(rng, math.sqrt(a * b))

    # fascia (flexor retinaculum) above the nerve, deep fascia below
    ret_top = float(rng.uniform(subcut + 0.2, max(subcut + 0.3, cz - hz - ret_t - 0.6)))
    fasciae = [
        Band(ret_top, ret_t, tilt_deg=float(rng.uniform(-3, 3)), curvature_per_mm=float(rng.uniform(-0.004, 0.004)),
             xc_mm=cx, amp_db=float(rng.uniform(10, 14)), specular=float(rng.uniform(2.0, 3.5)))
    ]
    deep_top = cz + hz + float(rng.uniform(1.5, 4.0))
    if deep_top + 1.0 < depth_max - 2.0:
        fasciae.append(Band(deep_top, float(rng.uniform(0.4, 0.9)), tilt_deg=float(rng.uniform(-4, 4)),
                            curvature_per_mm=float(rng.uniform(-0.003, 0.003)), xc_mm=cx,
                            amp_db=float(rng.uniform(8, 12)), specular=float(rng.uniform(1.0, 2.5))))

    ves: Ellipse | None = None
    gap: float | None = None
    if vessel:
        r_v = float(rng.uniform(1.0, 2.0))
        gap = float(vessel_gap_mm) if vessel_gap_mm is not None else float(rng.uniform(1.6, 4.0))
        gap = max(gap, 1.5)
        side = 1.0 if rng.uniform() < 0.5 else -1.0
        vx = cx + side * (hx + gap + r_v)
        if not (r_v + 1.0 < vx < width_mm - r_v - 1.0):
            side = -side
            vx = cx + side * (hx + gap + r_v)
        vz = cz + float(rng.uniform(-1.2, 1.2))
        vz = max(vz, ret_top + ret_t + r_v + 0.5)
        ves = Ellipse(vx, vz, r_v, r_v, 0.0)

    tendons: list[Ellipse] = []
    nt = int(n_tendons) if n_tendons is not None else int(rng.integers(0, 3))
    for _ in range(200):
        if len(tendons) >= nt:
            break
        ta, tb = float(rng.uniform(1.5, 2.8)), float(rng.uniform(1.0, 1.8))
        t = Ellipse(float(rng.uniform(ta + 1, width_mm - ta - 1)),
                    float(rng.uniform(ret_top + ret_t + tb + 0.5, min(depth_max - tb - 2, cz + 8))),
                    ta, tb, float(rng.uniform(-15, 15)))
        others = [nerve.grown(rim)] + ([ves] if ves is not None else []) + tendons
        ok = all(math.hypot(t.cx_mm - o.cx_mm, t.cz_mm - o.cz_mm) > max(t.a_mm, t.b_mm) + max(o.a_mm, o.b_mm) + 1.0
                 for o in others)
        if ok and ves is not None:
            # keep tendons out of the vessel's posterior-enhancement column
            ok = abs(t.cx_mm - ves.cx_mm) > ves.a_mm + t.half_extent_x() + 0.5 or t.cz_mm < ves.cz_mm
        if ok:
            tendons.append(t)

    echo = {
        "tissue": 0.0,
        "fat": float(rng.uniform(-7.0, -4.0)),
        "interior": float(rng.uniform(-3.0, 0.5)),
        "septa_specular": float(rng.uniform(0.4, 0.8)),
        "fascicle": float(rng.uniform(-17.0, -12.0)),
        "rim": float(rng.uniform(13.0, 17.0)),
        "rim_specular": float(rng.uniform(2.5, 4.5)),
        "tendon": float(rng.uniform(3.0, 6.0)),
        "vessel": -40.0,
        "enhancement_db": float(rng.uniform(2.0, 4.0)),
    }
    return NerveScene(
        shape_px=shape_px, mm_per_px=float(mm_per_px), nerve=nerve, rim_width_mm=rim, fascicles=fascicles,
        vessel=ves, vessel_gap_mm=gap, fasciae=fasciae, tendons=tendons, skin_mm=skin, dermis_mm=dermis,
        subcut_mm=subcut, echo_db=echo, acoustics=ac, texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _nerve_maps(scene: NerveScene, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude and specular maps of a nerve scene on ``grid``."""
    sd = scene.texture_seed
    e = scene.echo_db
    amp = (_db(e["tissue"] + 2.0 * grid.field(_seed(sd, 1), 2.0))
           * (1.0 + 0.9 * np.clip(grid.field(_seed(sd, 2), (0.25, 0.12)) - 1.3, 0.0, None))).astype(np.float32)
    spec = np.zeros_like(amp)
    subcut_bottom = scene.subcut_mm + 0.3 * np.sin(grid.x / 3.1 + (sd % 628) / 100.0)
    _skin_layers(grid, amp, spec, scene.skin_mm, scene.dermis_mm, subcut_bottom, e["fat"], sd)
    for i, band in enumerate(scene.fasciae):
        _add_band(grid, amp, spec, band, _seed(sd, 20 + i))
    for i, t in enumerate(scene.tendons):
        rs, cs = grid.window(t.cx_mm - t.a_mm - 1, t.cx_mm + t.a_mm + 1, t.cz_mm - t.a_mm - 1, t.cz_mm + t.a_mm + 1)
        X, Z = grid.X[:, cs], grid.Z[rs, :]
        cov = _ramp(_ellipse_sdf(X, Z, t), grid.h)
        fib = grid.field(_seed(sd, 30 + i), 0.1)[rs, cs]
        tex = _db(e["tendon"]) * (1.0 + 1.5 * np.clip(fib - 0.8, 0, None))
        _blend(amp[rs, cs], tex, cov)
        _blend(spec[rs, cs], 0.4, cov * np.clip(1.0 - np.abs(_ellipse_sdf(X, Z, t)) / 0.15, 0, 1))
    enh = np.ones_like(amp)
    if scene.vessel is not None:
        v = scene.vessel
        rs, cs = grid.window(v.cx_mm - v.a_mm - 1, v.cx_mm + v.a_mm + 1, v.cz_mm - v.a_mm - 1, v.cz_mm + v.a_mm + 1)
        cov = _ramp(_ellipse_sdf(grid.X[:, cs], grid.Z[rs, :], v), grid.h)
        _blend(amp[rs, cs], _db(e["vessel"]), cov)
        _blend(spec[rs, cs], 0.0, cov)
        lat = np.clip(1.0 - np.abs(grid.X - v.cx_mm) / v.a_mm, 0.0, 1.0) ** 0.5
        below = np.clip((grid.Z - v.cz_mm) / v.a_mm, 0.0, 1.0)
        enh = 1.0 + (_db(e["enhancement_db"]) - 1.0) * lat * below
    # nerve: rim then interior
    n = scene.nerve
    o = n.grown(scene.rim_width_mm)
    m = max(o.a_mm, o.b_mm) + 0.5
    rs, cs = grid.window(n.cx_mm - m, n.cx_mm + m, n.cz_mm - m, n.cz_mm + m)
    X, Z = grid.X[:, cs], grid.Z[rs, :]
    a_w, s_w = amp[rs, cs], spec[rs, cs]
    cov_o = _ramp(_ellipse_sdf(X, Z, o), grid.h)
    rim_var = grid.field(_seed(sd, 40), 0.5)[rs, cs]
    _blend(a_w, _db(e["rim"] + 1.5 * rim_var), cov_o)
    _blend(s_w, e["rim_specular"] * np.clip(1.0 + 0.25 * rim_var, 0.3, None), cov_o)
    cov_i = _ramp(_ellipse_sdf(X, Z, n), grid.h)
    th = math.radians(n.rotation_deg)
    dx, dz = X - n.cx_mm, Z - n.cz_mm
    un = (dx * math.cos(th) + dz * math.sin(th)) / n.a_mm
    vn = (-dx * math.sin(th) + dz * math.cos(th)) / n.b_mm
    interior = _db(e["interior"] + 1.5 * grid.field(_seed(sd, 41), 0.3)[rs, cs]) * np.ones_like(cov_i)
    scale = math.sqrt(n.a_mm * n.b_mm)
    septa = np.full_like(cov_i, e.get("septa_specular", 0.0))
    for (fu, fv, fr) in scene.fascicles:
        d = (np.sqrt((un - fu) ** 2 + (vn - fv) ** 2) - fr) * scale
        cf = _ramp(d, grid.h)
        _blend(interior, _db(e["fascicle"]), cf)
        _blend(septa, 0.0, cf)
    _blend(a_w, interior, cov_i)
    _blend(s_w, septa, cov_i)
    amp *= enh
    spec *= enh
    return amp, spec


def _nerve_truth(scene: NerveScene, grid: _Grid) -> dict[str, Any]:
    """Ground truth of a nerve scene in tissue-region pixel coordinates."""
    s = scene.mm_per_px
    dxm, dzm = grid.shift_mm
    n = scene.nerve
    cont = n.contour(72)
    cont_px = np.stack([(cont[:, 0] - dxm) / s, (cont[:, 1] - dzm) / s], axis=1)
    vessel = None
    if scene.vessel is not None:
        v = scene.vessel
        vessel = {
            "center_px": [round((v.cx_mm - dxm) / s, 3), round((v.cz_mm - dzm) / s, 3)],
            "radius_px": round(v.a_mm / s, 3),
            "radius_mm": round(v.a_mm, 4),
            "gap_to_rim_mm": round(float(scene.vessel_gap_mm), 4) if scene.vessel_gap_mm is not None else None,
        }
    return {
        "kind": "nerve",
        "mm_per_px": s,
        "csa_mm2": round(n.area_mm2, 4),
        "csa_px2": round(n.area_mm2 / s**2, 3),
        "perimeter_mm": round(n.perimeter_mm, 4),
        "major_axis_mm": round(2 * max(n.a_mm, n.b_mm), 4),
        "minor_axis_mm": round(2 * min(n.a_mm, n.b_mm), 4),
        "flattening_ratio": round(max(n.a_mm, n.b_mm) / min(n.a_mm, n.b_mm), 4),
        "semi_axes_mm": [round(n.a_mm, 4), round(n.b_mm, 4)],
        "rotation_deg": round(n.rotation_deg, 3),
        "rim_width_mm": round(scene.rim_width_mm, 4),
        "n_fascicles": int(len(scene.fascicles)),
        "center_px": [round((n.cx_mm - dxm) / s, 3), round((n.cz_mm - dzm) / s, 3)],
        "contour_px": [[round(float(x), 3), round(float(y), 3)] for x, y in cont_px],
        "vessel": vessel,
    }


def render_nerve_scene(
    rng: np.random.Generator,
    mm_per_px: float,
    *,
    shape_px: tuple[int, int] = (400, 400),
    scene: NerveScene | None = None,
    **scene_kwargs: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one short-axis nerve B-mode image of the tissue region.

    Parameters
    ----------
    rng
        Random generator; draws the scene (unless given) and the speckle.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    shape_px
        Tissue region ``(rows, columns)`` (ignored when ``scene`` is given).
    scene
        A scene from :func:`sample_nerve_scene`; drawn when ``None``.
    **scene_kwargs
        Passed to :func:`sample_nerve_scene` (``csa_mm2``, ``flattening``, ``vessel``...).

    Returns
    -------
    image : numpy.ndarray
        ``uint8`` gray image of shape ``shape_px`` (tissue region only).
    truth : dict
        Geometry in tissue-region pixel coordinates: ``csa_mm2``, ``perimeter_mm``,
        ``major_axis_mm``, ``minor_axis_mm``, ``flattening_ratio``, ``center_px``,
        ``contour_px`` (72 points), ``vessel`` and more; plus ``echogenicity_mean`` /
        ``echogenicity_sd`` of this image inside the contour.
    """
    if scene is None:
        scene = sample_nerve_scene(rng, mm_per_px, shape_px=shape_px, **scene_kwargs)
    grid = _Grid(scene.shape_px, scene.mm_per_px)
    amp, spec = _nerve_maps(scene, grid)
    img = _form_bmode(amp, spec, grid, scene.acoustics, rng)
    truth = _nerve_truth(scene, grid)
    truth.update(nerve_echogenicity(img, truth["contour_px"]))
    return img, truth


def render_nerve_cine(
    rng: np.random.Generator,
    mm_per_px: float,
    n_frames: int = 10,
    *,
    shape_px: tuple[int, int] = (400, 400),
    scene: NerveScene | None = None,
    max_shift_px: float = 4.0,
    size_jitter: float = 0.03,
    rotation_jitter_deg: float = 2.0,
    speckle_correlation: float = 0.85,
    **scene_kwargs: Any,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Render a short cine loop of a nerve with small probe motion and deformation.

    The whole scene moves by a smooth random walk of at most ``max_shift_px``
    pixels; the nerve's semi-axes change by up to ``size_jitter`` (relative) and its
    rotation by up to ``rotation_jitter_deg``.  The speckle moves with the tissue
    and partly decorrelates between frames.

    Parameters
    ----------
    rng
        Random generator.
    mm_per_px
        Pixel size in mm (ignored when ``scene`` is given).
    n_frames
        Number of frames.
    shape_px
        Tissue region ``(rows, columns)``.
    scene
        Base scene; drawn with :func:`sample_nerve_scene` when ``None``.
    max_shift_px, size_jitter, rotation_jitter_deg
        Motion amplitude.
    speckle_correlation
        Correlation of the speckle between consecutive frames (0..1).
    **scene_kwargs
        Passed to :func:`sample_nerve_scene`.

    Returns
    -------
    frames : list of numpy.ndarray
        ``uint8`` tissue-region images.
    truths : list of dict
        Per-frame truth as in :func:`render_nerve_scene`.
    """
    if scene is None:
        scene = sample_nerve_scene(rng, mm_per_px, shape_px=shape_px, **scene_kwargs)
    k = SUPERSAMPLE
    t = np.linspace(0.0, 1.0, n_frames)
    ph = rng.uniform(0, 2 * np.pi, size=4)
    amp_sub = max_shift_px * k
    dxs = np.rint(amp_sub * np.sin(2 * np.pi * t * 0.9 + ph[0]) * rng.uniform(0.6, 1.0)).astype(int)
    dzs = np.rint(0.5 * amp_sub * np.sin(2 * np.pi * t * 1.3 + ph[1]) * rng.uniform(0.5, 1.0)).astype(int)
    scale = 1.0 + size_jitter * np.sin(2 * np.pi * t * 1.1 + ph[2])
    drot = rotation_jitter_deg * np.sin(2 * np.pi * t * 0.7 + ph[3])
    grid0 = _Grid(scene.shape_px, scene.mm_per_px)
    base = _scatterers(rng, grid0.padded_shape())
    rho = float(speckle_correlation)
    prev: np.ndarray | None = None
    frames: list[np.ndarray] = []
    truths: list[dict[str, Any]] = []
    for i in range(n_frames):
        grid = _Grid(scene.shape_px, scene.mm_per_px, shift_sub=(int(dzs[i]), int(dxs[i])))
        n0 = scene.nerve
        # the nerve's area changes by scale**2 while its shape is kept
        sc = replace(scene, nerve=replace(n0, a_mm=float(n0.a_mm * scale[i]), b_mm=float(n0.b_mm * scale[i]),
                                          rotation_deg=float(n0.rotation_deg + drot[i])))
        amp, spec = _nerve_maps(sc, grid)
        fixed = grid._crop(base)
        if prev is None:
            innov = fixed
        else:
            innov = rho * prev + math.sqrt(1 - rho * rho) * _scatterers(rng, (grid.hs, grid.ws))
        prev = innov
        scat = (0.7 * fixed + math.sqrt(1 - 0.49) * innov).astype(np.float32) if i else fixed
        img = _form_bmode(amp, spec, grid, scene.acoustics, rng, scat=scat)
        tr = _nerve_truth(sc, grid)
        tr["shift_px"] = [round(-grid.shift_mm[0] / scene.mm_per_px, 4) + 0.0,
                          round(-grid.shift_mm[1] / scene.mm_per_px, 4) + 0.0]
        tr.update(nerve_echogenicity(img, tr["contour_px"]))
        frames.append(img)
        truths.append(tr)
    return frames, truths
