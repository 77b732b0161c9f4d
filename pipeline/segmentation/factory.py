"""Choose the nerve segmenter from configuration (``configs/segmentation.yaml``).

``segmenter``:

- ``classical``: :class:`~pipeline.segmentation.classical_nerve.ClassicalNerveSegmenter`;
- ``learned``: :class:`~pipeline.segmentation.learned_nerve.LearnedNerveSegmenter`
  (the network's nerve regions, run through OpenCV DNN);
- ``auto``: :class:`~pipeline.segmentation.auto_nerve.AutoNerveSegmenter`
  (learned proposals, border by the classical rim tracer per CONTRACT.md §4).

When ``learned`` or ``auto`` is asked for and the model file is missing or
unreadable, the classical segmenter is used instead: a warning is logged and
the segmenter carries a ``fallback_note`` that the SR's Algorithm
Identification records. Nothing else changes.

Environment overrides: ``MSKUS_SEGMENTATION_CONFIG`` (another YAML file),
``MSKUS_NERVE_SEGMENTER`` (the kind), ``MSKUS_NERVE_MODEL`` (the ONNX file).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pipeline.errors import UsageError
from pipeline.resources import shipped_config, shipped_model
from pipeline.segmentation.base import NerveSegmenter
from pipeline.segmentation.classical_nerve import ClassicalNerveParameters, ClassicalNerveSegmenter

__all__ = [
    "DEFAULT_SEGMENTATION_CONFIG",
    "KINDS",
    "BoundarySpec",
    "PinnedModelSpec",
    "ClassicalFallbackSegmenter",
    "ModelMismatchError",
    "SegmentationConfig",
    "SegmenterSpec",
    "MuscleBoundaryConfig",
    "load_muscle_boundary_config",
    "make_boundary_finder",
    "load_segmentation_config",
    "make_segmenter",
]

logger = logging.getLogger(__name__)

DEFAULT_SEGMENTATION_CONFIG = shipped_config("segmentation.yaml")
KINDS = ("classical", "learned", "auto")
ENV_CONFIG = "MSKUS_SEGMENTATION_CONFIG"
ENV_KIND = "MSKUS_NERVE_SEGMENTER"
ENV_MODEL = "MSKUS_NERVE_MODEL"


class ClassicalFallbackSegmenter(ClassicalNerveSegmenter):
    """The classical segmenter standing in for a learned one whose model is unavailable.

    Attributes
    ----------
    requested : str
        The kind that was configured (``learned`` or ``auto``).
    reason : str
        Why the model could not be used.
    fallback_note : str
        Why the classical segmenter is used; written into the SR.
    """

    def __init__(self, requested: str, reason: str, parameters: ClassicalNerveParameters | None = None) -> None:
        super().__init__(parameters)
        self.requested = requested
        self.reason = reason
        self.fallback_note = f"{requested} segmenter unavailable ({reason}): classical segmenter used"


def _default_model_path() -> Path:
    from pipeline.segmentation.nerve_model import DEFAULT_MODEL_PATH

    return DEFAULT_MODEL_PATH


@dataclass(frozen=True)
class SegmentationConfig:
    """Which nerve segmenter to use and its settings.

    Attributes
    ----------
    segmenter : str
        ``classical``, ``learned`` or ``auto``.
    model : Path
        The ONNX model (see :func:`resolve_model_path`).
    learned, auto : dict
        Overrides of :class:`LearnedNerveParameters` / :class:`AutoNerveParameters` fields.
    source : str
        Where the configuration came from.
    """

    segmenter: str = "learned"
    model: Path = field(default_factory=_default_model_path)
    learned: dict[str, Any] = field(default_factory=dict)
    auto: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.segmenter not in KINDS:
            raise ValueError(f"unknown nerve segmenter {self.segmenter!r} (choose one of {', '.join(KINDS)})")


def resolve_model_path(path: str | os.PathLike[str], *, relative_to: Path | None = None) -> Path:
    """Where a configured model file is.

    A bare file name (``nerve_unet.onnx``) is a shipped model
    (:func:`pipeline.resources.shipped_model`); any other relative path is
    relative to ``relative_to`` (the configuration file's folder; the working
    directory when ``None``).
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    if len(p.parts) == 1:
        return shipped_model(p.name)
    return (relative_to or Path.cwd()) / p


