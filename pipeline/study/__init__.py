"""The study runner: every way of analysing studies (``mskus analyze``, the node's workers, ``mskus batch``) runs here.

- :mod:`pipeline.study.runner`: :func:`analyze_study`, one study's images
  read once, analysed frame by frame with per-frame hooks (overlays, key
  images), every failure of one image a refusal of that image only;
- :mod:`pipeline.study.report`: the study's SR from that result;
- :mod:`pipeline.study.outputs`: the one output layout (SR per study,
  overlays, the study record behind ``measurements.csv`` / ``errors.csv``).
"""

from pipeline.study.runner import FrameHook, StudyAnalysis, StudyFile, analyze_study

__all__ = ["FrameHook", "StudyAnalysis", "StudyFile", "analyze_study"]
