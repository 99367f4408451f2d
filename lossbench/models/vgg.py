"""VGG-9 as in the loss-landscape authors' code: 7 conv-BN-ReLU layers in three pooled stages
(64, 64 | 128, 128 | 256, 256, 256), then Linear-BN-ReLU to 256 and a linear classifier."""

from __future__ import annotations

from torch import Tensor, nn

VGG9_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M")


class VGG(nn.Module):
    """A plain conv net from a layer list (ints: 3x3 conv channels; "M": 2x2 max pool).

    Input (B, 3, S, S) with S divisible by 8; output (B, num_classes) logits.
    """

    def __init__(self, cfg: tuple[int | str, ...] = VGG9_CFG, *, width: int = 1, num_classes: int = 10,
                 image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, side = 3, image_size
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                side = -(-side // 2)
            elif isinstance(item, int):
                layers += [nn.Conv2d(in_channels, item * width, 3, padding=1), nn.BatchNorm2d(item * width),
                           nn.ReLU(inplace=True)]
                in_channels = item * width
            else:
                raise ValueError(f"bad VGG layer {item!r}; expected a channel count or 'M'")
        self.features = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(in_channels * side * side, in_channels), nn.BatchNorm1d(in_channels),
                                nn.ReLU(inplace=True))
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.fc(self.features(x).flatten(1)))


def vgg9(**kw) -> VGG:
    return VGG(VGG9_CFG, **kw)
