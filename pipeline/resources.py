"""The configuration and models that ship with mskus, found as package data.

The repository's ``configs/`` and ``models/`` folders are installed as the
data packages ``mskus_configs`` and ``mskus_models`` (``pyproject.toml``), so
the same lookup works from a source checkout, an editable install and a
wheel installed anywhere; nothing is found through ``__file__``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["CONFIG_PACKAGE", "MODEL_PACKAGE", "shipped_config", "shipped_model"]

CONFIG_PACKAGE = "mskus_configs"
MODEL_PACKAGE = "mskus_models"


def _file(package: str, name: str) -> Path:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"not a plain file name: {name!r}")
    # Installed as plain folders (never zipped: the packages are not zip-safe), so the
    # traversable is a real path that OpenCV and open() can use.
    return Path(str(resources.files(package).joinpath(name)))


def shipped_config(name: str) -> Path:
    """Path of a shipped configuration file, e.g. ``shipped_config("protocols.yaml")``.

    Raises
    ------
    ValueError
        ``name`` is not a plain file name.
    """
    return _file(CONFIG_PACKAGE, name)


def shipped_model(name: str) -> Path:
    """Path of a shipped model file, e.g. ``shipped_model("nerve_unet.onnx")``.

    Raises
    ------
    ValueError
        ``name`` is not a plain file name.
    """
    return _file(MODEL_PACKAGE, name)
