"""Synthetic muscle cine clips with fasciculation ground truth (issue 20).

A clip is a speckle-textured muscle (subcutaneous layer, superficial fascia,
oblique fascicles, deep aponeurosis) seen by a linear probe, rendered one
frame at a time from a band-limited complex scatterer field that moves with
the tissue (frozen speckle):

- **twitches** (the events to find): a Gaussian patch of muscle (sigma 1.5 to
  3.5 mm) displaced and relaxed once, 0.1 to 1 s long, 0.25 to 0.9 mm at the
  peak; fast rise (35 % of the duration), slower relaxation. The truth time is
  the time of peak displacement (CONTRACT.md section 4);
- **confounders**, each switchable: ``drift`` (probe sliding and tilting,
  slow out-of-plane speckle decorrelation), ``breathing`` (a 3 to 5 s
  periodic shift and depth scaling of the whole image), ``artery`` (an
  intramuscular artery pulsating at 55 to 90 beats/min, pushing the muscle
  around it), ``contraction`` (a voluntary contraction: 0.6 to 1 s ramp,
  3 to 5 s hold, release; the muscle thickens and shortens non-uniformly),
  ``noise`` (bursts of 2 to 6 frames of heavy noise, flicker or blur).

:func:`sample_clip` draws a :class:`CineClip` from a seed; :func:`iter_clip_frames`
renders its frames lazily (``uint8``, one at a time, never the whole clip);
:func:`write_clip_dicom` writes an Ultrasound Multi-frame Image with Frame
Time and a calibrated ultrasound region plus a JSON file of the true events.

Run ``python sample_data/cine_clips.py --out DIR`` to write a few clips.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    "CONFOUNDERS",
    "Artery",
    "Breathing",
    "CineClip",
    "Contraction",
    "Drift",
    "NoiseBurst",
    "Twitch",
    "clip_truth",
    "iter_clip_frames",
    "sample_clip",
    "write_clip_dicom",
]

LOG = logging.getLogger("mskus.sample_data.cine")

#: Confounder names accepted by :func:`sample_clip`.
CONFOUNDERS = ("drift", "breathing", "artery", "contraction", "noise")

#: Time of peak displacement as a fraction of a twitch's duration (fast rise, slower relaxation).
TWITCH_PEAK_FRACTION = 0.35


@dataclass(frozen=True)
class Twitch:
    """One fasciculation: a local displacement out and back.

    Attributes
    ----------
    onset_s, duration_s : float
        Start and total duration (s).
    x_mm, y_mm : float
        Centre in frame mm (from the top-left pixel centre).
    sigma_mm : float
        Gaussian radius of the displaced patch (mm).
    amplitude_mm : float
        Peak displacement at the centre (mm).
    angle_deg : float
        Direction of the displacement (image x to the right, y down).
    """

    onset_s: float
    duration_s: float
    x_mm: float
    y_mm: float
    sigma_mm: float
    amplitude_mm: float
    angle_deg: float

    @property
    def peak_time_s(self) -> float:
        """Time of peak displacement (s from the first frame)."""
        return self.onset_s + TWITCH_PEAK_FRACTION * self.duration_s

    @property
    def peak_speed_mm_s(self) -> float:
        """Peak speed of the patch centre (mm/s): the steepest point of the rise."""
        return self.amplitude_mm * math.pi / (2.0 * TWITCH_PEAK_FRACTION * self.duration_s)

    def profile(self, t_s: float) -> float:
        """Displacement fraction (0 to 1) at time ``t_s``."""
        tau = (t_s - self.onset_s) / self.duration_s
        if tau <= 0.0 or tau >= 1.0:
            return 0.0
        if tau < TWITCH_PEAK_FRACTION:
            return math.sin(0.5 * math.pi * tau / TWITCH_PEAK_FRACTION) ** 2
        return math.cos(0.5 * math.pi * (tau - TWITCH_PEAK_FRACTION) / (1.0 - TWITCH_PEAK_FRACTION)) ** 2


@dataclass(frozen=True)
class Drift:
    """Probe drift: lateral/axial sliding (mm/s, slowly varying), tilt (deg) and out-of-plane decorrelation."""

    velocity_x_mm_s: float
    velocity_y_mm_s: float
    wobble_mm: float
    wobble_period_s: float
    tilt_deg: float
    tilt_period_s: float
    decorrelation_per_s: float


@dataclass(frozen=True)
class Breathing:
    """Periodic whole-image motion: shift (mm) and depth scaling at the breathing period."""

    amplitude_mm: float
    period_s: float
    scale: float
    phase: float


@dataclass(frozen=True)
class Artery:
    """An intramuscular artery: lumen centre and radius (mm), pulse at ``rate_bpm``."""

    x_mm: float
    y_mm: float
    radius_mm: float
    wall_displacement_mm: float
    rate_bpm: float
    phase_s: float


@dataclass(frozen=True)
class Contraction:
    """A voluntary contraction: ramp up, hold, release; peak strain ``strain``."""

    start_s: float
    ramp_s: float
    hold_s: float
    strain: float

    def level(self, t_s: float) -> float:
        """Activation 0..1 at ``t_s`` (smooth ramps)."""
        t = t_s - self.start_s
        if t <= 0:
            return 0.0
        if t < self.ramp_s:
            return 0.5 - 0.5 * math.cos(math.pi * t / self.ramp_s)
        t -= self.ramp_s
        if t < self.hold_s:
            return 1.0
        t -= self.hold_s
        if t < self.ramp_s:
            return 0.5 + 0.5 * math.cos(math.pi * t / self.ramp_s)
        return 0.0


@dataclass(frozen=True)
class NoiseBurst:
    """Frames ``first_frame`` .. ``first_frame + frames - 1`` corrupted by ``kind`` (noise, flicker, blur)."""

    first_frame: int
    frames: int
    kind: str


@dataclass(frozen=True)
class CineClip:
    """Everything needed to render a clip, and its truth."""

    seed: int
    fps: float
    duration_s: float
    rows: int
    columns: int
    mm_per_px: float
    fascia_y_mm: float
    aponeurosis_y_mm: float
    pennation_deg: float
    twitches: tuple[Twitch, ...] = ()
    drift: Drift | None = None
    breathing: Breathing | None = None
    artery: Artery | None = None
    contraction: Contraction | None = None
    noise_bursts: tuple[NoiseBurst, ...] = ()
    confounders: tuple[str, ...] = field(default=())

    @property
    def number_of_frames(self) -> int:
        return int(round(self.duration_s * self.fps))

    @property
    def frame_time_ms(self) -> float:
        return 1000.0 / self.fps


def _sample_twitches(
    rng: np.random.Generator,
    duration_s: float,
    count: int,
    width_mm: float,
    top_mm: float,
    bottom_mm: float,
    avoid: Artery | None,
) -> tuple[Twitch, ...]:
    twitches: list[Twitch] = []
    attempts = 0
    while len(twitches) < count and attempts < 200 * max(count, 1):
        attempts += 1
        d = float(rng.uniform(0.1, 1.0))
        onset = float(rng.uniform(0.5, duration_s - d - 0.5))
        sigma = float(rng.uniform(1.5, 3.5))
        x = float(rng.uniform(3.0 + sigma, width_mm - 3.0 - sigma))
        y = float(rng.uniform(top_mm + 1.0 + sigma, bottom_mm - 1.0 - sigma))
        if avoid is not None and math.hypot(x - avoid.x_mm, y - avoid.y_mm) < avoid.radius_mm + 2.0 * sigma + 3.0:
            continue
        # Keep true events apart (>1.2 s or >12 mm) so each has one unambiguous match.
        if any(abs(onset - o.onset_s) < 1.2 and math.hypot(x - o.x_mm, y - o.y_mm) < 12.0 for o in twitches):
            continue
        twitches.append(
            Twitch(
                onset_s=onset,
                duration_s=d,
                x_mm=x,
                y_mm=y,
                sigma_mm=sigma,
                amplitude_mm=float(rng.uniform(0.25, 0.9)),
                angle_deg=float(rng.uniform(0.0, 360.0)),
            )
        )
    return tuple(sorted(twitches, key=lambda t: t.onset_s))


def sample_clip(
    seed: int,
    *,
    duration_s: float = 20.0,
    fps: float = 30.0,
    rows: int = 256,
    columns: int = 256,
    mm_per_px: float = 0.16,
    twitches_per_minute: float = 24.0,
    twitches: int | None = None,
    confounders: Sequence[str] = (),
) -> CineClip:
    """Draw a clip from ``seed``.

    Parameters
    ----------
    seed : int
        Everything random comes from ``numpy.random.default_rng(seed)``.
    duration_s, fps : float
        Clip length (s) and frame rate (frames/s).
    rows, columns : int
        Frame size (pixels); the whole frame is the tissue region.
    mm_per_px : float
        Isotropic pixel size (mm).
    twitches_per_minute : float
        Mean twitch rate (Poisson count) when ``twitches`` is not given.
    twitches : int, optional
        Exact number of twitches (0 for a confounder-only clip).
    confounders : sequence of str
        Any of :data:`CONFOUNDERS`.
    """
    unknown = set(confounders) - set(CONFOUNDERS)
    if unknown:
        raise ValueError(f"unknown confounders {sorted(unknown)}; choose from {CONFOUNDERS}")
    rng = np.random.default_rng(seed)
    width_mm, depth_mm = columns * mm_per_px, rows * mm_per_px
    fascia = float(rng.uniform(0.12, 0.18) * depth_mm)
    aponeurosis = float(rng.uniform(0.78, 0.88) * depth_mm)
    pennation = float(rng.uniform(8.0, 20.0) * rng.choice([-1.0, 1.0]))
    # Each confounder draws from its own stream so switching one on or off leaves the others (and the twitches) alone.
    streams = {name: np.random.default_rng([seed, k]) for k, name in enumerate(CONFOUNDERS, start=1)}
    # The artery is drawn whether or not it is shown, so twitches keep clear of it either way.
    r = streams["artery"]
    radius = float(r.uniform(1.2, 2.0))
    artery: Artery | None = Artery(
        x_mm=float(r.uniform(0.3, 0.7) * width_mm),
        y_mm=float(r.uniform(fascia + 4.0 + radius, aponeurosis - 4.0 - radius)),
        radius_mm=radius,
        wall_displacement_mm=float(r.uniform(0.15, 0.3)),
        rate_bpm=float(r.uniform(55.0, 90.0)),
        phase_s=float(r.uniform(0.0, 1.0)),
    )
    n_twitches = int(rng.poisson(twitches_per_minute * duration_s / 60.0)) if twitches is None else int(twitches)
    twitch_rng = np.random.default_rng([seed, 99])
    events = _sample_twitches(twitch_rng, duration_s, n_twitches, width_mm, fascia, aponeurosis, artery)
    if "artery" not in confounders:
        artery = None
    drift = breathing = contraction = None
    bursts: tuple[NoiseBurst, ...] = ()
    if "drift" in confounders:
        r = streams["drift"]
        drift = Drift(
            velocity_x_mm_s=float(r.uniform(0.2, 0.6) * r.choice([-1, 1])),
            velocity_y_mm_s=float(r.uniform(-0.1, 0.1)),
            wobble_mm=float(r.uniform(0.3, 1.0)),
            wobble_period_s=float(r.uniform(6.0, 12.0)),
            tilt_deg=float(r.uniform(1.0, 3.0)),
            tilt_period_s=float(r.uniform(8.0, 16.0)),
            decorrelation_per_s=float(r.uniform(0.01, 0.03)),
        )
    if "breathing" in confounders:
        r = streams["breathing"]
        breathing = Breathing(
            amplitude_mm=float(r.uniform(0.6, 1.5)),
            period_s=float(r.uniform(3.0, 5.0)),
            scale=float(r.uniform(0.005, 0.015)),
            phase=float(r.uniform(0, 2 * math.pi)),
        )
    if "contraction" in confounders:
        r = streams["contraction"]
        ramp, hold = float(r.uniform(0.6, 1.0)), float(r.uniform(3.0, 5.0))
        contraction = Contraction(
            start_s=float(r.uniform(1.0, max(1.5, duration_s - 2 * ramp - hold - 1.0))),
            ramp_s=ramp,
            hold_s=hold,
            strain=float(r.uniform(0.06, 0.12)),
        )
    if "noise" in confounders:
        r = streams["noise"]
        n_frames = int(round(duration_s * fps))
        count = max(1, int(round(duration_s / 8.0)))
        starts = np.sort(r.choice(np.arange(5, n_frames - 10), size=count, replace=False))
        bursts = tuple(
            NoiseBurst(
                first_frame=int(s), frames=int(r.integers(2, 7)), kind=str(r.choice(["noise", "flicker", "blur"]))
            )
            for s in starts
        )
    return CineClip(
        seed=seed,
        fps=fps,
        duration_s=duration_s,
        rows=rows,
        columns=columns,
        mm_per_px=mm_per_px,
        fascia_y_mm=fascia,
        aponeurosis_y_mm=aponeurosis,
        pennation_deg=pennation,
        twitches=events,
        drift=drift,
        breathing=breathing,
        artery=artery,
        contraction=contraction,
        noise_bursts=bursts,
        confounders=tuple(c for c in CONFOUNDERS if c in confounders),
    )


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

#: Extra canvas around the frame (fraction of each side) so drift never shows an edge.
_CANVAS_MARGIN = 0.25


def _band(y: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    return np.exp(-0.5 * ((y - centre) / half_width) ** 2)


def _reflectivity(clip: CineClip, xs: np.ndarray, ys: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tissue reflectivity (amplitude) on the canvas grid, coordinates in frame mm."""
    X, Y = np.meshgrid(xs, ys)
    refl = np.full(X.shape, 0.55, dtype=np.float32)
    refl[Y < clip.fascia_y_mm] = 0.8  # subcutaneous tissue: brighter, coarser
    # Fascicles: thin bright oblique lines between the fascia and the aponeurosis.
    angle = math.radians(clip.pennation_deg)
    phase = (X * math.sin(angle) + Y * math.cos(angle)) / 0.9 + 0.6 * rng.standard_normal(1)[0]
    wobble = cv2.GaussianBlur(rng.standard_normal(X.shape).astype(np.float32), (0, 0), 6.0) * 6.0
    striae = np.clip(np.cos(2 * np.pi * (phase + wobble * 0.05)), 0, None) ** 6
    muscle = (Y > clip.fascia_y_mm) & (Y < clip.aponeurosis_y_mm)
    refl = refl + np.where(muscle, 1.6 * striae, 0.0).astype(np.float32)
    refl += 2.2 * _band(Y, clip.fascia_y_mm, 0.35).astype(np.float32)
    refl += 2.6 * _band(Y, clip.aponeurosis_y_mm, 0.45).astype(np.float32)
    refl[Y > clip.aponeurosis_y_mm + 1.0] = 0.7
    if clip.artery is not None:
        a = clip.artery
        r = np.hypot(X - a.x_mm, Y - a.y_mm)
        refl = np.where(r < a.radius_mm, 0.04, refl).astype(np.float32)
        refl += (1.8 * np.exp(-0.5 * ((r - a.radius_mm - 0.15) / 0.2) ** 2)).astype(np.float32)
    return refl


