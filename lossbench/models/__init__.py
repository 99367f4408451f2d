"""Model builders and the one rule about which tensors are "bias or BatchNorm"."""

from __future__ import annotations

from torch import Tensor, nn

from .resnet import CifarResNet, resnet20, resnet56, resnet110
from .vgg import VGG, vgg9

__all__ = ["CifarResNet", "VGG", "build_model", "is_biasbn", "resnet20", "resnet56", "resnet110", "vgg9"]


def is_biasbn(tensor: Tensor) -> bool:
    """True for the tensors the paper's ``ignore=biasbn`` leaves unperturbed: biases, BatchNorm weights
    and biases, BN running statistics, and counters: everything with at most one dimension."""
    return tensor.dim() <= 1


def build_model(arch: str, depth: int, *, width: int = 1, shortcut: bool = True, num_classes: int = 10,
                image_size: int = 32) -> nn.Module:
    """A freshly constructed network (PyTorch's default init; :mod:`lossbench.train` re-initialises)."""
    if arch == "resnet":
        return CifarResNet(depth, width=width, shortcut=shortcut, num_classes=num_classes)
    elif arch == "vgg":
        if depth != 9:
            raise ValueError(f"vgg depth {depth} is not built; expected 9 (VGG-9)")
        if not shortcut:
            raise ValueError("VGG has no shortcuts to remove; use shortcut=True")
        return vgg9(width=width, num_classes=num_classes, image_size=image_size)
    else:
        raise ValueError(f"unknown architecture {arch!r}; expected resnet or vgg")
