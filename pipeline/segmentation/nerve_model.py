"""The nerve network's model file: loading it (onnxruntime, else OpenCV DNN), its metadata and hash.

A compact U-Net (``models/nerve_unet.onnx``, trained by
``training/train_nerve_segmenter.py``; see ``models/MODEL_CARD.md``) labels
every pixel of the tissue region as background, nerve or blood vessel
(:data:`CLASSES`). The model runs through onnxruntime (CPU, one thread per
session) where it is installed and loads the file, and through OpenCV's DNN
module otherwise (the stated fallback: same pre- and postprocessing, outputs
equal to about 1e-5); the runtime used is named in the SR parameters
(``model_runtime``). ``MSKUS_MODEL_RUNTIME`` (``auto``, ``onnxruntime`` or
``opencv``) or the ``runtime`` argument chooses it. The JSON next to the
model (:func:`metadata_path`) holds its input size, version, validation
figures and confidence calibration; the file's SHA-256 names the model in the SR.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.resources import shipped_model
from pipeline.segmentation.nerve_preprocess import letterbox, normalize_input

__all__ = [
    "CLASSES",
    "DEFAULT_MODEL_PATH",
    "RUNTIMES",
    "RUNTIME_ENV",
    "NerveNet",
    "file_sha256",
    "metadata_path",
    "requested_runtime",
]

logger = logging.getLogger(__name__)

#: The shipped model (repository ``models/`` folder).
DEFAULT_MODEL_PATH = shipped_model("nerve_unet.onnx")

#: Output channels of the network, in order.
CLASSES = ("background", "nerve", "vessel")
NERVE, VESSEL = 1, 2

#: Environment variable that chooses the model runtime (one of :data:`RUNTIMES`).
RUNTIME_ENV = "MSKUS_MODEL_RUNTIME"
#: ``auto``: onnxruntime where it imports and loads the model, else OpenCV DNN.
RUNTIMES = ("auto", "onnxruntime", "opencv")


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


def requested_runtime(runtime: str | None = None) -> str:
    """The model runtime asked for: ``runtime``, else ``$MSKUS_MODEL_RUNTIME``, else ``auto``.

    Parameters
    ----------
    runtime : str, optional
        One of :data:`RUNTIMES` (``opencv-dnn`` is accepted for ``opencv``).

    Returns
    -------
    str
        One of :data:`RUNTIMES`. An unknown ``$MSKUS_MODEL_RUNTIME`` is logged
        and read as ``auto`` (the runtime used is named in the SR either way).

    Raises
    ------
    ValueError
        ``runtime`` is given and is not one of :data:`RUNTIMES`.
    """
    aliases = {"opencv-dnn": "opencv", "cv2": "opencv", "ort": "onnxruntime"}
    if runtime is not None:
        value = aliases.get(runtime.strip().lower(), runtime.strip().lower())
        if value not in RUNTIMES:
            raise ValueError(f"model runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        return value
    env = os.environ.get(RUNTIME_ENV, "").strip().lower()
    value = aliases.get(env, env) or "auto"
    if value not in RUNTIMES:
        logger.warning("%s=%r is not one of %s: using auto", RUNTIME_ENV, env, ", ".join(RUNTIMES))
        return "auto"
    return value


class _Backend(Protocol):
    """A loaded network: ``run(blob)`` gives the raw output; ``name`` is the runtime and its version."""

    name: str

    def run(self, blob: np.ndarray) -> np.ndarray: ...


class _OpenCVBackend:
    """OpenCV's DNN module, its own CPU backend (a ``cv2.dnn.Net`` is not thread-safe: one call at a time)."""

    def __init__(self, path: Path, what: str) -> None:
        try:
            self._net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise ValueError(f"OpenCV cannot read the {what} model {path}: {exc}") from None
        self._lock = threading.Lock()
        self.name = f"opencv-dnn {cv2.__version__}"

    def run(self, blob: np.ndarray) -> np.ndarray:
        with self._lock:
            self._net.setInput(blob)
            return np.asarray(self._net.forward())


