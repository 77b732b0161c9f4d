"""Training data for the aponeurosis segmenter: DL_Track frames, the block split, augmentation.

Data: ``../shared/data/real/dl-track-apo-train`` (430 longitudinal B-mode
frames with aponeurosis masks; Apache-2.0, DL_Track, N. J. Cronin et al.).
Masks hold the aponeurosis bands (255): usually two (superficial, deep),
sometimes three (stacked muscles).

The split is by **blocks of consecutive frame numbers** (neighbouring numbers
are often frames of one clip): frame ``n`` lies in block ``(n - 1) // 24``;
blocks 2, 7, 12 and 17 are validation; frames within ``GUARD`` numbers of a
validation block are used for neither (a clip may straddle a block edge).
The split is written to ``training/aponeurosis_split.json`` and recorded next
to the model; it never changes.

Augmentation is the nerve model's (:func:`training.data.augment`): scale,
shift, rotation +-10 degrees, left-right flip, gain, contrast, gamma, TGC
ramp, speckle, noise, blur/sharpen. No up-down flip (depth is not symmetric).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from training.data import Example

REPO = Path(__file__).resolve().parents[1]
APO = REPO.parent / "shared" / "data" / "real" / "dl-track-apo-train"
SPLIT_FILE = REPO / "training" / "aponeurosis_split.json"

BLOCK = 24
VALIDATION_BLOCKS = (2, 7, 12, 17)
GUARD = 2


def frame_number(name: str) -> int:
    m = re.search(r"(\d+)", name)
    if not m:
        raise ValueError(f"no frame number in {name!r}")
    return int(m.group(1))


def all_names(folder: Path = APO) -> list[str]:
    return sorted(p.name for p in (folder / "images").glob("*.png") if (folder / "masks" / p.name).exists())


def split_names(names: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(train, validation) file names by blocks of consecutive frame numbers (see module docstring)."""
    names = sorted(names if names is not None else all_names())
    val_ranges = [(b * BLOCK + 1, (b + 1) * BLOCK) for b in VALIDATION_BLOCKS]
    train, val = [], []
    for name in names:
        n = frame_number(name)
        if any(lo <= n <= hi for lo, hi in val_ranges):
            val.append(name)
        elif not any(lo - GUARD <= n <= hi + GUARD for lo, hi in val_ranges):
            train.append(name)
    return train, val


def write_split(path: Path = SPLIT_FILE) -> dict:
    train, val = split_names()
    record = {
        "data": "../shared/data/real/dl-track-apo-train (DL_Track, Cronin et al., Apache-2.0)",
        "method": (
            f"frame n is in block (n - 1) // {BLOCK}; blocks {list(VALIDATION_BLOCKS)} are validation; "
            f"frames within {GUARD} numbers of a validation block are in neither part"
        ),
        "train": train,
        "validation": val,
    }
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def load_example(name: str, folder: Path = APO) -> tuple[np.ndarray, np.ndarray]:
    """Gray image (uint8) and band mask (bool) of one frame."""
    gray = cv2.imread(str(folder / "images" / name), cv2.IMREAD_GRAYSCALE)
    mask = cv2.imread(str(folder / "masks" / name), cv2.IMREAD_GRAYSCALE)
    if gray is None or mask is None:
        raise FileNotFoundError(folder / "images" / name)
    return gray, mask > 127


def load_examples(names: list[str], base: int, folder: Path = APO) -> list[Example]:
    """Examples pre-resized so the longer side is ``base`` pixels (labels 0/1; thin bands kept)."""
    out = []
    for name in names:
        gray, mask = load_example(name, folder)
        h, w = gray.shape
        s = base / max(h, w)
        size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
        img = cv2.resize(gray.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        lab = (cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.4).astype(np.uint8)
        out.append(Example(name, img, lab, synthetic=False))
    return out
