"""Score nerve segmenters on the annotated real scans (usgra-seg-train); no torch needed.

Data: ``../shared/data/real/usgra-seg-train/`` (CC-BY-4.0, tmkand/usgra-seg
2025): B-mode crops with palette masks, 0 background, 1 nerve (several
components possible), 2 blood vessel. No pixel size is known, so everything
is in pixels.

Figures (per segmenter, through its ``segment()`` on the whole image):

- ``hit_rate``: share of true nerve regions (connected components of at least
  ``MIN_TRUE_AREA_FRACTION`` of the image) that some reported nerve overlaps
  with Dice >= 0.3.
- ``image_hit_rate``: share of images whose first (best) reported nerve is
  such a hit; comparable for segmenters that report one nerve per frame.
- ``dice_on_hits``: mean Dice of each hit region with its best-matching
  reported nerve.
- ``area_error_px``: reported minus true area (pixels) on hits: median of the
  absolute error, mean signed error, median absolute relative error.
- ``vessel_fp_rate``: share of reported nerves that lie on a vessel (more
  of the contour's pixels on vessel than on nerve, and at least 20 % of them
  on vessel); ``images_with_vessel_fp``: images with at least one.
- ``precision``: share of reported nerves that hit a true nerve region.
- ``nerve_dice``: pixel Dice of the union of the reported nerves with the
  true nerve mask, averaged over images (0 for an image with nothing
  reported); the figure recorded next to the model.
- ``ms_per_frame``: median wall time of ``segment()`` with
  ``cv2.setNumThreads(1)``.

Usage::

    .venv/bin/python -m training.evaluate_nerve [--segmenters learned learned-network auto classical] [--json out.json]

``learned`` and ``auto`` use the settings of ``configs/segmentation.yaml``
(``learned``: the shipped outline); ``learned-network`` is ``learned`` with
the network's own outline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.calibration import PixelBox  # noqa: E402
from pipeline.geometry import dice_coefficient  # noqa: E402
from pipeline.measurements.nerve import contour_mask  # noqa: E402

USGRA = REPO.parent / "shared" / "data" / "real" / "usgra-seg-train"
MIN_TRUE_AREA_FRACTION = 0.001
HIT_DICE = 0.3
#: Nominal pixel size for the classical segmenter's size priors on these PNGs
#: (as in benchmarks/accuracy.py); the learned segmenter needs none.
CLASSICAL_NOMINAL_MM_PER_PX = 0.07


def load_example(name: str, folder: Path = USGRA) -> tuple[np.ndarray, np.ndarray]:
    """Gray image and label image (0 bg, 1 nerve, 2 vessel) of one file."""
    gray = cv2.imread(str(folder / "images" / name), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise FileNotFoundError(folder / "images" / name)
    # Palette PNG: the indices are the labels (OpenCV would expand the palette).
    labels = np.asarray(Image.open(folder / "masks" / name)).astype(np.uint8)
    return gray, labels


def all_names(folder: Path = USGRA) -> list[str]:
    return sorted(p.name for p in (folder / "images").glob("*.png") if (folder / "masks" / p.name).exists())


def true_nerve_regions(labels: np.ndarray) -> list[np.ndarray]:
    min_area = MIN_TRUE_AREA_FRACTION * labels.size
    count, comp, stats, _ = cv2.connectedComponentsWithStats((labels == 1).astype(np.uint8), connectivity=8)
    return [comp == k for k in range(1, count) if stats[k, cv2.CC_STAT_AREA] >= min_area]


def score_image(pred_masks: Sequence[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """Per-image figures for predicted nerve masks (best first) against a label image."""
    truths = true_nerve_regions(labels)
    nerve = labels == 1
    vessel = labels == 2
    hits = []
    for t in truths:
        dices = [dice_coefficient(p, t) for p in pred_masks]
        best = int(np.argmax(dices)) if dices else -1
        if best >= 0 and dices[best] >= HIT_DICE:
            pred_area = float(pred_masks[best].sum())
            true_area = float(t.sum())
            hits.append({"dice": dices[best], "pred_area": pred_area, "true_area": true_area})
    matched_preds = 0
    vessel_fps = 0
    for p in pred_masks:
        if any(dice_coefficient(p, t) >= HIT_DICE for t in truths):
            matched_preds += 1
        on_vessel = int((p & vessel).sum())
        on_nerve = int((p & nerve).sum())
        if on_vessel > on_nerve and on_vessel >= 0.2 * max(int(p.sum()), 1):
            vessel_fps += 1
    first_hit = bool(pred_masks) and any(dice_coefficient(pred_masks[0], t) >= HIT_DICE for t in truths)
    union = np.zeros_like(nerve)
    for p in pred_masks:
        union |= p
    return {
        "true_regions": len(truths),
        "reported": len(pred_masks),
        "hits": hits,
        "matched_reports": matched_preds,
        "vessel_fp": vessel_fps,
        "first_hit": first_hit,
        "nerve_dice": dice_coefficient(union, nerve) if nerve.any() or union.any() else 1.0,
    }


def summarize(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    rows = list(rows)
    n_true = sum(r["true_regions"] for r in rows)
    hits = [h for r in rows for h in r["hits"]]
    reported = sum(r["reported"] for r in rows)
    err = np.array([h["pred_area"] - h["true_area"] for h in hits], dtype=float)
    rel = np.array([(h["pred_area"] - h["true_area"]) / h["true_area"] for h in hits], dtype=float)
    times = [r["ms"] for r in rows if "ms" in r]
    return {
        "images": len(rows),
        "true_nerve_regions": n_true,
        "reported_nerves": reported,
        "hit_rate": len(hits) / n_true if n_true else None,
        "image_hit_rate": float(np.mean([r["first_hit"] for r in rows])) if rows else None,
        "dice_on_hits": float(np.mean([h["dice"] for h in hits])) if hits else None,
        "dice_on_hits_median": float(np.median([h["dice"] for h in hits])) if hits else None,
        "area_error_px": {
            "median_abs": float(np.median(np.abs(err))) if hits else None,
            "mean_signed": float(np.mean(err)) if hits else None,
            "median_abs_relative": float(np.median(np.abs(rel))) if hits else None,
            "mean_signed_relative": float(np.mean(rel)) if hits else None,
        },
        "precision": sum(r["matched_reports"] for r in rows) / reported if reported else None,
        "vessel_fp_rate": sum(r["vessel_fp"] for r in rows) / reported if reported else 0.0,
        "vessel_fp": sum(r["vessel_fp"] for r in rows),
        "images_with_vessel_fp": sum(1 for r in rows if r["vessel_fp"]),
        "nerve_dice": float(np.mean([r["nerve_dice"] for r in rows])) if rows else None,
        "ms_per_frame": float(np.median(times)) if times else None,
    }


def score_images(
    segmenter: Any,
    names: Sequence[str],
    *,
    mm_per_px: float | None = None,
    folder: Path = USGRA,
    single_thread: bool = True,
    repeats: int = 1,
    scorer: Callable[[list[np.ndarray], np.ndarray], dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Run ``segmenter.segment`` on each image (whole image as the tissue region) and score it.

    Returns the per-image rows of ``scorer(report masks, label image)``
    (default :func:`score_image`), each with ``file`` and ``ms`` added, and
    the segmenter's summed ``last_stats``. ``repeats`` > 1 runs
    each image that many times and takes the fastest run as its time (on a
    shared machine: the time without the other load); the results are those
    of the last run (the segmenters are deterministic).
    """
    threads = cv2.getNumThreads()
    if single_thread:
        cv2.setNumThreads(1)
    rows = []
    stats: dict[str, int] = {}
    try:
        for name in names:
            gray, labels = load_example(name, folder)
            box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1)
            ms = float("inf")
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                found = segmenter.segment(gray, box, mm_per_px=mm_per_px)
                ms = min(ms, 1000.0 * (time.perf_counter() - t0))
            for key, value in (getattr(segmenter, "last_stats", None) or {}).items():
                stats[key] = stats.get(key, 0) + int(value)
            masks = [contour_mask(s.contour_px, gray.shape) for s in found]
            row = (scorer or score_image)(masks, labels)
            row.update(file=name, ms=ms)
            rows.append(row)
    finally:
        cv2.setNumThreads(threads)
    return rows, stats