class _OnnxRuntimeBackend:
    """An onnxruntime session on the CPU with one intra- and one inter-op thread (thread-safe ``run``).

    Raises
    ------
    ImportError
        onnxruntime is not installed (or cannot be imported).
    Exception
        Whatever onnxruntime raises when it cannot load the model.
    """

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # the batch runs one study per core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.name = f"onnxruntime {ort.__version__} CPUExecutionProvider"

    def run(self, blob: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run([self._output], {self._input: blob})[0])


class NerveNet:
    """The ONNX segmentation network, run through onnxruntime or, as the fallback, OpenCV DNN.

    Parameters
    ----------
    path : path to the ``.onnx`` file; its JSON metadata (input size,
        version, validation figures) is read from :func:`metadata_path`.
    runtime : {"auto", "onnxruntime", "opencv"}, optional
        ``auto`` (default; ``$MSKUS_MODEL_RUNTIME`` when not given): onnxruntime
        where it can be imported and loads the model, else OpenCV DNN (logged).
        ``onnxruntime`` or ``opencv``: that runtime only.

    Attributes
    ----------
    runtime : str
        The runtime in use and its version, e.g. ``"onnxruntime 1.32.0
        CPUExecutionProvider"`` or ``"opencv-dnn 4.12.0"`` (the SR's
        ``model_runtime`` parameter).

    Raises
    ------
    FileNotFoundError
        The model file does not exist.
    ValueError
        No runtime asked for can read it (``runtime="onnxruntime"`` without
        onnxruntime included), or ``runtime`` is not one of :data:`RUNTIMES`.
    """

    #: What the network finds, for messages.
    what = "nerve"

    def __init__(self, path: str | Path = DEFAULT_MODEL_PATH, runtime: str | None = None) -> None:
        self.path = Path(path)
        self.requested_runtime = requested_runtime(runtime)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.what} model not found: {self.path}")
        self.sha256 = file_sha256(self.path)
        meta_file = metadata_path(self.path)
        self.metadata: dict[str, Any] = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        self.input_size = int(self.metadata.get("input_size", 192))
        self.model_version = str(self.metadata.get("model_version", "unversioned"))
        self._backend = self._load()

    @property
    def runtime(self) -> str:
        """The runtime in use and its version (the SR's ``model_runtime``)."""
        return self._backend.name

    def _load(self) -> _Backend:
        if self.requested_runtime in ("auto", "onnxruntime"):
            try:
                return _OnnxRuntimeBackend(self.path)
            except ImportError as exc:
                if self.requested_runtime == "onnxruntime":
                    raise ValueError(f"onnxruntime is not available for the {self.what} model: {exc}") from None
                logger.info("onnxruntime is not available (%s): the %s model runs through OpenCV DNN", exc, self.what)
            except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
                if self.requested_runtime == "onnxruntime":
                    raise ValueError(f"onnxruntime cannot read the {self.what} model {self.path}: {exc}") from None
                logger.warning(
                    "onnxruntime cannot read the %s model %s (%s): falling back to OpenCV DNN", self.what, self.path, exc
                )
        return _OpenCVBackend(self.path, self.what)

    # Neither an onnxruntime session nor a cv2.dnn.Net pickles: worker processes reload the file.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_backend", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("requested_runtime", "auto")
        self._backend = self._load()

    @property
    def short_hash(self) -> str:
        """First 12 hex digits of the model file's SHA-256."""
        return self.sha256[:12]

    def logits(self, blob: np.ndarray) -> np.ndarray:
        """Raw network output ``(1, 3, S, S)`` for an input blob ``(1, 1, S, S)``."""
        return self._backend.run(np.ascontiguousarray(blob, dtype=np.float32))

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
        "model_runtime": net.runtime,
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