def _model_reference(path: Path) -> str:
    """How a spec names a model so that another machine finds its own copy: a shipped model by its name."""
    try:
        if path.resolve() == shipped_model(path.name).resolve():
            return path.name
    except ValueError:
        pass
    return str(path.resolve())


SECTIONS = ("nerve", "muscle")


def _config_section(path: str | os.PathLike[str] | None, section: str) -> tuple[Path, dict[str, Any]]:
    """(file, mapping) of one section of the segmentation YAML (``{}`` when absent).

    A missing default file gives the built-in defaults; a missing file named
    explicitly (argument or ``MSKUS_SEGMENTATION_CONFIG``) is an error. A file
    without section keys is the nerve section (the format before ``muscle``).
    """
    from pipeline.yamlfile import read_yaml_mapping

    explicit = path is not None or bool(os.environ.get(ENV_CONFIG))
    cfg_path = Path(path if path is not None else os.environ.get(ENV_CONFIG) or DEFAULT_SEGMENTATION_CONFIG).expanduser()
    if not cfg_path.is_file():
        if explicit:
            raise UsageError(f"segmentation config not found: {cfg_path}")
        return cfg_path, {}
    loaded = read_yaml_mapping(cfg_path, what="segmentation config")
    if not set(loaded) & set(SECTIONS):
        loaded = {"nerve": loaded}
    unknown = set(loaded) - set(SECTIONS)
    if unknown:
        raise UsageError(f"{cfg_path}: unknown sections {', '.join(sorted(unknown))} (expected {', '.join(SECTIONS)})")
    data = loaded.get(section) or {}
    if not isinstance(data, dict):
        raise UsageError(f"{cfg_path}: '{section}' must be a mapping")
    return cfg_path, data


def load_segmentation_config(path: str | os.PathLike[str] | None = None) -> SegmentationConfig:
    """Read the segmentation YAML (default ``configs/segmentation.yaml``) plus environment overrides.

    A missing default file gives the built-in defaults; a missing file named
    explicitly is an error.
    """
    cfg_path, data = _config_section(path, "nerve")
    unknown = set(data) - {"segmenter", "model", "learned", "auto"}
    if unknown:
        raise UsageError(f"{cfg_path}: nerve: unknown keys {', '.join(sorted(unknown))}")
    kind = str(os.environ.get(ENV_KIND) or data.get("segmenter", "learned")).strip().lower()
    if os.environ.get(ENV_MODEL):
        model = resolve_model_path(os.environ[ENV_MODEL])
    elif data.get("model"):
        model = resolve_model_path(str(data["model"]), relative_to=cfg_path.parent)
    else:
        model = _default_model_path()
    return SegmentationConfig(
        segmenter=kind,
        model=model,
        learned=dict(data.get("learned") or {}),
        auto=dict(data.get("auto") or {}),
        source=str(cfg_path) if cfg_path.is_file() else "built-in defaults",
    )


def _display(path: Path) -> str:
    """A shipped model by its name, any other by its path."""
    return _model_reference(path)


def _parameters(cls: type, overrides: dict[str, Any], what: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {what} settings: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**values)


