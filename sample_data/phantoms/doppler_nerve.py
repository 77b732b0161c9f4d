"""Nerve frames with colour flow in a neighbouring vessel, and their DICOM files (vascularity tests)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
)

from .dicom import (
    SeriesInfo,
    StudyInfo,
    UltrasoundRegion,
    deterministic_uid,
    tissue_region,
    write_ultrasound_dicom,
)
from .doppler import DOPPLER_PRF_HZ, _paint_flow_disc, paint_color_doppler
from .echogenicity import contour_mask
from .frame import compose_frame, truth_to_frame
from .nerve import render_nerve_scene, sample_nerve_scene
from .sample_set import _DEVICE, _PATIENTS, _STUDIES, _layout


def make_doppler_nerve_case(
    seed: int,
    *,
    n_intraneural: int | None = None,
    n_extraneural: int | None = None,
    mm_per_px: float | None = None,
    vessel_radius_px: tuple[float, float] = (2.0, 4.5),
) -> dict[str, Any]:
    """A colour-Doppler short-axis nerve frame with known flow inside and outside the nerve.

    The B-mode scene (nerve beside an artery) is rendered as for the sample data;
    ``n_intraneural`` small vessels (radius ``vessel_radius_px``, so at least 4 px
    across) are painted as colour flow inside the nerve, at least 3 px from its
    border and 3 px from each other; the artery beside the nerve and
    ``n_extraneural`` further small vessels outside it (at least 4 px from the
    border) carry flow that must not be counted. The colour box (a Region Data
    Type 2 item) covers the nerve and the artery.

    Returns
    -------
    dict
        ``frame`` (RGB ``uint8``, with flow), ``grey`` (the same frame without
        any flow), ``regions`` (tissue region and colour box), ``origin_px``,
        ``mm_per_px`` and ``truth``: the nerve (``contour_px``, ``csa_mm2``,
        ``nerve_px``), the flow (``flow_mask``: every painted pixel;
        ``intraneural_px``; ``vascularity_index`` in %; ``vessel_count``;
        ``vascularity_grade``; the vessels painted) and ``colour_box_px``.
    """
    rng = np.random.default_rng([20250314, 19, int(seed)])
    scale = float(mm_per_px) if mm_per_px is not None else float(rng.choice([0.06, 0.07, 0.08]))
    x0, y0, w, h = _layout(rng)
    scene = sample_nerve_scene(rng, scale, shape_px=(h, w), vessel=True, csa_mm2=float(rng.uniform(8.0, 16.0)),
                               flattening=float(rng.uniform(1.2, 1.8)))
    tissue, tr = render_nerve_scene(rng, scale, scene=scene)
    truth = truth_to_frame(tr, (x0, y0))
    left = [_DEVICE, f"D {h * scale / 10:.1f}cm  G 52", "R MEDIAN NERVE WRIST"]
    right = ["MI 0.9  TIs 0.1", f"CF 6.2MHz PRF {DOPPLER_PRF_HZ / 1000:.1f}k"]
    grey = compose_frame(tissue, (x0, y0), mm_per_px=scale, text_lines=left, right_text=right, rgb=True, color_bar=True)
    frame = grey.copy()
    shape = frame.shape[:2]
    contour = np.asarray(truth["contour_px"], dtype=np.float64)
    nerve = contour_mask(contour, shape)
    # distance (px) of every pixel centre from the nerve border, inside and outside
    inside_dist = cv2.distanceTransform(nerve.astype(np.uint8), cv2.DIST_L2, 5)
    outside_dist = cv2.distanceTransform((~nerve).astype(np.uint8), cv2.DIST_L2, 5)

    ves = truth["vessel"]
    vcx, vcy = ves["center_px"]
    rv = float(ves["radius_px"])
    cx0, cy0 = contour.min(axis=0)
    cx1, cy1 = contour.max(axis=0)
    bx0 = max(x0, int(math.floor(min(cx0, vcx - rv) - 15)))
    bx1 = min(x0 + w - 1, int(math.ceil(max(cx1, vcx + rv) + 15)))
    by0 = max(y0, int(math.floor(min(cy0, vcy - rv) - 15)))
    by1 = min(y0 + h - 1, int(math.ceil(max(cy1, vcy + rv) + 15)))
    box = [bx0, by0, bx1, by1]

    flow = np.zeros(shape, dtype=bool)
    vessels: list[dict[str, Any]] = []
    artery = np.zeros(shape, dtype=bool)
    n_art = paint_color_doppler(frame, (vcx, vcy), rv, rng, box_px=box)
    artery |= np.any(frame != grey, axis=2)
    flow |= artery
    vessels.append({"where": "beside", "center_px": [round(vcx, 3), round(vcy, 3)], "radius_px": round(rv, 3),
                    "pixels": int(n_art)})

    n_in = int(n_intraneural) if n_intraneural is not None else int(rng.integers(0, 6))
    n_out = int(n_extraneural) if n_extraneural is not None else int(rng.integers(0, 3))
    placed: list[tuple[float, float, float]] = []

    def place(inside: bool) -> tuple[float, float, float] | None:
        for _ in range(400):
            r = float(rng.uniform(*vessel_radius_px))
            if inside:
                ys, xs = np.nonzero(inside_dist >= r + 3.0)
            else:
                region = (outside_dist >= r + 4.0) & ~cv2.dilate(artery.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
                region[:by0 + int(r) + 2] = False
                region[by1 - int(r) - 1:] = False
                region[:, :bx0 + int(r) + 2] = False
                region[:, bx1 - int(r) - 1:] = False
                ys, xs = np.nonzero(region)
            if len(xs) == 0:
                return None
            i = int(rng.integers(0, len(xs)))
            cx, cy = float(xs[i]) + float(rng.uniform(-0.5, 0.5)), float(ys[i]) + float(rng.uniform(-0.5, 0.5))
            if all(math.hypot(cx - px, cy - py) >= r + pr + 3.0 for px, py, pr in placed):
                return cx, cy, r
        return None

    for where, count in (("inside", n_in), ("outside", n_out)):
        for _ in range(count):
            spot = place(where == "inside")
            if spot is None:
                continue
            cx, cy, r = spot
            placed.append(spot)
            mask = _paint_flow_disc(frame, (cx, cy), r, rng, sign=1.0 if rng.uniform() < 0.5 else -1.0)
            flow |= mask
            vessels.append({"where": where, "center_px": [round(cx, 3), round(cy, 3)], "radius_px": round(r, 3),
                            "pixels": int(mask.sum())})
    intraneural = int((flow & nerve).sum())
    count_in = sum(1 for v in vessels if v["where"] == "inside")
    grade = 0 if count_in == 0 else 1 if count_in == 1 else 2 if count_in <= 3 else 3
    ref = tissue_region(x0, y0, w, h, scale)
    regions = [ref, UltrasoundRegion(
        x0=bx0, y0=by0, x1=bx1, y1=by1, delta_x=scale / 10.0, delta_y=scale / 10.0,
        ref_x0=(x0 + ref.ref_x0) - bx0, ref_y0=(y0 + ref.ref_y0) - by0, spatial_format=1, data_type=2,
        flags=2, transducer_frequency_khz=6200)]
    return {
        "frame": frame,
        "grey": grey,
        "regions": regions,
        "origin_px": (x0, y0),
        "mm_per_px": scale,
        "truth": {
            "contour_px": truth["contour_px"],
            "csa_mm2": truth["csa_mm2"],
            "nerve_px": int(nerve.sum()),
            "flow_mask": flow,
            "flow_px": int(flow.sum()),
            "intraneural_px": intraneural,
            "vascularity_index": 100.0 * intraneural / max(int(nerve.sum()), 1),
            "vessel_count": count_in,
            "vascularity_grade": grade,
            "vessels": vessels,
            "colour_box_px": box,
            "tissue_region_px": [x0, y0, x0 + w - 1, y0 + h - 1],
        },
    }


def write_doppler_nerve_file(
    path: str | Path,
    case: dict[str, Any],
    *,
    photometric: str = "RGB",
    transfer_syntax: str = ExplicitVRLittleEndian,
    flow: bool = True,
    jpeg_quality: int = 92,
    label: str = "doppler",
    study_label: str | None = None,
) -> Dataset:
    """Write a case of :func:`make_doppler_nerve_case` as an ultrasound DICOM file.

    ``flow=False`` writes the same frame without colour (gray in every
    channel, or MONOCHROME2), without the colour box and with Ultrasound
    Color Data Present 0: the greyscale twin. The SOP Instance and Series
    UIDs derive from ``label``, the Study Instance UID from ``study_label``
    (default ``label``): files with one ``study_label`` form one study.
    """
    frame = case["frame"] if flow else case["grey"]
    if photometric == "MONOCHROME2":
        frame = frame[..., 0].copy()
    regions = case["regions"] if flow else case["regions"][:1]
    patient = _PATIENTS["A"]
    study = StudyInfo(uid=str(deterministic_uid("doppler-study", study_label or label)), **_STUDIES["A"])
    series = SeriesInfo(uid=str(deterministic_uid("doppler-series", label)), number=19,
                        description="R MEDIAN NERVE WRIST", laterality="R", body_part="WRIST",
                        protocol_name="MSK NERVE", time="092000")
    return write_ultrasound_dicom(
        path, frame, patient=patient, study=study, series=series,
        sop_instance_uid=str(deterministic_uid("doppler-instance", label)), photometric=photometric,
        transfer_syntax=transfer_syntax, regions=regions, color_data_present=flow,
        image_type_value4="0011" if flow else "0001", jpeg_quality=jpeg_quality,
        pulse_repetition_frequency_hz=DOPPLER_PRF_HZ if flow else None,
    )
