"""The checks a received instance passes before it is acknowledged, shared by the C-STORE handler and
the start-up reconciliation of the inbox (which must refuse what a crash left half-written)."""

from __future__ import annotations

import warnings
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset

from pipeline.loading import validate_dataset

__all__ = ["parse_completely", "read_complete_instance"]


def parse_completely(ds: Dataset) -> None:
    """Parse every top-level element of ``ds`` now, not later in a worker.

    Raises
    ------
    ValueError
        The bytes end inside an element (pydicom only warns about that).
    Exception
        Whatever pydicom raises for a malformed element.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in ds:
            pass
    truncated = [w for w in caught if "End of file" in str(w.message) or "truncat" in str(w.message).lower()]
    if truncated:
        raise ValueError(f"dataset is truncated: {truncated[0].message}")


def read_complete_instance(data: bytes) -> Dataset:
    """A stored Part 10 file's dataset, parsed completely and checked as a C-STORE is.

    Raises
    ------
    Exception
        The file is not whole DICOM (:func:`parse_completely`) or fails
        :func:`pipeline.loading.validate_dataset`.
    """
    ds = pydicom.dcmread(BytesIO(data))
    parse_completely(ds)
    validate_dataset(ds)
    return ds
