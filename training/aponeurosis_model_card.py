"""Write ``models/APONEUROSIS_MODEL_CARD.md`` from the model's JSON and the recorded benchmark figures.

Figures come from ``benchmarks/results/muscle_real_validation.json`` and
``muscle_real_train.json`` (``benchmarks/muscle_real.py``) and
``benchmarks/results/accuracy.json`` (``benchmarks/accuracy.py``: phantoms,
sample_data, calf sets); nothing is typed by hand.

Usage::

    .venv/bin/python -m training.aponeurosis_model_card
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "aponeurosis_unet.onnx"
RESULTS = REPO / "benchmarks" / "results"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else {}


def _confidence_auc(r: dict[str, Any]) -> str:
    """How well the reported confidence separates frames within 5 % from frames more than 10 % off (AUC)."""
    rows = [x for x in r.get("per_image", []) if x.get("rel_error") is not None and x.get("confidence") is not None]
    good = [x["confidence"] for x in rows if abs(x["rel_error"]) <= 0.05]
    bad = [x["confidence"] for x in rows if abs(x["rel_error"]) > 0.10]
    if not good or not bad:
        return "n/a"
    auc = sum((g > b) + 0.5 * (g == b) for g in good for b in bad) / (len(good) * len(bad))
    return f"{auc:.2f} ({len(good)} within 5 % vs {len(bad)} more than 10 % off)"


def _real_row(label: str, r: dict[str, Any]) -> str:
    if not r:
        return f"| {label} | (not run) | | | | | |"
    return (
        f"| {label} | {r['frames_with_reference']} | {_pct(r['within_5pct'])} | {_pct(r['gross_failures'])} "
        f"({r['refused']} refused) | {_pct(r['reported_off_15pct'])} | {_pct(r['median_abs_rel_error'])} | "
        f"{r['mean_signed_rel_error'] * 100:+.1f} % |"
    )


def render(meta: dict[str, Any]) -> str:
    tr = meta["training"]
    val, train, acc = _load("muscle_real_validation.json"), _load("muscle_real_train.json"), _load("accuracy.json")
    classical = _load("muscle_real_validation_classical.json")
    whole = _load("muscle_real_validation_whole_frame.json")
    split = json.loads((REPO / "training" / "aponeurosis_split.json").read_text())
    synthetic = []
    for key in ("sample_data", "pymust", "generated"):
        r = acc.get(key)
        if r and r.get("muscle_frames"):
            t = r["thickness_abs_error_mm"]
            measured = sum(1 for f in r.get("frames", []) if f.get("kind") == "muscle" and f.get("thickness_mm") is not None)
            synthetic.append(
                f"| {key} | {r['muscle_frames']} | {measured} | {t['mean']:.3f} mm | {t['max']:.3f} mm | "
                f"{r['muscle_echogenicity_mae']:.2f} |"
            )
    calf = []
    for sub, r in acc.get("timtrack", {}).items():
        calf.append(
            f"| {sub} | {r['images']} | {_pct(r['inside_observer_range'])} | {_pct(r['observer_site_inside_range'])} | "
            f"{r['observer_site_mae_px']:.1f} px | {r['failed'] + r.get('observer_site_failed', 0)} |"
        )
    history = tr["history"]
    last = history[-1]
    refusals = ", ".join(f"{k} ({v})" for k, v in (val.get("refusal_reasons") or {}).items()) or "none"
    return f"""# Model card: `aponeurosis_unet.onnx` (learned aponeurosis finder {meta['model_version']})

| | |
|---|---|
| file | `models/aponeurosis_unet.onnx` (ONNX opset {meta['onnx_opset']}), SHA-256 `{meta['sha256']}` (SR: `sha256:{meta['sha256'][:12]}`) |
| architecture | {meta['architecture']}; {meta['parameters']:,} parameters |
| input | 1×1×{meta['input_size']}×{meta['input_size']}: {meta['input']} |
| output | {meta['output']}; classes {', '.join(meta['classes'])} |
| runtime | onnxruntime (CPU, one thread per session), else OpenCV DNN (`cv2.dnn.readNetFromONNX`) as the fallback; finder parameter `model_runtime` names it; no torch: `pipeline/segmentation/aponeurosis.py` |
| training code | `training/train_aponeurosis_segmenter.py` (seeded, checkpoints and resumes; `pip install -e '.[train]'`) |
| created | {meta['created']} |

## Intended use

Proposing the fascia / aponeurosis bands of longitudinal (long-axis) skeletal-muscle B-mode frames
inside mskus (`configs/segmentation.yaml`, `muscle: boundaries: learned`, the shipped default). The
network sees the whole frame, as in training; its bands (connected regions above probability 0.5,
at least a quarter of the tissue region wide) are ordered by depth. The shallowest band and the next
one at least 3 mm deeper bound the muscle measured (the first muscle under the subcutaneous tissue;
stacked muscles below are not measured). The classical band search's candidate on the same band
(centre within 1 mm, parallel within 3 degrees) is followed, and the classical edge tracer places the inner edges on the image
(sub-pixel; CONTRACT.md §4), so the network decides *which* bands and the image *where*. The frame is
refused with a reason when the network finds no band, when only one band is found and the band
below it is not a bone surface (the network was not taught bone), or when a band between the
network's two, parallel to one of them, is as strong as they are and the network half-marks it (which layer is the muscle is
then ambiguous: on the training frames such a deep boundary was never where the annotators put it).
The SR's Algorithm Identification carries `boundaries=learned aponeurosis_unet {meta['model_version']} sha256:{meta['sha256'][:12]}`;
without the model file the classical band search is used and the SR says so
(`boundaries=classical band search (learned finder unavailable: ...)`).
Not a medical device; measurements are for research and need review.