def summarize_rows(rows: Sequence[dict[str, Any]], stats: dict[str, int] | None = None, repeats: int = 1) -> dict[str, Any]:
    """:func:`summarize` plus the per-image list (and timing and segmenter notes) that :func:`evaluate` returns."""
    summary = summarize(rows)
    if repeats > 1:
        summary["ms_per_frame_timing"] = f"fastest of {repeats} runs per image, median over images"
    if stats:
        summary["auto_stats"] = stats
    summary["per_image"] = [
        {
            "file": r["file"],
            "true_regions": r["true_regions"],
            "reported": r["reported"],
            "hits": len(r["hits"]),
            "dice": [round(h["dice"], 4) for h in r["hits"]],
            "vessel_fp": r["vessel_fp"],
            "nerve_dice": round(r["nerve_dice"], 4),
        }
        for r in rows
    ]
    return summary


def evaluate(segmenter: Any, names: Sequence[str], *, repeats: int = 1, **options: Any) -> dict[str, Any]:
    """The figures of :func:`summarize_rows` over :func:`score_images` (``options``: its keyword arguments)."""
    rows, stats = score_images(segmenter, names, repeats=repeats, **options)
    return summarize_rows(rows, stats, repeats)


def evaluate_out_of_fold(parts: Sequence[tuple[Any, Sequence[str]]], *, folder: Path = USGRA) -> dict[str, Any]:
    """Figures over cross-validation folds: each ``(segmenter, held-out names)`` scored, the rows pooled."""
    rows: list[dict[str, Any]] = []
    for segmenter, names in parts:
        rows.extend(score_images(segmenter, names, folder=folder)[0])
    return summarize_rows(rows)


