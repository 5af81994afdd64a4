"""Building blocks shared by handseg's networks."""

from __future__ import annotations

from torch import nn


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) twice; indices 0, 1, 3, 4 hold the weights."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
