"""Choose the outline refinement of the learned nerve segmenter on the training split and the phantoms.

For each candidate (nerve-margin level × rim gate) the learned segmenter with
``outline: refined`` and the confidence floor is scored on the *training*
images of usgra-seg-train (the fixed validation split is never looked at
here) and on the ``sample_data/`` nerve phantoms (exact truth). Rule: among
the candidates whose phantom CSA median error is at most
``--max-phantom-error``, whose worst phantom frame is within 12 % (the
tolerance of ``tests/test_nerve.py``) and whose training signed mean area
error lies within ±5 %, the one with the smallest training median absolute
area error; candidates within 0.5 points of it are tied and the one with the
smallest absolute training signed mean wins.

With ``--fold-models`` the training figures are out-of-fold: each training
image is segmented by the cross-validation network that did not see it
(``training/train_nerve_segmenter.py --fold K/N``; the held-out names are read
from each network's JSON), so the chosen level does not reflect how well a
network fits its own training images. The phantoms are scored with
``--model``, the network that would ship. Fold networks carry no confidence
map: their floor applies to the raw score.

Usage::

    .venv/bin/python -m training.fit_nerve_outline [--model M.onnx] [--fold-models F0.onnx F1.onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter  # noqa: E402
from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH, NerveNet, metadata_path  # noqa: E402
from training.data import split_names  # noqa: E402
from training.evaluate_nerve import FlooredSegmenter, all_names, evaluate_out_of_fold, sample_data_figures  # noqa: E402

logger = logging.getLogger("fit_nerve_outline")

LEVELS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Rim gates: (min_prominence, min_rim_share), or None for the level alone.
RIM_GATES: tuple[tuple[float, float] | None, ...] = (None, (3.0, 0.6), (4.0, 0.6))


class CachedNerveNet(NerveNet):
    """A :class:`NerveNet` that runs the network once per distinct input (the candidates share it)."""

    def __init__(self, path: Path, runtime: str | None = None) -> None:
        super().__init__(path, runtime)
        self._cache: dict[bytes, Any] = {}

    def probabilities(self, gray: Any) -> Any:
        key = hashlib.sha1(gray.tobytes() + repr((gray.shape, str(gray.dtype))).encode()).digest()
        if key not in self._cache:
            self._cache[key] = super().probabilities(gray)
        return self._cache[key]


def held_out_names(net: NerveNet) -> list[str]:
    """The training names a cross-validation network did not see (from its JSON)."""
    fold = json.loads(metadata_path(net.path).read_text()).get("cross_validation_fold")
    if not fold:
        raise SystemExit(f"{net.path} is not a cross-validation network (no cross_validation_fold in its JSON)")
    return list(fold["held_out"])


def candidates() -> list[LearnedNerveParameters]:
    out = [LearnedNerveParameters(outline="network")]
    for level in LEVELS:
        for gate in RIM_GATES:
            if gate is None:
                out.append(LearnedNerveParameters(outline="refined", outline_level=level, outline_rim=False))
            else:
                out.append(
                    LearnedNerveParameters(
                        outline="refined",
                        outline_level=level,
                        outline_rim=True,
                        outline_min_prominence=gate[0],
                        outline_min_rim_share=gate[1],
                    )
                )
    return out


def score(params: LearnedNerveParameters, net: NerveNet, parts: list[tuple[NerveNet, list[str]]]) -> dict[str, Any]:
    """Training figures over ``parts`` ((network, names) pairs) and phantom figures with ``net``."""
    real = evaluate_out_of_fold(
        [(FlooredSegmenter(LearnedNerveSegmenter(n, params), params.min_confidence), names) for n, names in parts]
    )
    seg = LearnedNerveSegmenter(net, params)
    phantom = sample_data_figures(seg)
    worst = _worst_phantom_error(seg)
    area = real["area_error_px"]
    return {
        "settings": {k: v for k, v in params.as_dict().items() if k.startswith("outline")},
        "train": {
            "hit_rate": real["hit_rate"],
            "dice_on_hits": real["dice_on_hits"],
            "median_abs_relative": area["median_abs_relative"],
            "mean_signed_relative": area["mean_signed_relative"],
        },
        "phantom": {
            "csa_median_abs_relative_error": phantom["csa_median_abs_relative_error"],
            "csa_mean_signed_relative_error": phantom["csa_mean_signed_relative_error"],
            "dice_mean": phantom["dice_mean"],
            "csa_worst_abs_relative_error": worst,
        },
    }


def _worst_phantom_error(seg: LearnedNerveSegmenter) -> float:
    """Largest absolute relative CSA error over the sample_data nerve frames (1.0 when one is missed)."""
    from pipeline.analysis import analyze_image
    from pipeline.loading import load_ultrasound
    from pipeline.protocols import Protocol
    from pipeline.settings import default_analyzer

    shipped = default_analyzer()
    worst = 0.0
    for path in sorted((REPO / "sample_data").glob("*nerve*.dcm")):
        truth = json.loads(path.with_suffix(".json").read_text())["frames"]
        result = analyze_image(
            load_ultrasound(path), rules=shipped.rules, protocol=Protocol.NERVE, segmenter=seg,
            boundary_finder=shipped.boundary_finder,
        )
        for frame, expected in zip(result.frames, truth):
            csa = frame.nerve.cross_sectional_area_mm2 if frame.nerve is not None else None
            worst = max(worst, 1.0 if csa is None else abs(csa / expected["csa_mm2"] - 1.0))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-phantom-error", type=float, default=0.045)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH, help="the network that would ship")
    parser.add_argument(
        "--fold-models", type=Path, nargs="*", default=None,
        help="cross-validation networks whose held-out folds cover the training split (out-of-fold figures)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train, _ = split_names(all_names())
    net = CachedNerveNet(args.model)
    if args.fold_models:
        parts = [(n, held_out_names(n)) for n in (CachedNerveNet(path) for path in args.fold_models)]
        covered = sorted(name for _, names in parts for name in names)
        if covered != sorted(train):
            raise SystemExit("the held-out folds do not cover the training split exactly once")
    else:
        parts = [(net, train)]
    rows = []
    for params in candidates():
        row = score(params, net, parts)
        rows.append(row)
        t, ph = row["train"], row["phantom"]
        logger.info(
            "%s  train: median |err| %.1f %%, signed %+.1f %%, Dice %.3f  phantoms: median %.1f %%, signed %+.1f %%",
            row["settings"], 100 * t["median_abs_relative"], 100 * t["mean_signed_relative"], t["dice_on_hits"],
            100 * ph["csa_median_abs_relative_error"], 100 * ph["csa_mean_signed_relative_error"],
        )
    eligible = [
        r for r in rows
        if r["phantom"]["csa_median_abs_relative_error"] <= args.max_phantom_error
        and r["phantom"]["csa_worst_abs_relative_error"] <= 0.12
        and abs(r["train"]["mean_signed_relative"]) <= 0.05
    ]
    best = None
    if eligible:
        lowest = min(r["train"]["median_abs_relative"] for r in eligible)
        tied = [r for r in eligible if r["train"]["median_abs_relative"] <= lowest + 0.005]
        best = min(tied, key=lambda r: abs(r["train"]["mean_signed_relative"]))
    logger.info("chosen: %s", best["settings"] if best else "none eligible")
    if args.json:
        source = {
            "model": str(args.model),
            "training_figures": (
                f"out-of-fold ({len(parts)} cross-validation networks: {', '.join(str(n.path) for n, _ in parts)})"
                if args.fold_models else "in-sample (the model was trained on these images)"
            ),
        }
        args.json.write_text(json.dumps({**source, "candidates": rows, "chosen": best}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
