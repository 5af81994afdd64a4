"""HandUNet: the Hand-Segmentation U-Net, as a hub-loadable PyTorch module.

Architecture only. Pre-processing lives in `handseg.image`, inference in
`handseg.inference`, conversion of original checkpoints in `handseg.convert`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from handseg.hub import MODEL_CARD_TEMPLATE, HandsegHubMixin

#: The encoder halves the resolution four times, so inputs are padded to this.
SIZE_MULTIPLE = 16


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


class HandUNet(
    nn.Module,
    HandsegHubMixin,
    library_name="handseg",
    tags=["image-segmentation", "hand-segmentation", "unet"],
    license="other",
    repo_url="https://github.com/handseg/handseg",
    pipeline_tag="image-segmentation",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """U-Net hand segmenter: RGB in [0, 1], shape (N, C, H, W) -> logits (N, classes, H, W).

    The defaults reproduce the original Hand-Segmentation network exactly
    (widths 64-128-256-512-512, up path 256-128-64-64, bilinear up-sampling).
    `base_channels` scales every width. Any H and W work: the input is padded
    (edge-replicated) to a multiple of 16 and the output cropped back.

    `max_side` is not architecture but travels in config.json with the
    weights: the longer image side the model was trained to see, which
    `handseg.segment` uses as its working resolution unless told otherwise
    (None: handseg's default).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        bilinear: bool = True,
        max_side: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.max_side = max_side
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # Unconditional (a zero pad is a no-op) so exported graphs keep dynamic sizes.
        x = F.pad(x, (0, -width % SIZE_MULTIPLE, 0, -height % SIZE_MULTIPLE), mode="replicate")
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)[..., :height, :width]
