"""A compact U-Net for background / nerve / vessel segmentation.

Built from operations OpenCV's DNN module reads from ONNX: 3x3 convolutions
(batch norm folded at export), ReLU, 2x2 max pooling, bilinear 2x upsampling,
concatenation, 1x1 convolutions.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "count_parameters"]


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with ``len(widths) - 1`` poolings; input ``(N, 1, S, S)``, S divisible by ``2**(len(widths)-1)``.

    Parameters
    ----------
    widths : channels per level, finest first.
    n_classes : output channels (logits).
    dropout : channel dropout on the bottleneck (training only; off by default, it slows CPU training).
    """

    def __init__(self, widths: tuple[int, ...] = (12, 24, 48, 96, 192), n_classes: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.widths = tuple(widths)
        self.encoders = nn.ModuleList()
        c = 1
        for w in widths:
            self.encoders.append(_block(c, w))
            c = w
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.reducers.append(nn.Conv2d(c, w, 1))
            self.decoders.append(_block(2 * w, w))
            c = w
        self.head = nn.Conv2d(c, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, encoder in enumerate(self.encoders):
            if i:
                x = F.max_pool2d(x, 2)
            x = encoder(x)
            skips.append(x)
        x = self.dropout(x)
        for reducer, decoder, skip in zip(self.reducers, self.decoders, reversed(skips[:-1])):
            # 1x1 convolution first: it commutes with bilinear upsampling and is 4x cheaper here.
            x = F.interpolate(reducer(x), scale_factor=2.0, mode="bilinear", align_corners=False)
            x = decoder(torch.cat([x, skip], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
