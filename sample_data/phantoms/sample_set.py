"""The bundled sample data set: what each file shows, how it is built, and the manifest."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pydicom
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

from .dicom import (
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    UltrasoundRegion,
    deterministic_uid,
    read_luma_frames,
    tissue_region,
    write_ultrasound_dicom,
)
from .doppler import paint_color_doppler
from .echogenicity import nerve_echogenicity
from .frame import compose_frame, truth_to_frame
from .muscle import _muscle_roi_stats, render_muscle_scene, sample_muscle_scene
from .nerve import render_nerve_cine, render_nerve_scene, sample_nerve_scene

LOG = logging.getLogger("mskus.sample_data")
_DEVICE = "MSKUS-SYN L12-5"


@dataclass
class _FileSpec:
    stem: str
    kind: str
    style: str
    study: str
    description: str
    laterality: str
    body_part: str
    mm_per_px: float
    calibration: str = "regions"  # regions | pixel_spacing | none
    photometric: str = "MONOCHROME2"
    transfer_syntax: str = ExplicitVRLittleEndian
    n_frames: int = 1
    scene_kwargs: dict[str, Any] = field(default_factory=dict)
    doppler: bool = False
    seed: int = 0


_PATIENTS = {
    "A": PatientInfo("MSKUS^ANNA^SYNTHETIC", "MSKUS-0001", "19710418", "F"),
    "B": PatientInfo("MSKUS^BERT^SYNTHETIC", "MSKUS-0002", "19480902", "M"),
    "C": PatientInfo("MSKUS^CARL^SYNTHETIC", "MSKUS-0003", "19860127", "M"),
}
_STUDIES = {
    "A": dict(date="20250314", time="091500", description="US UPPER LIMB NERVES", accession="SYN0001", study_id="1"),
    "B": dict(date="20250318", time="141000", description="US THIGH MUSCLES", accession="SYN0002", study_id="1"),
    "C": dict(date="20250402", time="103000", description="US NEUROMUSCULAR", accession="SYN0003", study_id="1"),
}
_FILES: list[_FileSpec] = [
    _FileSpec("01_nerve_mono", "nerve", "mono", "A", "R MEDIAN NERVE WRIST", "R", "WRIST", 0.080,
              scene_kwargs=dict(vessel=True), seed=101),
    _FileSpec("02_nerve_rgb", "nerve", "rgb", "A", "L ULNAR NERVE ELBOW", "L", "ELBOW", 0.065,
              photometric="RGB", scene_kwargs=dict(vessel=False), seed=102),
    _FileSpec("03_nerve_jpeg", "nerve", "jpeg", "C", "R TIBIAL NERVE ANKLE", "R", "ANKLE", 0.070,
              photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit, scene_kwargs=dict(vessel=True), seed=103),
    _FileSpec("04_muscle_mono", "muscle", "mono", "B", "R RECTUS FEMORIS", "R", "THIGH", 0.100,
              scene_kwargs=dict(bone=False, tilt_deg=1.2, thickness_mm=18.0), seed=104),
    _FileSpec("05_muscle_bone", "muscle", "bone", "B", "R VASTUS INTERMEDIUS", "R", "THIGH", 0.110,
              scene_kwargs=dict(bone=True, tilt_deg=3.0, curvature=0.004, thickness_mm=21.0), seed=105),
    _FileSpec("06_muscle_jpeg", "muscle", "jpeg", "C", "L BICEPS BRACHII", "L", "ARM", 0.090,
              photometric="YBR_FULL_422", transfer_syntax=JPEGBaseline8Bit,
              scene_kwargs=dict(bone=False, myopathic=True, tilt_deg=-2.0, thickness_mm=15.0), seed=106),
    _FileSpec("07_nerve_cine", "nerve", "cine", "A", "R MEDIAN NERVE FOREARM", "R", "ARM", 0.090,
              transfer_syntax=RLELossless, n_frames=10, scene_kwargs=dict(vessel=True), seed=107),
    _FileSpec("08_muscle_uncalibrated", "muscle", "uncalibrated", "B", "L RECTUS FEMORIS", "L", "THIGH", 0.095,
              calibration="none", scene_kwargs=dict(bone=False, tilt_deg=-0.8, thickness_mm=14.0), seed=108),
    _FileSpec("09_nerve_doppler", "nerve", "doppler", "A", "R ULNAR NERVE WRIST", "R", "WRIST", 0.075,
              photometric="RGB", doppler=True, scene_kwargs=dict(vessel=True, vessel_gap_mm=2.6), seed=109),
    _FileSpec("10_muscle_pixelspacing", "muscle", "pixel_spacing", "C", "L TIBIALIS ANTERIOR", "L", "LEG", 0.085,
              calibration="pixel_spacing", scene_kwargs=dict(bone=False, tilt_deg=0.5, thickness_mm=16.0), seed=110),
]


def _layout(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """Random tissue-region placement ``(x0, y0, width, height)`` in the 800 x 600 frame."""
    w = int(rng.integers(380, 421))
    h = int(rng.integers(390, 411))
    x0 = int(rng.integers(100, 131))
    y0 = int(rng.integers(62, 91))
    return x0, y0, w, h


def _text(spec: _FileSpec, h: int, gain: int) -> tuple[list[str], list[str]]:
    depth_cm = h * spec.mm_per_px / 10.0
    fr = "30 Hz" if spec.n_frames > 1 else f"{int(18 + (spec.seed % 7) * 2)} Hz"
    left = [_DEVICE, f"D {depth_cm:.1f}cm  G {gain}", spec.description]
    right = ["MI 0.9  TIs 0.1", fr]
    if spec.doppler:
        right.append("CF 6.2MHz PRF 1.5k")
    return left, right


def _build_file(spec: _FileSpec, out_dir: Path) -> dict[str, Any]:
    rng = np.random.default_rng([20250314, spec.seed])
    x0, y0, w, h = _layout(rng)
    shape_px = (h, w)
    study_uid = str(deterministic_uid("study", spec.study))
    series_uid = str(deterministic_uid("series", spec.stem))
    sop_uid = str(deterministic_uid("instance", spec.stem))
    series_number = int(spec.stem[:2])
    gain = int(rng.integers(44, 60))
    origin = (x0, y0)
    region_box = [x0, y0, x0 + w - 1, y0 + h - 1]

    tissues: list[np.ndarray]
    truths: list[dict[str, Any]]
    scene_obj: Any
    if spec.kind == "nerve":
        scene_obj = sample_nerve_scene(rng, spec.mm_per_px, shape_px=shape_px, **spec.scene_kwargs)
        if spec.n_frames > 1:
            tissues, truths = render_nerve_cine(rng, spec.mm_per_px, spec.n_frames, scene=scene_obj)
        else:
            img, tr = render_nerve_scene(rng, spec.mm_per_px, scene=scene_obj)
            tissues, truths = [img], [tr]
    else:
        scene_obj = sample_muscle_scene(rng, spec.mm_per_px, shape_px=shape_px, **spec.scene_kwargs)
        img, tr = render_muscle_scene(rng, spec.mm_per_px, scene=scene_obj)
        tissues, truths = [img], [tr]
    rgb = spec.photometric in ("RGB", "YBR_FULL_422")
    left, right = _text(spec, h, gain)
    frames = [compose_frame(t, origin, mm_per_px=spec.mm_per_px, text_lines=left, right_text=right, rgb=rgb,
                            color_bar=spec.doppler) for t in tissues]
    ftruths = [truth_to_frame(t, origin) for t in truths]

    regions: list[UltrasoundRegion] | None = None
    extra: dict[str, Any] = {}
    if spec.calibration == "regions":
        regions = [tissue_region(x0, y0, w, h, spec.mm_per_px)]
    if spec.doppler:
        ves = ftruths[0]["vessel"]
        if ves is None:
            raise RuntimeError("Doppler file needs a vessel")
        vcx, vcy = ves["center_px"]
        rv = ves["radius_px"]
        gap_px = (scene_obj.vessel_gap_mm or 1.5) / spec.mm_per_px
        mx = min(1.0 / spec.mm_per_px, 0.45 * gap_px)
        my = 2.5 / spec.mm_per_px
        bx0 = max(int(math.floor(vcx - rv - mx)), x0)
        bx1 = min(int(math.ceil(vcx + rv + mx)), x0 + w - 1)
        by0 = max(int(math.floor(vcy - rv - my)), y0)
        by1 = min(int(math.ceil(vcy + rv + my)), y0 + h - 1)
        box = [bx0, by0, bx1, by1]
        n_col = paint_color_doppler(frames[0], (vcx, vcy), rv, rng, box_px=box)
        ref = regions[0] if regions else tissue_region(x0, y0, w, h, spec.mm_per_px)
        regions = (regions or []) + [UltrasoundRegion(
            x0=bx0, y0=by0, x1=bx1, y1=by1, delta_x=spec.mm_per_px / 10.0, delta_y=spec.mm_per_px / 10.0,
            ref_x0=(x0 + ref.ref_x0) - bx0, ref_y0=(y0 + ref.ref_y0) - by0, spatial_format=1, data_type=2,
            flags=2, transducer_frequency_khz=6200)]
        extra = {"doppler_region_px": box, "color_pixels": n_col}

    path = out_dir / f"{spec.stem}.dcm"
    patient = _PATIENTS[spec.study]
    st = _STUDIES[spec.study]
    study = StudyInfo(uid=study_uid, **st)
    s_time = f"{int(st['time'][:2]):02d}{int(st['time'][2:4]) + series_number:02d}00"
    series = SeriesInfo(uid=series_uid, number=series_number, description=spec.description,
                        laterality=spec.laterality, body_part=spec.body_part,
                        protocol_name="MSK NERVE" if spec.kind == "nerve" else "MSK MUSCLE", time=s_time)
    write_ultrasound_dicom(
        path, np.stack(frames), patient=patient, study=study, series=series, sop_instance_uid=sop_uid,
        photometric=spec.photometric, transfer_syntax=spec.transfer_syntax, regions=regions,
        pixel_spacing_mm=spec.mm_per_px if spec.calibration == "pixel_spacing" else None,
        frame_time_ms=(1000.0 / 30.0) if spec.n_frames > 1 else None, color_data_present=spec.doppler,
        image_type_value4="0011" if spec.doppler else "0001", multiframe=spec.n_frames > 1,
    )

    # truth from the decoded file (JPEG: what a reader gets back)
    luma = read_luma_frames(path)
    calibrated = spec.calibration != "none"
    out_frames: list[dict[str, Any]] = []
    for i, tr in enumerate(ftruths):
        d: dict[str, Any] = {"index": i, "frame_number": i + 1}
        d.update({k: v for k, v in tr.items() if not k.startswith("echogenicity")})
        d["mm_per_px"] = spec.mm_per_px if calibrated else None
        d["render_mm_per_px"] = spec.mm_per_px
        d["tissue_region_px"] = region_box
        d["series_description"] = spec.description
        d["laterality"] = spec.laterality
        d["sop_instance_uid"] = sop_uid
        d["series_instance_uid"] = series_uid
        d["study_instance_uid"] = study_uid
        if spec.kind == "nerve":
            d.update(nerve_echogenicity(luma[i], tr["contour_px"]))
        else:
            d.update(_muscle_roi_stats(luma[i], scene_obj, region_box, origin))
            if not calibrated:
                for key in ("thickness_mm", "thickness_mean_central_half_mm", "subcutaneous_thickness_mm",
                            "vertical_gap_at_center_mm", "superficial_fascia_thickness_mm",
                            "deep_band_thickness_mm"):
                    d[key] = None
        if not calibrated and spec.kind == "nerve":
            for key in ("csa_mm2", "perimeter_mm", "major_axis_mm", "minor_axis_mm"):
                d[key] = None
        d.update(extra)
        out_frames.append(d)

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    truth_doc = {
        "file": path.name,
        "kind": spec.kind,
        "style": spec.style,
        "calibration": spec.calibration,
        "sop_class_uid": str(ds.SOPClassUID),
        "transfer_syntax_uid": str(ds.file_meta.TransferSyntaxUID),
        "photometric_interpretation": str(ds.PhotometricInterpretation),
        "number_of_frames": len(out_frames),
        "frame_time_ms": round(1000.0 / 30.0, 3) if spec.n_frames > 1 else None,
        "mm_per_px": spec.mm_per_px if calibrated else None,
        "render_mm_per_px": spec.mm_per_px,
        "tissue_region_px": region_box,
        "series_description": spec.description,
        "laterality": spec.laterality,
        "patient_id": patient.patient_id,
        "study_instance_uid": study_uid,
        "series_instance_uid": series_uid,
        "sop_instance_uid": sop_uid,
        "frames": out_frames,
    }
    (out_dir / f"{spec.stem}.json").write_text(json.dumps(truth_doc, indent=1) + "\n")
    LOG.info("wrote %s (%d frame(s), %s)", path.name, len(out_frames), spec.style)
    return {
        "file": path.name,
        "truth": f"{spec.stem}.json",
        "kind": spec.kind,
        "style": spec.style,
        "study": spec.study,
        "study_instance_uid": study_uid,
        "patient_id": patient.patient_id,
        "series_description": spec.description,
        "laterality": spec.laterality,
        "calibration": spec.calibration,
        "photometric_interpretation": spec.photometric,
        "transfer_syntax_uid": str(spec.transfer_syntax),
        "number_of_frames": len(out_frames),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def generate_sample_data(out_dir: str | Path, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Generate the bundled sample studies into ``out_dir``.

    Parameters
    ----------
    out_dir
        Destination folder (created if needed).
    only
        Optional stems (e.g. ``["01_nerve_mono"]``) to restrict the output; the
        manifest is then not written.

    Returns
    -------
    list of dict
        Manifest entries (file, truth, kind, style, study, ...).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sel = set(only) if only is not None else None
    entries = [_build_file(spec, out) for spec in _FILES if sel is None or spec.stem in sel]
    if sel is None:
        manifest = {
            "description": "Synthetic musculoskeletal ultrasound sample studies (see README.md)",
            "generator": "sample_data/generate.py",
            "studies": {
                k: {"patient_id": _PATIENTS[k].patient_id, "patient_name": _PATIENTS[k].name,
                    "study_instance_uid": str(deterministic_uid("study", k)),
                    "study_description": _STUDIES[k]["description"]}
                for k in sorted(_PATIENTS)
            },
            "files": entries,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return entries
