"""The nerve network's model file: loading it through OpenCV's DNN module, its metadata and hash.

A compact U-Net (``models/nerve_unet.onnx``, trained by
``training/train_nerve_segmenter.py``; see ``models/MODEL_CARD.md``) labels
every pixel of the tissue region as background, nerve or blood vessel
(:data:`CLASSES`). Only OpenCV and NumPy are needed at run time: no
deep-learning runtime. The JSON next to the model (:func:`metadata_path`)
holds its input size, version, validation figures and confidence
calibration; the file's SHA-256 names the model in the SR.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.resources import shipped_model
from pipeline.segmentation.nerve_preprocess import letterbox, normalize_input

__all__ = ["CLASSES", "DEFAULT_MODEL_PATH", "NerveNet", "file_sha256", "metadata_path"]

#: The shipped model (repository ``models/`` folder).
DEFAULT_MODEL_PATH = shipped_model("nerve_unet.onnx")

#: Output channels of the network, in order.
CLASSES = ("background", "nerve", "vessel")
NERVE, VESSEL = 1, 2


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def metadata_path(model_path: str | Path) -> Path:
    """The JSON written next to a model (``nerve_unet.onnx`` -> ``nerve_unet.json``)."""
    return Path(model_path).with_suffix(".json")


class NerveNet:
    """The ONNX segmentation network, loaded with :func:`cv2.dnn.readNetFromONNX`.

    Parameters
    ----------
    path : path to the ``.onnx`` file; its JSON metadata (input size,
        version, validation figures) is read from :func:`metadata_path`.

    Raises
    ------
    FileNotFoundError
        The model file does not exist.
    ValueError
        OpenCV cannot read it.
    """

    #: What the network finds, for messages.
    what = "nerve"

    def __init__(self, path: str | Path = DEFAULT_MODEL_PATH) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.what} model not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        meta_file = metadata_path(self.path)
        self.metadata: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.input_size = int(self.metadata.get("input_size", 192))
        self.model_version = str(self.metadata.get("model_version", "unversioned"))
        self._lock = threading.Lock()
        self._net = self._load()

    def _load(self) -> cv2.dnn.Net:
        try:
            net = cv2.dnn.readNetFromONNX(str(self.path))
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot read the {self.what} model {self.path}: {exc}") from None
        return net  # OpenCV's own CPU backend (the default)

    # cv2.dnn.Net does not pickle: worker processes reload the file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_net", None)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._net = self._load()

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of the model file's SHA-256."""
        return self.sha256[:12]

    def logits(self, blob: np.ndarray) -> np.ndarray:
        """Raw network output ``(1, 3, S, S)`` for an input blob ``(1, 1, S, S)``."""
        with self._lock:
            self._net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
            return np.asarray(self._net.forward())

    def probabilities(self, gray: np.ndarray) -> np.ndarray:
        """Class probabilities ``(3, h, w)`` (float32) for a gray crop of shape ``(h, w)``."""
        size = self.input_size
        square, box = letterbox(gray, size)
        blob = normalize_input(square, box.valid_mask())[None, None]
        logits = self.logits(blob)[0]
        logits = logits - logits.max(axis=0, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=0, keepdims=True)
        prob = prob[:, box.y0 : box.y0 + box.rows, box.x0 : box.x0 + box.cols]
        h, w = gray.shape[:2]
        # cv2.resize takes up to 4 channels as (rows, cols, channels).
        full = cv2.resize(np.ascontiguousarray(prob.transpose(1, 2, 0)), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(full.transpose(2, 0, 1))


def _model_parameters(net: NerveNet) -> dict[str, str | int]:
    return {
        "model": net.path.name,
        "model_version": net.model_version,
        "model_sha256": net.short_hash,
        "model_input_size": net.input_size,
        "model_runtime": f"opencv-dnn {cv2.__version__}",
    }


class _ParameterView:
    """``parameters.as_dict()`` for the SR: the model's identity plus the settings."""

    def __init__(self, *parts: dict[str, Any]) -> None:
        self._values: dict[str, Any] = {}
        for part in parts:
            self._values.update(part)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None
