"""The original Hand-Segmentation U-Net (milesial's Pytorch-UNet), exactly: what `MODEL.pth` converts to."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from handseg.model import HandUNet
from handseg.networks.blocks import DoubleConv
from handseg.registry import register_architecture


class Down(nn.Sequential):
    """2x2 max-pool, then a DoubleConv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class Up(nn.Module):
    """Up-sample by 2, concatenate [skip, up-sampled], then a DoubleConv.

    `in_channels` counts both concatenated tensors, as in the original code.
    Bilinear up-sampling uses `align_corners=True`, like the original's
    `nn.UpsamplingBilinear2d`; otherwise a 2x2 transposed convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True) -> None:
        super().__init__()
        self.bilinear = bilinear
        if not bilinear:
            self.up = nn.ConvTranspose2d(in_channels // 2, in_channels // 2, 2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.bilinear:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        else:
            x = self.up(x)
        return self.conv(torch.cat([skip, x], dim=1))


@register_architecture("original_unet")
class OriginalUNet(HandUNet):
    """The original network: widths 64-128-256-512-512, up path 256-128-64-64, bilinear up-sampling.
    `base_channels` scales every width (tests use tiny ones); `bilinear=False` uses transposed
    convolutions, as the original's option did."""

    size_multiple = 16  # four 2x poolings

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        bilinear: bool = True,
        max_side: int | None = None,
        input_mean: tuple[float, ...] | list[float] | None = None,
        input_std: tuple[float, ...] | list[float] | None = None,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            max_side=max_side,
            input_mean=input_mean,
            input_std=input_std,
        )
        c = base_channels
        self.inc = DoubleConv(in_channels, c)
        self.downs = nn.ModuleList([Down(c, 2 * c), Down(2 * c, 4 * c), Down(4 * c, 8 * c), Down(8 * c, 8 * c)])
        self.ups = nn.ModuleList(
            [
                Up(16 * c, 4 * c, bilinear),
                Up(8 * c, 2 * c, bilinear),
                Up(4 * c, c, bilinear),
                Up(2 * c, c, bilinear),
            ]
        )
        self.outc = nn.Conv2d(c, num_classes, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)