class _Renderer:
    """Holds the canvas (complex field) and renders frame ``k`` on request."""

    def __init__(self, clip: CineClip) -> None:
        self.clip = clip
        rng = np.random.default_rng([clip.seed, 7])
        px = clip.mm_per_px
        my, mx = int(clip.rows * _CANVAS_MARGIN), int(clip.columns * _CANVAS_MARGIN)
        self.offset_px = (mx, my)
        shape = (clip.rows + 2 * my, clip.columns + 2 * mx)
        xs = (np.arange(shape[1], dtype=np.float32) - mx) * px
        ys = (np.arange(shape[0], dtype=np.float32) - my) * px
        refl = _reflectivity(clip, xs, ys, rng)
        # PSF: lateral 0.35 mm, axial 0.18 mm (sigma), band-limited so remapping keeps the speckle.
        sx, sy = 0.35 / px, 0.18 / px

        def field() -> np.ndarray:
            z = rng.standard_normal((*shape, 2)).astype(np.float32)
            z *= refl[..., None]
            return cv2.GaussianBlur(z, (0, 0), sigmaX=sx, sigmaY=sy)

        self.field_a = field()
        self.field_b = field() if clip.drift is not None else None
        norm = float(np.sqrt(np.mean(np.sum(self.field_a**2, axis=-1))))
        self.field_a /= norm
        if self.field_b is not None:
            self.field_b /= norm
        yy, xx = np.mgrid[0 : clip.rows, 0 : clip.columns].astype(np.float32)
        self.x_mm = xx * px
        self.y_mm = yy * px
        self.depth_gain = (1.0 - 0.25 * yy / clip.rows).astype(np.float32)
        self.noise_rng = np.random.default_rng([clip.seed, 11])
        # A smooth random field makes the voluntary contraction non-uniform.
        self.contraction_field = cv2.GaussianBlur(
            rng.standard_normal((clip.rows, clip.columns, 2)).astype(np.float32), (0, 0), clip.rows / 6.0
        ) * (clip.rows / 6.0)

    def displacement_mm(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Tissue displacement (mm) at each frame pixel at time ``t`` (frame coordinates)."""
        clip = self.clip
        ux = np.zeros((clip.rows, clip.columns), dtype=np.float32)
        uy = np.zeros_like(ux)
        X, Y = self.x_mm, self.y_mm
        for tw in clip.twitches:
            p = tw.profile(t)
            if p <= 0.0:
                continue
            g = np.exp(-0.5 * ((X - tw.x_mm) ** 2 + (Y - tw.y_mm) ** 2) / tw.sigma_mm**2) * (tw.amplitude_mm * p)
            a = math.radians(tw.angle_deg)
            ux += g * math.cos(a)
            uy += g * math.sin(a)
        if clip.artery is not None:
            art = clip.artery
            period = 60.0 / art.rate_bpm
            phase = ((t + art.phase_s) % period) / period
            # Systolic upstroke (first 12 %), exponential run-off.
            pulse = math.sin(0.5 * math.pi * phase / 0.12) if phase < 0.12 else math.exp(-(phase - 0.12) / 0.15)
            dx, dy = X - art.x_mm, Y - art.y_mm
            r = np.maximum(np.hypot(dx, dy), 1e-3)
            radial = art.wall_displacement_mm * pulse * np.minimum(r / art.radius_mm, (art.radius_mm / r) ** 1.5)
            ux += radial * dx / r
            uy += radial * dy / r
        if clip.contraction is not None:
            level = clip.contraction.level(t)
            if level > 0:
                s = clip.contraction.strain * level
                # Thickening about the aponeurosis, shortening about the centre, plus a smooth non-uniform part.
                uy += -s * (clip.aponeurosis_y_mm - Y) * (Y < clip.aponeurosis_y_mm)
                ux += -0.6 * s * (X - X.mean())
                ux += s * self.contraction_field[..., 0] * clip.mm_per_px
                uy += s * self.contraction_field[..., 1] * clip.mm_per_px
        return ux, uy

    def global_transform(self, t: float) -> tuple[float, float, float, float]:
        """Probe motion at ``t``: tissue shift x, y (mm), rotation (rad) and depth scale (1 + s)."""
        clip = self.clip
        gx = gy = rot = 0.0
        scale = 0.0
        if clip.drift is not None:
            d = clip.drift
            gx += d.velocity_x_mm_s * t + d.wobble_mm * math.sin(2 * math.pi * t / d.wobble_period_s)
            gy += d.velocity_y_mm_s * t
            rot += math.radians(d.tilt_deg) * math.sin(2 * math.pi * t / d.tilt_period_s)
        if clip.breathing is not None:
            b = clip.breathing
            w = math.sin(2 * math.pi * t / b.period_s + b.phase)
            gy += b.amplitude_mm * w
            gx += 0.3 * b.amplitude_mm * w
            scale += b.scale * w
        return gx, gy, rot, scale

    def frame(self, k: int) -> np.ndarray:
        clip = self.clip
        t = k / clip.fps
        px = clip.mm_per_px
        ux, uy = self.displacement_mm(t)
        gx, gy, rot, scale = self.global_transform(t)
        # Source position (frame mm) of what is seen at each pixel: inverse of local then global motion.
        cx, cy = clip.columns * px / 2.0, 0.0
        X0, Y0 = self.x_mm - gx - cx, self.y_mm - gy - cy
        c, s = math.cos(-rot), math.sin(-rot)
        Xs = (c * X0 - s * Y0) / (1.0 + scale) + cx - ux
        Ys = (s * X0 + c * Y0) / (1.0 + scale) + cy - uy
        map_x = (Xs / px + self.offset_px[0]).astype(np.float32)
        map_y = (Ys / px + self.offset_px[1]).astype(np.float32)
        z = cv2.remap(self.field_a, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if self.field_b is not None and clip.drift is not None:
            theta = min(math.pi / 2, clip.drift.decorrelation_per_s * t * math.pi / 2)
            zb = cv2.remap(self.field_b, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            z = math.cos(theta) * z + math.sin(theta) * zb
        envelope = np.sqrt(z[..., 0] ** 2 + z[..., 1] ** 2) * self.depth_gain
        noise = self.noise_rng.standard_normal(envelope.shape).astype(np.float32)
        image = 30.0 + 225.0 * np.log1p(3.0 * envelope) / math.log1p(3.0 * 4.0) + 3.0 * noise
        for burst in clip.noise_bursts:
            if burst.first_frame <= k < burst.first_frame + burst.frames:
                if burst.kind == "noise":
                    image = image + 45.0 * self.noise_rng.standard_normal(image.shape).astype(np.float32)
                elif burst.kind == "flicker":
                    image = image * float(self.noise_rng.uniform(0.4, 0.7)) + 40.0
                else:  # blur: the probe loses contact for a moment
                    image = cv2.GaussianBlur(image, (0, 0), 4.0)
        return np.clip(image, 0, 255).astype(np.uint8)


def iter_clip_frames(clip: CineClip) -> Iterator[np.ndarray]:
    """Render the clip's frames one at a time (``uint8``, ``(rows, columns)``)."""
    renderer = _Renderer(clip)
    for k in range(clip.number_of_frames):
        yield renderer.frame(k)


def clip_truth(clip: CineClip) -> dict[str, Any]:
    """JSON-ready truth: the clip's parameters and each twitch with its peak time (s) and location (px, mm)."""
    events = [
        {
            **asdict(tw),
            "time_s": tw.peak_time_s,
            "x_px": tw.x_mm / clip.mm_per_px,
            "y_px": tw.y_mm / clip.mm_per_px,
            "peak_speed_mm_s": tw.peak_speed_mm_s,
        }
        for tw in clip.twitches
    ]
    data = asdict(clip)
    data.pop("twitches")
    return {
        "clip": data,
        "number_of_frames": clip.number_of_frames,
        "frame_time_ms": clip.frame_time_ms,
        "events": events,
    }


def write_clip_dicom(
    path: str | Path,
    clip: CineClip,
    *,
    timing: str = "frame_time",
    series_description: str = "R TIBIALIS ANTERIOR MUSCLE CINE",
    truth_path: str | Path | None = None,
) -> Path:
    """Write the clip as an Ultrasound Multi-frame Image (and its truth as JSON).

    Parameters
    ----------
    path : path
        Output DICOM file.
    clip : CineClip
        The clip; rendered here (the written file holds every frame, so keep
        clips written this way short).
    timing : {"frame_time", "frame_time_vector", "cine_rate", "none"}
        Which timing attribute the file carries (``"none"``: no timing at all).
    series_description : str
        Series Description (chooses the protocol).
    truth_path : path, optional
        Where to write the truth JSON (default: ``path`` with ``.json``).

    Returns
    -------
    Path
        The truth JSON written.
    """
    from sample_data.generate import (
        PatientInfo,
        SeriesInfo,
        StudyInfo,
        deterministic_uid,
        tissue_region,
        write_ultrasound_dicom,
    )

    frames = np.stack(list(iter_clip_frames(clip)))
    tag = f"cine-{clip.seed}-{clip.number_of_frames}-{'-'.join(clip.confounders)}"
    study = StudyInfo(
        uid=str(deterministic_uid(tag, "study")),
        date="20260101",
        time="100000",
        description="MUSCLE ULTRASOUND",
        accession="CINE0001",
        study_id="1",
    )
    series = SeriesInfo(
        uid=str(deterministic_uid(tag, "series")),
        number=1,
        description=series_description,
        laterality="R",
        body_part="LEG",
    )
    patient = PatientInfo(name="Synthetic^Cine", patient_id="MSKUS-CINE", birth_date="19600101", sex="O")
    region = tissue_region(0, 0, clip.columns, clip.rows, clip.mm_per_px)
    ds = write_ultrasound_dicom(
        path,
        frames,
        patient=patient,
        study=study,
        series=series,
        sop_instance_uid=str(deterministic_uid(tag, "sop")),
        regions=[region],
        frame_time_ms=clip.frame_time_ms if timing == "frame_time" else None,
        multiframe=True,
    )
    if timing != "frame_time":
        for keyword in ("FrameTime", "FrameIncrementPointer", "CineRate", "RecommendedDisplayFrameRate"):
            if keyword in ds:
                delattr(ds, keyword)
        if timing == "frame_time_vector":
            ds.FrameTimeVector = [0.0] + [clip.frame_time_ms] * (clip.number_of_frames - 1)
            ds.FrameIncrementPointer = 0x00181065
        elif timing == "cine_rate":
            ds.CineRate = int(round(clip.fps))
        elif timing != "none":
            raise ValueError(f"unknown timing {timing!r}")
        ds.save_as(path, enforce_file_format=True)
    out = Path(truth_path) if truth_path is not None else Path(path).with_suffix(".json")
    out.write_text(json.dumps(clip_truth(clip), indent=1))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, confounders in (("twitches_only", ()), ("all_confounders", CONFOUNDERS)):
        clip = sample_clip(args.seed, duration_s=args.seconds, fps=args.fps, confounders=confounders)
        path = args.out / f"cine_{name}.dcm"
        write_clip_dicom(path, clip)
        LOG.info("%s: %d frames, %d twitches", path, clip.number_of_frames, len(clip.twitches))
    quiet = replace(sample_clip(args.seed, duration_s=args.seconds, fps=args.fps, confounders=CONFOUNDERS, twitches=0))
    write_clip_dicom(args.out / "cine_confounders_only.dcm", quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
