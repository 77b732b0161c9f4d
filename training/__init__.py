"""Training of the learned nerve segmenter (needs the ``train`` extra: torch, onnx).

Only :mod:`training.evaluate_nerve` is importable without torch.
"""
