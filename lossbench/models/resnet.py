"""CIFAR ResNets of depth 6n+2 (He et al. 2016, section 4.2), with and without shortcuts.

Three stages of n basic blocks at 16k, 32k and 64k channels (k = width), strides 1, 2, 2; global average
pooling; one linear layer. Where a block changes shape, the shortcut is a 1x1 convolution + BN
projection, as in the loss-landscape authors' code. ``shortcut=False`` removes the whole skip path,
identity and projection alike (their ``resnet56_noshort``): the same layers otherwise.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the skip path when ``shortcut``, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, *, shortcut: bool = True) -> None:
        super().__init__()
        self.use_shortcut = shortcut
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module | None = None
        if shortcut:
            if stride != 1 or in_planes != planes:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
                )
            else:
                self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 3-channel images of any side divisible by 4 (32 for CIFAR, 16 at CPU scales).

    Args:
        depth: 6n+2 weighted layers, e.g. 20, 56, 110.
        width: channel multiplier k.
        shortcut: False removes every skip connection.
        num_classes: outputs of the final linear layer.

    Input (B, 3, H, W) float32; output (B, num_classes) logits.
    """

    def __init__(self, depth: int, *, width: int = 1, shortcut: bool = True, num_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"ResNet depth {depth!r} is not 6n+2 with n >= 1; expected e.g. 20, 56 or 110")
        if width < 1:
            raise ValueError(f"width {width} must be a positive integer")
        n = (depth - 2) // 6
        self.depth, self.width, self.shortcut = depth, width, shortcut
        planes = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, planes[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        in_planes = planes[0]
        stages = []
        for i, p in enumerate(planes):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(in_planes, p, stride, shortcut=shortcut))
                in_planes = p
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(planes[2], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # (B, 64k)
        return self.linear(out)


def resnet20(**kw) -> CifarResNet:
    return CifarResNet(20, **kw)


def resnet56(**kw) -> CifarResNet:
    return CifarResNet(56, **kw)


def resnet110(**kw) -> CifarResNet:
    return CifarResNet(110, **kw)
