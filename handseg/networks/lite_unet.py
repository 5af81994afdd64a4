"""An EfficientNet-Lite encoder (ImageNet-pretrainable) under a light U-Net decoder: the shipped models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from handseg.model import HandUNet
from handseg.networks.blocks import DoubleConv
from handseg.networks.encoders import EfficientNetLiteEncoder
from handseg.registry import register_architecture

DEFAULT_DECODER_CHANNELS = (96, 64, 40, 24, 16)


class DecoderBlock(nn.Module):
    """Up-sample to the skip's size, concatenate [up-sampled, skip], DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1) if skip is not None else x)


@register_architecture("lite_unet")
class LiteUNet(HandUNet):
    """`encoder` ("efficientnet_lite0" or "efficientnet_lite2") with five decoder blocks of
    `decoder_channels`, one per encoder stride (32 down to 2) and a last one at full size."""

    size_multiple = 32  # five stride-2 stages

    def __init__(
        self,
        encoder: str = "efficientnet_lite0",
        in_channels: int = 3,
        num_classes: int = 1,
        decoder_channels: tuple[int, ...] | list[int] = DEFAULT_DECODER_CHANNELS,
        max_side: int | None = None,
        input_mean: tuple[float, ...] | list[float] | None = None,
        input_std: tuple[float, ...] | list[float] | None = None,
        hand_channels: int = 0,
    ) -> None:
        super().__init__(
            in_channels=in_channels,
            num_classes=num_classes,
            max_side=max_side,
            input_mean=input_mean,
            input_std=input_std,
            hand_channels=hand_channels,
        )
        widths = tuple(decoder_channels)
        if len(widths) != 5:
            raise ValueError(f"decoder_channels needs 5 widths, got {widths}")
        self.encoder = EfficientNetLiteEncoder(encoder, in_channels + hand_channels)
        channels = self.encoder.out_channels
        skips = list(channels[:-1])[::-1] + [0]  # deepest skip first; none at full size
        ins = [channels[-1], *widths[:-1]]
        self.decoder = nn.ModuleList([DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, widths)])
        self.head = nn.Conv2d(widths[-1], num_classes, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        x = features.pop()
        for block in self.decoder:
            x = block(x, features.pop() if features else None)
        return self.head(x)
