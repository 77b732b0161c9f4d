"""The ``mskus`` command: the app shell above the libraries.

``mskus analyze``, ``sr``, ``serve``, ``status``, ``retry``, ``batch`` and
``review`` parse their options here and call the libraries below:
:mod:`pipeline` (analysis), :mod:`dicom_node` (storage node) and
:mod:`qa_review` (review page). Nothing below imports this package
(``tests/test_layering.py``), as pynetdicom keeps its ``apps`` apart from its core.
"""

from pipeline import __version__

__all__ = ["__version__"]
