"""The shipped models (ONNX, metadata, model cards), installed as the package ``mskus_models``.

Only data lives here; :mod:`pipeline.resources` finds the files with
:mod:`importlib.resources`, so an installed wheel runs the same models as a
source checkout.
"""