def signed_mean_interval(rows: Sequence[dict[str, Any]], draws: int = 4000, seed: int = 0) -> list[float] | None:
    """95 % bootstrap interval of the signed mean relative area error; images are resampled (their hits together)."""
    per_image = [np.array([(h["pred_area"] - h["true_area"]) / h["true_area"] for h in r["hits"]]) for r in rows]
    if not any(len(x) for x in per_image):
        return None
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(draws):
        drawn = np.concatenate([per_image[i] for i in rng.integers(0, len(per_image), len(per_image))])
        if len(drawn):
            means.append(float(drawn.mean()))
    low, high = np.percentile(means, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def reported_figures(segmenter: Any, names: Sequence[str], *, folder: Path = USGRA) -> dict[str, Any]:
    """What the pipeline reports on ``names``: the segmenter's nerves at or above its confidence floor.

    The figures of :func:`evaluate`, plus the floor, the median signed
    relative area error and a 95 % bootstrap interval of the signed mean
    (``area_error_px``): with a few dozen images one or two large misfits
    move the mean by several points.
    """
    floor = float(getattr(segmenter, "min_confidence", 0.0))
    rows, _ = score_images(FlooredSegmenter(segmenter, floor), names, folder=folder)
    figures = summarize_rows(rows)
    rel = [(h["pred_area"] - h["true_area"]) / h["true_area"] for r in rows for h in r["hits"]]
    figures["area_error_px"]["median_signed_relative"] = float(np.median(rel)) if rel else None
    figures["area_error_px"]["mean_signed_relative_95ci"] = signed_mean_interval(rows)
    return {"min_confidence": floor, **figures}


class FlooredSegmenter:
    """A segmenter's nerves at or above a confidence floor: what the pipeline reports."""

    def __init__(self, inner: Any, floor: float) -> None:
        self.inner, self.floor = inner, floor

    def segment(
        self, gray: np.ndarray, box: PixelBox, *, mm_per_px: float | None = None, exclude: np.ndarray | None = None
    ) -> list[Any]:
        return [s for s in self.inner.segment(gray, box, mm_per_px=mm_per_px, exclude=exclude) if s.confidence >= self.floor]


#: Segmenter kinds :func:`make` builds, and the key each one's figures are recorded under.
KIND_KEYS = {
    "learned": "learned",
    "learned-network": "learned_network_outline",
    "auto": "auto",
    "classical": "classical",
}


def shipped_learned_parameters(**overrides: Any) -> Any:
    """The learned segmenter's settings as shipped, with ``overrides``.

    The ``nerve: learned:`` section of ``configs/segmentation.yaml`` read
    through :func:`pipeline.segmentation.factory.load_segmentation_config`
    (the shipped file itself, not ``MSKUS_SEGMENTATION_CONFIG``), so the
    figures are those of what users get (``outline: refined`` included).
    """
    import dataclasses

    from pipeline.segmentation.factory import DEFAULT_SEGMENTATION_CONFIG, load_segmentation_config
    from pipeline.segmentation.learned_nerve import LearnedNerveParameters

    cfg = load_segmentation_config(DEFAULT_SEGMENTATION_CONFIG)
    names = {f.name for f in dataclasses.fields(LearnedNerveParameters)}
    unknown = (set(cfg.learned) | set(overrides)) - names
    if unknown:
        raise ValueError(f"unknown learned settings: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.learned.items()}
    return LearnedNerveParameters(**{**values, **overrides})


def settings_record(parameters: Any) -> dict[str, Any]:
    """The learned settings a figure was measured with, and where they came from (for the JSON)."""
    from pipeline.segmentation.factory import DEFAULT_SEGMENTATION_CONFIG

    try:
        source = str(DEFAULT_SEGMENTATION_CONFIG.relative_to(REPO))
    except ValueError:
        source = str(DEFAULT_SEGMENTATION_CONFIG)
    return {"outline": parameters.outline, "settings": parameters.as_dict(), "settings_source": f"{source} (nerve: learned:)"}


def interleaved_ms(
    segmenters: dict[str, tuple[Any, float | None]], names: Sequence[str], repeats: int, *, folder: Path = USGRA
) -> dict[str, dict[str, float]]:
    """Per segmenter: median over images of its fastest ``segment()`` run, CPU and wall time (ms), one thread.

    The segmenters take turns on each image (``repeats`` rounds), so that on a
    shared machine they meet the same load. ``cpu`` is the process CPU time
    (:func:`time.process_time`), which other processes' load hardly changes;
    ``wall`` is the wall time, which they do.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    per_image: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in segmenters}
    try:
        for name in names:
            gray, _ = load_example(name, folder)
            box = PixelBox(0, 0, gray.shape[1] - 1, gray.shape[0] - 1)
            best = {k: {"cpu": float("inf"), "wall": float("inf")} for k in segmenters}
            for _ in range(max(1, repeats)):
                for key, (segmenter, scale) in segmenters.items():
                    c0, t0 = time.process_time(), time.perf_counter()
                    segmenter.segment(gray, box, mm_per_px=scale)
                    t1, c1 = time.perf_counter(), time.process_time()
                    best[key]["cpu"] = min(best[key]["cpu"], 1000.0 * (c1 - c0))
                    best[key]["wall"] = min(best[key]["wall"], 1000.0 * (t1 - t0))
            for key, value in best.items():
                for clock in ("cpu", "wall"):
                    per_image[key][clock].append(value[clock])
    finally:
        cv2.setNumThreads(threads)
    return {k: {clock: float(np.median(v)) for clock, v in d.items()} for k, d in per_image.items()}


def _model_runtime(segmenter: Any) -> str | None:
    """The runtime the segmenter's network runs on, as its SR parameters name it (None when not named)."""
    parameters = getattr(segmenter, "parameters", None)
    try:
        value = parameters.as_dict().get("model_runtime") if parameters is not None else None
    except AttributeError:
        return None
    return None if value is None else str(value)


def make(kind: str, model: Path | None = None) -> tuple[Any, float | None]:
    """A segmenter by kind and the mm/px it is given on these uncalibrated PNGs.

    ``learned`` and ``auto`` are built with the shipped settings
    (:func:`shipped_learned_parameters`, the ``auto`` section likewise);
    ``learned-network`` is ``learned`` with the network's own outline
    (``outline: network``), the outline shipped before the refinement.
    """
    from pipeline.segmentation.auto_nerve import AutoNerveParameters, AutoNerveSegmenter
    from pipeline.segmentation.classical_nerve import ClassicalNerveSegmenter
    from pipeline.segmentation.factory import DEFAULT_SEGMENTATION_CONFIG, load_segmentation_config
    from pipeline.segmentation.learned_nerve import LearnedNerveSegmenter
    from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, NerveNet

    if kind == "classical":
        return ClassicalNerveSegmenter(), CLASSICAL_NOMINAL_MM_PER_PX
    if kind not in KIND_KEYS:
        raise ValueError(f"unknown segmenter {kind!r} (choose from {', '.join(KIND_KEYS)})")
    net = NerveNet(model or DEFAULT_MODEL_PATH)
    if kind == "learned-network":
        return LearnedNerveSegmenter(net, shipped_learned_parameters(outline="network")), None
    learned = LearnedNerveSegmenter(net, shipped_learned_parameters())
    if kind == "learned":
        return learned, None
    auto = load_segmentation_config(DEFAULT_SEGMENTATION_CONFIG).auto
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in auto.items()}
    return AutoNerveSegmenter(learned, AutoNerveParameters(**values)), None


def validation_names(model: Path | None = None) -> list[str]:
    """The fixed validation split recorded next to the model."""
    from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, metadata_path

    meta = json.loads(metadata_path(model or DEFAULT_MODEL_PATH).read_text())
    return list(meta["split"]["validation"])


def sample_data_figures(segmenter: Any) -> dict[str, Any]:
    """Nerve frames of ``sample_data/`` (synthetic, exact truth, calibrated) through the pipeline."""
    from pipeline.analysis import analyze_image
    from pipeline.loading import load_ultrasound
    from pipeline.protocols import Protocol
    from pipeline.settings import default_analyzer

    shipped = default_analyzer()
    dices, csa_rel, extra, found, frames = [], [], 0, 0, 0
    vessel_hits = 0
    for path in sorted((REPO / "sample_data").glob("*.dcm")):
        truth = json.loads(path.with_suffix(".json").read_text())
        if truth["kind"] != "nerve":
            continue
        image = load_ultrasound(path)
        shape = (image.rows, image.columns)
        result = analyze_image(
            image, rules=shipped.rules, protocol=Protocol.NERVE, segmenter=segmenter, boundary_finder=shipped.boundary_finder
        )
        for frame, t in zip(result.frames, truth["frames"]):
            frames += 1
            if frame.nerve is None:
                continue
            found += 1
            extra += len(frame.extra_nerves)
            true_mask = contour_mask(np.asarray(t["contour_px"]), shape)
            dices.append(dice_coefficient(contour_mask(frame.nerve.contour_px, shape), true_mask))
            if frame.nerve.cross_sectional_area_mm2 is not None:
                csa_rel.append(frame.nerve.cross_sectional_area_mm2 / t["csa_mm2"] - 1.0)
            v = t.get("vessel")
            if v:
                yy, xx = np.mgrid[: shape[0], : shape[1]]
                disk = (xx - v["center_px"][0]) ** 2 + (yy - v["center_px"][1]) ** 2 <= v["radius_px"] ** 2
                for n in frame.nerves:
                    mask = contour_mask(n.contour_px, shape)
                    vessel_hits += int((mask & disk).sum() > 0.05 * mask.sum())
    return {
        "nerve_frames": frames,
        "detected": found,
        "extra_nerves_reported": extra,
        "nerves_on_vessel": vessel_hits,
        "dice_mean": float(np.mean(dices)) if dices else None,
        "dice_min": float(np.min(dices)) if dices else None,
        "csa_median_abs_relative_error": float(np.median(np.abs(csa_rel))) if csa_rel else None,
        "csa_mean_signed_relative_error": float(np.mean(csa_rel)) if csa_rel else None,
    }


def record(
    model: Path | None = None,
    kinds: Sequence[str] = ("learned", "learned-network", "auto", "classical"),
    *,
    repeats: int = 1,
) -> dict[str, Any]:
    """Score ``kinds`` on the model's validation split and write the figures into its JSON.

    Only the kinds scored are replaced; figures recorded earlier for other
    kinds (and those :mod:`training.calibrate_nerve_confidence` writes) are
    kept. ``learned`` is the shipped setting (``outline`` as in
    ``configs/segmentation.yaml``); ``learned-network`` is recorded as
    ``learned_network_outline``.
    """
    from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, metadata_path

    model = Path(model or DEFAULT_MODEL_PATH)
    meta_file = metadata_path(model)
    meta = json.loads(meta_file.read_text())
    names = meta["split"]["validation"]
    figures = {}
    synthetic = {}
    for kind in kinds:
        key = KIND_KEYS[kind]
        segmenter, scale = make(kind, model)
        figures[key] = evaluate(segmenter, names, mm_per_px=scale)
        settings = getattr(segmenter, "settings", None)
        if kind.startswith("learned") and settings is not None:
            figures[key].update(settings_record(settings))
        runtime = _model_runtime(segmenter)
        if runtime:
            figures[key]["model_runtime"] = runtime
        if repeats <= 1:
            print(format_row(kind, figures[key]), flush=True)
    if repeats > 1:
        load_before = os.getloadavg()[0]
        times = interleaved_ms({KIND_KEYS[k]: make(k, model) for k in kinds}, names, repeats)
        load_after = os.getloadavg()[0]
        for kind in kinds:
            key = KIND_KEYS[kind]
            figures[key]["ms_per_frame"] = times[key]["cpu"]
            figures[key]["wall_ms_per_frame"] = times[key]["wall"]
            figures[key]["ms_per_frame_timing"] = (
                f"CPU time of segment() (process_time), fastest of {repeats} runs per image, the segmenters taking "
                f"turns ({', '.join(kinds)}), median over images; the wall time (wall_ms_per_frame) on the same runs "
                f"had other load: {os.cpu_count()} CPUs, 1-min load average {load_before:.1f} before / {load_after:.1f} after"
            )
            print(format_row(kind, figures[key]), flush=True)
    for kind in kinds:
        segmenter, _ = make(kind, model)
        synthetic[KIND_KEYS[kind]] = sample_data_figures(segmenter)
        print(f"sample_data {kind}: {synthetic[KIND_KEYS[kind]]}", flush=True)
    meta["sample_data"] = {**meta.get("sample_data", {}), **synthetic}
    previous = meta.get("validation", {})
    meta["validation"] = {
        **previous,
        "note": "inference through pipeline.segmentation.nerve_model (the runtime it chooses; model_runtime names it "
        "where the segmenter reports it), full resolution, "
        "definitions in training/evaluate_nerve.py; learned and auto with the settings of "
        "configs/segmentation.yaml (learned: the shipped outline; learned_network_outline: the network's "
        f"own outline); classical given a nominal {CLASSICAL_NOMINAL_MM_PER_PX} mm/px; ms_per_frame with "
        "cv2.setNumThreads(1)",
        "opencv": cv2.__version__,
        **{k: {kk: vv for kk, vv in v.items() if kk != "per_image"} for k, v in figures.items()},
        "per_image": {**previous.get("per_image", {}), **{k: v["per_image"] for k, v in figures.items()}},
    }
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def record_independent_test(model: Path | None, folder: Path) -> dict[str, Any]:
    """Score the shipped settings (both outlines, floor applied) on an independent test set; write them into the JSON.

    ``folder`` is the usgra-seg authors' held-out test set (``dataset/test``
    of tmkand/usgra-seg, CC-BY-4.0: 40 images of the same scanner and
    annotator that are not in ``../shared``). Nothing is chosen on it: no
    training, outline fit or calibration has seen these images.
    """
    from pipeline.segmentation.learned_nerve import LearnedNerveSegmenter
    from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, NerveNet, metadata_path

    model = Path(model or DEFAULT_MODEL_PATH)
    names = all_names(folder)
    if not names:
        raise SystemExit(f"no images with masks under {folder}/images and {folder}/masks")
    net = NerveNet(model)
    shipped = shipped_learned_parameters()
    out: dict[str, Any] = {
        "data": "usgra-seg authors' test set (tmkand/usgra-seg dataset/test, CC-BY-4.0): images never used for "
        "training, the outline fit or the confidence calibration; what the pipeline reports (calibrated confidence, "
        "floor applied); figures as training/evaluate_nerve.py defines them",
        "files": names,
    }
    for key, params in (("learned_with_floor", shipped), ("learned_network_outline_with_floor",
                                                           shipped_learned_parameters(outline="network"))):
        figures = reported_figures(LearnedNerveSegmenter(net, params), names, folder=folder)
        figures.pop("per_image", None)
        out[key] = {**settings_record(params), **figures}
        err = figures["area_error_px"]
        print(f"independent test {params.outline:8s} hit {figures['hit_rate']:.1%} Dice {figures['dice_on_hits']:.3f} "
              f"median |err| {err['median_abs_relative']:.1%} signed {err['mean_signed_relative']:+.1%} "
              f"(95 % CI {err['mean_signed_relative_95ci']}) vessels {figures['vessel_fp']}/{figures['reported_nerves']}")
    meta_file = metadata_path(model)
    meta = json.loads(meta_file.read_text())
    meta["independent_test"] = out
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    return out


def format_row(kind: str, s: dict[str, Any]) -> str:
    def f(v: Any, p: str = "{:.3f}") -> str:
        return "n/a" if v is None else p.format(v)

    return (
        f"{kind:10s} hit {f(s['hit_rate'], '{:.1%}'):>6s}  image-hit {f(s['image_hit_rate'], '{:.1%}'):>6s}  "
        f"Dice(hits) {f(s['dice_on_hits'])}  nerve Dice {f(s['nerve_dice'])}  "
        f"|area err| med {f(s['area_error_px']['median_abs'], '{:.0f}')} px "
        f"({f(s['area_error_px']['median_abs_relative'], '{:.1%}')})  "
        f"precision {f(s['precision'], '{:.1%}')}  vessel FP {s['vessel_fp']}/{s['reported_nerves']} "
        f"({f(s['vessel_fp_rate'], '{:.1%}')})  {f(s['ms_per_frame'], '{:.1f}')} ms/frame"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenters", nargs="+", choices=list(KIND_KEYS), default=list(KIND_KEYS))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--all", action="store_true", help="all 204 images instead of the validation split")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--repeats", type=int, default=1,
        help="time each image this many times and keep the fastest (a shared machine; with --record the "
        "segmenters take turns on each image); figures unchanged",
    )
    parser.add_argument(
        "--record", action="store_true",
        help="write the validation figures into the model's JSON and regenerate models/MODEL_CARD.md",
    )
    parser.add_argument(
        "--record-test", type=Path, default=None, metavar="DIR",
        help="score the shipped settings on the usgra-seg authors' held-out test set (dataset/test of a clone of "
        "github.com/tmkand/usgra-seg), write the figures into the model's JSON and regenerate the model card",
    )
    args = parser.parse_args(argv)
    if args.record or args.record_test:
        from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH
        from training import model_card

        if args.record:
            record(args.model, args.segmenters, repeats=args.repeats)
        if args.record_test:
            record_independent_test(args.model, args.record_test)
        print(model_card.write(Path(args.model or DEFAULT_MODEL_PATH)))
        return 0
    names = all_names() if args.all else validation_names(args.model)
    report = {}
    for kind in args.segmenters:
        segmenter, scale = make(kind, args.model)
        report[kind] = evaluate(segmenter, names, mm_per_px=scale, repeats=args.repeats)
        if getattr(segmenter, "settings", None) is not None and kind.startswith("learned"):
            report[kind].update(settings_record(segmenter.settings))
        print(format_row(kind, report[kind]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