def make_segmenter(
    kind: str | None = None,
    *,
    config: SegmentationConfig | None = None,
    model: str | os.PathLike[str] | None = None,
) -> NerveSegmenter:
    """Build the configured segmenter (``kind`` and ``model`` override the configuration).

    ``learned``/``auto`` without a usable model file give a
    :class:`ClassicalFallbackSegmenter` and a logged warning.
    """
    cfg = config or load_segmentation_config()
    kind = (kind or cfg.segmenter).strip().lower()
    if kind not in KINDS:
        raise ValueError(f"unknown nerve segmenter {kind!r} (choose one of {', '.join(KINDS)})")
    if kind == "classical":
        return ClassicalNerveSegmenter()
    from pipeline.segmentation.auto_nerve import AutoNerveParameters, AutoNerveSegmenter
    from pipeline.segmentation.learned_nerve import LearnedNerveParameters, LearnedNerveSegmenter
    from pipeline.segmentation.nerve_model import NerveNet

    learned_params = _parameters(LearnedNerveParameters, cfg.learned, "learned")
    auto_params = _parameters(AutoNerveParameters, cfg.auto, "auto")
    model_path = resolve_model_path(model) if model is not None else Path(cfg.model)
    try:
        net = NerveNet(model_path)
    except FileNotFoundError:
        reason = f"model file not found: {_display(model_path)}"
    except ValueError as exc:
        reason = str(exc)
    else:
        learned = LearnedNerveSegmenter(net, learned_params)
        if kind == "learned":
            return learned
        return AutoNerveSegmenter(learned, auto_params)
    logger.warning("nerve segmenter %r: %s; using the classical segmenter", kind, reason)
    return ClassicalFallbackSegmenter(kind, reason)


class ModelMismatchError(RuntimeError):
    """This process's model file is not the one a run was set up with."""


@dataclass(frozen=True)
class PinnedModelSpec:
    """A model-based choice that travels to another process or machine, its model pinned by SHA-256.

    What :class:`SegmenterSpec` (nerve) and :class:`BoundarySpec` (muscle)
    share; each builds its own kind of object.

    Attributes
    ----------
    kind : str
        ``classical`` or a model-based kind.
    model : str
        The ONNX file: a shipped model by its file name, so that a worker
        finds its own copy; any other by its absolute path ('' for classical).
    model_sha256 : str
        SHA-256 of the model file where the run was set up; '' when there
        was no usable model there (then every worker uses the classical
        fallback too, with the same note).
    parameters : str
        Settings overrides as canonical JSON.
    unavailable : str
        Why the model could not be used where the run was set up ('' when it could).
    """

    kind: str = "classical"
    model: str = ""
    model_sha256: str = ""
    parameters: str = "{}"
    unavailable: str = ""

    #: How logs and manifests name the classical method (also the stand-in for an unusable model).
    CLASSICAL: ClassVar[str] = "classical"

    @property
    def key(self) -> str:
        """What of the choice changes results (for run fingerprints)."""
        return json.dumps(
            {"kind": self.kind, "model_sha256": self.model_sha256, "parameters": self.parameters},
            sort_keys=True,
        )

    def describe(self) -> str:
        """One line for logs and manifests."""
        if self.kind == "classical":
            return self.CLASSICAL
        if self.unavailable:
            return f"{self.kind} unavailable ({self.unavailable}): {self.CLASSICAL} used"
        return f"{self.kind} {self.model} sha256:{self.model_sha256[:12]}"