## Data

- DL_Track aponeurosis training frames, 430 of them in `../shared/data/real/dl-track-apo-train/`
  ({meta['data']}). Licence Apache-2.0 (`LICENSE` in the set); cite the DL_Track papers
  (N. J. Cronin et al., https://github.com/njcronin/DL_Track). Masks: 255 = aponeurosis band; usually two
  bands, sometimes three (stacked muscles). 512×512 to 1234×688 scanner screens with text and rulers.
- The calf sets (`timtrack-calf`) are a test set only; never trained on.

### Split (by blocks of consecutive frame numbers)

{split['method']}: {len(split['train'])} training frames, {len(split['validation'])} validation frames
(the list: `training/aponeurosis_split.json`; neighbouring frame numbers are often frames of one clip,
so the split is by blocks, with a guard band). The recipe was fixed before training; post-processing
was developed on the training part, the calf sets and the synthetic frames. The validation figures were
computed eight times (a provisional checkpoint, then the final model after each post-processing change;
the last change fixed two rule bugs seen on validation frames, checked on the training part first);
one change was taken back after it lowered them (accepting a short network band as the deep boundary:
validation 82.9 % within 5 %, 8.5 % gross failures), so the figures below are not fully unbiased.

## Training

- Augmentation: {tr['augmentation']}. No up-down flips (depth is not symmetric).
- Loss {tr['loss']}; {tr['optimizer']}; batch {tr['batch']}; {tr['epochs']} epochs; {tr['final_model']}.
- Seed {tr['seed']}; {tr['threads']} CPU thread, bfloat16 autocast {tr['bf16_autocast']}; torch {tr['torch']}.
- Training time {tr['train_seconds'] / 60:.0f} min on one core of a shared 2-core CPU; final loss
  {last['loss']:.3f}, band Dice at network resolution on the validation part {last.get('band_dice@S', float('nan')):.3f}.

## Thickness on real frames (against the mask gap)

`benchmarks/muscle_real.py`: thickness along the product's caliper against the gap between the mask's
first two bands along the same line, in pixels (no pixel size is known; burned-in annotations excluded;
tissue region estimated from the pixels, as the loader does for a frame without regions, or, second row,
the whole frame, as for a file whose ultrasound region covers the whole screen: the caliper then sits at
the centre of the screen).

| part | frames | within 5 % | gross failures (> 15 % off or none) | reported > 15 % off | median abs error | signed mean |
|---|---|---|---|---|---|---|
{_real_row('validation', val)}
{_real_row('validation, whole frame as the tissue region', whole)}
{_real_row('training', train)}

Targets of the issue (validation): ≥ 85 % within 5 %, gross failures ≤ 5 %, reported > 15 % off ≤ 2 %.
Refusals on the validation part: {refusals}. The classical band search alone on the same validation
frames (`muscle_real.py --classical`): {_pct(classical.get('within_5pct'))} within 5 %, {_pct(classical.get('gross_failures'))}
gross failures, {_pct(classical.get('reported_off_15pct'))} of the reported values > 15 % off.
The reported confidence separates right from wrong: AUC {_confidence_auc(val)} on the validation part,
{_confidence_auc(train)} on the training part; what it cannot see is refused instead (reasons above).
The traced edges sit about 2 % outside the annotators' band borders (signed mean above; the annotators
draw the bands a little thicker than the step in echo amplitude that CONTRACT.md §4 places the edge at).

## Phantoms and synthetic frames (exact truth; `benchmarks/accuracy.py`)

| set | muscle frames | measured | thickness MAE | max error | echogenicity MAE |
|---|---|---|---|---|---|
{chr(10).join(synthetic) or '| (not run) | | | | | |'}

## Calf sets (test set; three observers; `benchmarks/accuracy.py`)

Inside the observers' min–max range widened by 2 %, vertical gap, pixels; the observers measured
20 px in from the end where the fascicles' deep ends lie (TimTrack's site), measured here with the
product's thickness-site option (`px_from_left` / `px_from_right`).

| set | images | at the centre | at the observers' site | MAE at their site | failed |
|---|---|---|---|---|---|
{chr(10).join(calf) or '| (not run) | | | | | |'}

## Limits

- Lower-limb muscles from a few devices; other muscles, probes and presets only through augmentation.
- One band per boundary: a fascia split into two close lines may be proposed as one band.
- Bone is not a class: a muscle over bone is measured only when the classical search finds a bright
  band with an acoustic shadow below the network's single band.
- Annotators' conventions differ from CONTRACT.md §4's edge (see the signed mean); the validation
  figures are against one set of annotations.
"""


def write(model: Path = MODEL) -> Path:
    meta = json.loads(model.with_suffix(".json").read_text())
    out = model.parent / "APONEUROSIS_MODEL_CARD.md"
    out.write_text(render(meta))
    return out


if __name__ == "__main__":
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL))
