"""Batch mode: a folder of ultrasound DICOM in, SRs and tidy tables out.

``mskus batch IN_DIR --out OUT_DIR`` (CONTRACT.md section 2). The pieces,
one idea per module:

- :mod:`~pipeline.batch.discovery`: walk IN_DIR (links followed, loops and
  unreadable folders reported, never fatal);
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

from pipeline.batch.runner import BatchOptions, BatchResult, run_batch

__all__ = ["BatchOptions", "BatchResult", "run_batch"]
