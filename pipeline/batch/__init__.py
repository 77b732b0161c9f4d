"""Batch mode: a folder of ultrasound DICOM in, SRs and tidy tables out.

``mskus batch IN_DIR --out OUT_DIR`` (CONTRACT.md section 2). The pieces,
one idea per module:

- :mod:`~pipeline.batch.headers`: read headers only, refuse what needs no
  worker (not DICOM, not ultrasound, no protocol);
- :mod:`~pipeline.batch.plan`: group images into per-study tasks;
- :mod:`~pipeline.batch.study`: the per-study work (analysis, overlays, SR,
  record), run by a worker process or a Dask worker;
- :mod:`~pipeline.batch.executors`: local process pool or Dask cluster,
  bounded number of tasks in flight;
- :mod:`~pipeline.batch.records`: per-study records that make runs
  resumable (input fingerprints, rows);
- :mod:`~pipeline.batch.assemble`: ``measurements.csv``, ``errors.csv``,
  ``summary.csv`` and the manifest, rebuilt atomically from the records;
- :mod:`~pipeline.batch.tables`, :mod:`~pipeline.batch.summary`: columns
  and per-structure statistics;
- :mod:`~pipeline.batch.pseudonym`: ``--pseudonymize`` (keyed hashes);
- :mod:`~pipeline.batch.progress`: progress bar or log lines;
- :mod:`~pipeline.batch.runner`: :func:`run_batch`, the coordinator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.batch.runner import BatchOptions, BatchResult, run_batch

__all__ = ["BatchOptions", "BatchResult", "run_batch"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the study runner imports this package's table and record modules,
    # and the coordinator imports the study runner.
    if name in __all__:
        from pipeline.batch import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'pipeline.batch' has no attribute {name!r}")
