"""HRNetV2 for semantic segmentation, in PyTorch.

Parameter names and shapes are those of the official HRNet-Semantic-Segmentation model
(``lib/models/seg_hrnet.py``), so its checkpoints load with ``strict=True``; the computation is
the same, in the same order of additions. ``tests/data/hrnet_official_layout.json`` pins the
layout of every architecture. Slots the official model fills with ``None`` (a branch that needs no
transition, a module's own branch in the fuse table) hold ``nn.Identity`` here: no parameters, so
the keys are unchanged, and the graph exports without Python-side ``None`` checks.

The network maps a normalised RGB image ``[N, 3, H, W]`` to class logits at 1/4 resolution
``[N, C, ceil(H/4), ceil(W/4)]``. Upsampling inside the network is bilinear with the
``align_corners`` the checkpoint was trained with (False for the pytorch-v1.1/master branch,
True for the HRNet-OCR branch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.converters.hrnet.archs import HRNetSpec, StageSpec

BN_MOMENTUM = 0.01


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout, momentum=BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _resize(x: Tensor, like: Tensor, align_corners: bool) -> Tensor:
    # Sizes are read as Python ints so the exported graph has constant Resize sizes.
    size = (int(like.shape[-2]), int(like.shape[-1]))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, momentum=BN_MOMENTUM)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


def _residual_layer(block: type[BasicBlock | Bottleneck], cin: int, planes: int, count: int) -> nn.Sequential:
    """*count* blocks; the first gets a 1x1 projection when the width changes."""
    cout = planes * block.expansion
    downsample = _conv_bn(cin, cout, 1, 1, relu=False) if cin != cout else None
    layers: list[nn.Module] = [block(cin, planes, 1, downsample)]
    layers += [block(cout, planes) for _ in range(1, count)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks, then every branch receives the sum of all branches
    brought to its resolution and width (strided 3x3 convs down, 1x1 conv + bilinear up)."""

    def __init__(self, widths: tuple[int, ...], blocks: tuple[int, ...], align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        n = len(widths)
        self.branches = nn.ModuleList(_residual_layer(BasicBlock, w, w, b) for w, b in zip(widths, blocks, strict=True))
        self.fuse_layers = nn.ModuleList()
        self.relu = nn.ReLU(inplace=True)
        if n == 1:
            return
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(_conv_bn(widths[j], widths[i], 1, 1, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    # i - j stride-2 convs; width changes only in the last, which has no ReLU.
                    steps = [_conv_bn(widths[j], widths[j], 3, 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(widths[j], widths[i], 3, 2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if len(xs) == 1:
            return xs
        fused = []
        for i, row in enumerate(self.fuse_layers):
            assert isinstance(row, nn.ModuleList)
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = y + _resize(row[j](xs[j]), xs[i], self.align_corners)
                else:
                    y = y + row[j](xs[j])
            fused.append(self.relu(y))
        return fused


def _transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Branch adapters between stages: a 3x3 conv where an existing branch changes width, and a
    chain of stride-2 convs from the lowest-resolution branch for each new branch."""
    layers = nn.ModuleList()
    for i, w in enumerate(cur):
        if i < len(prev):
            layers.append(_conv_bn(prev[i], w, 3, 1, relu=True) if prev[i] != w else nn.Identity())
        else:
            extra = i + 1 - len(prev)
            chain = [
                _conv_bn(prev[-1], w if k == extra - 1 else prev[-1], 3, 2, relu=True) for k in range(extra)
            ]
            layers.append(nn.Sequential(*chain))
    return layers


class HRNetV2(nn.Module):
    """HRNetV2 segmentation network; see the module docstring for inputs and outputs."""

    def __init__(self, spec: HRNetSpec, num_classes: int, align_corners: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _residual_layer(Bottleneck, 64, spec.stem_channels, spec.stem_blocks)

        prev: tuple[int, ...] = (spec.stem_channels * Bottleneck.expansion,)
        for k, stage in enumerate(spec.stages, start=1):
            setattr(self, f"transition{k}", _transition(prev, stage.channels))
            setattr(self, f"stage{k + 1}", self._stage(stage, align_corners))
            prev = stage.channels

        c = spec.head_channels
        k = spec.final_conv_kernel
        self.last_layer = nn.Sequential(
            nn.Conv2d(c, c, 1, 1, 0),
            nn.BatchNorm2d(c, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, num_classes, k, 1, k // 2),
        )

    @staticmethod
    def _stage(stage: StageSpec, align_corners: bool) -> nn.Sequential:
        return nn.Sequential(
            *(HighResolutionModule(stage.channels, stage.blocks, align_corners) for _ in range(stage.modules))
        )

    @property
    def arch_label(self) -> str:
        """The ``arch`` an exported file records (``edgeseg info``, ``edgeseg compare``)."""
        return f"hrnetv2_{self.spec.name}"

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(self.features(x))

    def for_export(self) -> HRNetV2:
        """The module the graph is traced from: this one (subclasses may return an equivalent
        module that runs faster as a graph)."""
        return self

    def features(self, x: Tensor) -> Tensor:
        """The four branches concatenated at 1/4 resolution: ``[N, spec.head_channels, h, w]``."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for k in (1, 2, 3):
            transition: nn.ModuleList = getattr(self, f"transition{k}")
            stage: nn.Sequential = getattr(self, f"stage{k + 1}")
            # Existing branches keep their own input; new branches grow from the lowest resolution.
            inputs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(transition)]
            xs = stage(inputs)
        return torch.cat([xs[0]] + [_resize(x, xs[0], self.align_corners) for x in xs[1:]], dim=1)