@dataclass(frozen=True)
class SegmenterSpec(PinnedModelSpec):
    """A nerve segmenter choice that travels to another process or machine (``mskus batch`` workers).

    Build it where the run is set up (:meth:`from_config`); every worker then
    builds the same segmenter with :meth:`build`, whatever its own
    ``configs/segmentation.yaml`` or environment says. ``kind`` is
    ``classical``, ``learned`` or ``auto``; ``parameters`` hold the
    ``learned`` and ``auto`` overrides (see :class:`PinnedModelSpec`).
    """

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown nerve segmenter {self.kind!r} (choose one of {', '.join(KINDS)})")

    @classmethod
    def from_config(cls, config: SegmentationConfig | None = None) -> SegmenterSpec:
        """The spec of ``config`` (default: the configured one, environment overrides included)."""
        cfg = config or load_segmentation_config()
        if cfg.segmenter == "classical":
            return cls()
        path = Path(cfg.model)
        parameters = json.dumps({"learned": cfg.learned, "auto": cfg.auto}, sort_keys=True)
        probe = make_segmenter(config=cfg)
        if isinstance(probe, ClassicalFallbackSegmenter):
            return cls(cfg.segmenter, _display(path), "", parameters, probe.reason)
        return cls(cfg.segmenter, _display(path), probe.net.sha256, parameters)  # type: ignore[attr-defined]

    def build(self) -> NerveSegmenter:
        """The segmenter this spec describes.

        Raises
        ------
        ModelMismatchError
            The model file here is missing or differs from the one the spec was made with.
        """
        if self.kind == "classical":
            return ClassicalNerveSegmenter()
        if not self.model_sha256:
            return ClassicalFallbackSegmenter(self.kind, self.unavailable or "model unavailable")
        data = json.loads(self.parameters)
        cfg = SegmentationConfig(
            self.kind, resolve_model_path(self.model), data.get("learned", {}), data.get("auto", {}), source="run settings"
        )
        segmenter = make_segmenter(config=cfg)
        if isinstance(segmenter, ClassicalFallbackSegmenter):
            raise ModelMismatchError(f"model {self.model} not usable here: {segmenter.reason}")
        local = segmenter.net.sha256  # type: ignore[attr-defined]
        if local != self.model_sha256:
            raise ModelMismatchError(
                f"model {self.model} here has SHA-256 {local[:12]}, the run was set up with {self.model_sha256[:12]}"
            )
        return segmenter


# --------------------------------------------------------------------------------------
# Muscle boundaries (configs/segmentation.yaml, key ``muscle``)
# --------------------------------------------------------------------------------------

MUSCLE_KINDS = ("learned", "classical")
ENV_MUSCLE_KIND = "MSKUS_MUSCLE_BOUNDARIES"
ENV_MUSCLE_MODEL = "MSKUS_APONEUROSIS_MODEL"


def _default_aponeurosis_model_path() -> Path:
    from pipeline.segmentation.aponeurosis import DEFAULT_APONEUROSIS_MODEL_PATH

    return DEFAULT_APONEUROSIS_MODEL_PATH


@dataclass(frozen=True)
class MuscleBoundaryConfig:
    """How the muscle's boundary bands are proposed.

    Attributes
    ----------
    boundaries : str
        ``learned`` (the aponeurosis network proposes the bands, the edge
        tracer places the inner edges) or ``classical`` (band search alone).
    model : Path
        The aponeurosis ONNX model.
    learned : dict
        Overrides of :class:`~pipeline.segmentation.aponeurosis.AponeurosisParameters` fields.
    source : str
        Where the configuration came from.
    """

    boundaries: str = "learned"
    model: Path = field(default_factory=_default_aponeurosis_model_path)
    learned: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        if self.boundaries not in MUSCLE_KINDS:
            raise ValueError(
                f"unknown muscle boundaries {self.boundaries!r} (choose one of {', '.join(MUSCLE_KINDS)})"
            )


def load_muscle_boundary_config(path: str | os.PathLike[str] | None = None) -> MuscleBoundaryConfig:
    """The ``muscle`` section of the segmentation YAML plus environment overrides."""
    cfg_path, data = _config_section(path, "muscle")
    unknown = set(data) - {"boundaries", "model", "learned"}
    if unknown:
        raise UsageError(f"{cfg_path}: muscle: unknown keys {', '.join(sorted(unknown))}")
    kind = str(os.environ.get(ENV_MUSCLE_KIND) or data.get("boundaries", "learned")).strip().lower()
    if os.environ.get(ENV_MUSCLE_MODEL):
        model = resolve_model_path(os.environ[ENV_MUSCLE_MODEL])
    elif data.get("model"):
        model = resolve_model_path(str(data["model"]), relative_to=cfg_path.parent)
    else:
        model = _default_aponeurosis_model_path()
    return MuscleBoundaryConfig(
        boundaries=kind,
        model=model,
        learned=dict(data.get("learned") or {}),
        source=str(cfg_path) if cfg_path.is_file() else "built-in defaults",
    )


def make_boundary_finder(
    kind: str | None = None,
    *,
    config: MuscleBoundaryConfig | None = None,
    model: str | os.PathLike[str] | None = None,
) -> Any:
    """The configured muscle boundary finder.

    ``learned`` without a usable model file gives the classical band search
    with a ``fallback_note`` (written into the SR) and a logged warning.
    """
    from pipeline.segmentation.muscle_bands import ClassicalBandSearch

    cfg = config or load_muscle_boundary_config()
    kind = (kind or cfg.boundaries).strip().lower()
    if kind not in MUSCLE_KINDS:
        raise ValueError(f"unknown muscle boundaries {kind!r} (choose one of {', '.join(MUSCLE_KINDS)})")
    if kind == "classical":
        return ClassicalBandSearch()
    from pipeline.segmentation.aponeurosis import AponeurosisNet, AponeurosisParameters, LearnedAponeurosisFinder

    parameters = _parameters(AponeurosisParameters, cfg.learned, "muscle learned")
    model_path = resolve_model_path(model) if model is not None else Path(cfg.model)
    try:
        return LearnedAponeurosisFinder(AponeurosisNet(model_path), parameters)
    except FileNotFoundError:
        reason = f"aponeurosis model file not found: {_display(model_path)}"
    except ValueError as exc:
        reason = str(exc)
    logger.warning("muscle boundaries 'learned': %s; using the classical band search", reason)
    return ClassicalBandSearch(f"learned finder unavailable: {reason}")


@dataclass(frozen=True)
class BoundarySpec(PinnedModelSpec):
    """A muscle boundary finder choice that travels to another process or machine.

    Like :class:`SegmenterSpec`: made where the run is set up
    (:meth:`from_config`), built the same everywhere (:meth:`build`), the
    model pinned by its SHA-256. ``kind`` is ``learned`` or ``classical``;
    ``parameters`` hold the ``learned`` overrides.
    """

    CLASSICAL: ClassVar[str] = "classical band search"

    def __post_init__(self) -> None:
        if self.kind not in MUSCLE_KINDS:
            raise ValueError(f"unknown muscle boundaries {self.kind!r} (choose one of {', '.join(MUSCLE_KINDS)})")

    @classmethod
    def from_config(cls, config: MuscleBoundaryConfig | None = None) -> BoundarySpec:
        """The spec of ``config`` (default: the configured one, environment overrides included)."""
        from pipeline.segmentation.muscle_bands import ClassicalBandSearch

        cfg = config or load_muscle_boundary_config()
        if cfg.boundaries == "classical":
            return cls()
        parameters = json.dumps(cfg.learned, sort_keys=True)
        probe = make_boundary_finder(config=cfg)
        if isinstance(probe, ClassicalBandSearch):
            reason = probe.fallback_note.removeprefix("learned finder unavailable: ")
            return cls("learned", _display(Path(cfg.model)), "", parameters, reason)
        return cls("learned", _display(Path(cfg.model)), probe.net.sha256, parameters)

    def build(self) -> Any:
        """The boundary finder this spec describes.

        Raises
        ------
        ModelMismatchError
            The model file here is missing or differs from the one the spec was made with.
        """
        from pipeline.segmentation.muscle_bands import ClassicalBandSearch

        if self.kind == "classical":
            return ClassicalBandSearch()
        if not self.model_sha256:
            return ClassicalBandSearch(f"learned finder unavailable: {self.unavailable or 'model unavailable'}")
        cfg = MuscleBoundaryConfig("learned", resolve_model_path(self.model), json.loads(self.parameters), source="run settings")
        finder = make_boundary_finder(config=cfg)
        if isinstance(finder, ClassicalBandSearch):
            raise ModelMismatchError(f"aponeurosis model {self.model} not usable here: {finder.fallback_note}")
        local = finder.net.sha256
        if local != self.model_sha256:
            raise ModelMismatchError(
                f"aponeurosis model {self.model} here has SHA-256 {local[:12]}, the run was set up with {self.model_sha256[:12]}"
            )
        return finder
