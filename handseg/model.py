"""HandUNet: the Hand-Segmentation U-Net, as a hub-loadable PyTorch module.

Architecture only. Pre-processing lives in `handseg.image`, inference in
`handseg.inference`, conversion of original checkpoints in `handseg.convert`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from handseg.encoders import LITE_VARIANTS, EfficientNetLiteEncoder
from handseg.hub import MODEL_CARD_TEMPLATE, HandsegHubMixin

DEFAULT_DECODER_CHANNELS = (96, 64, 40, 24, 16)


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


class DecoderBlock(nn.Module):
    """Up-sample to the skip's size, concatenate [up-sampled, skip], DoubleConv."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DoubleConv(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1) if skip is not None else x)


class HandUNet(
    nn.Module,
    HandsegHubMixin,
    library_name="handseg",
    tags=["image-segmentation", "hand-segmentation", "unet"],
    license="other",
    pipeline_tag="image-segmentation",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """U-Net hand segmenter: RGB in [0, 1], shape (N, C, H, W) -> logits (N, classes, H, W).

    `encoder=None` (default) is the original Hand-Segmentation network, exactly:
    widths 64-128-256-512-512, up path 256-128-64-64, bilinear up-sampling;
    `base_channels` scales every width. `encoder="efficientnet_lite0"` (or
    `"efficientnet_lite2"`) puts an EfficientNet-Lite encoder under a light U-Net
    decoder (`decoder_channels`).

    Any H and W work: the input is padded (edge-replicated) to a multiple of
    the network's total stride and the output cropped back.

    Two entries travel in config.json with the weights though they are not
    architecture: `input_mean`/`input_std`, the pixel normalization the
    weights expect (None: none, the original's plain [0, 1] input), and
    `max_side`, the longer image side the model was trained to see, which
    `handseg.segment` uses as its working resolution unless told otherwise.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 64,
        bilinear: bool = True,
        max_side: int | None = None,
        encoder: str | None = None,
        decoder_channels: tuple[int, ...] | list[int] = DEFAULT_DECODER_CHANNELS,
        input_mean: tuple[float, ...] | list[float] | None = None,
        input_std: tuple[float, ...] | list[float] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.max_side = max_side
        self.encoder_name = encoder
        if (input_mean is None) != (input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        if input_mean is not None:
            self.register_buffer("input_mean", torch.tensor(input_mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(input_std).view(1, -1, 1, 1), persistent=False)
        else:
            self.input_mean = self.input_std = None
        if encoder is None:
            self._build_original(in_channels, num_classes, base_channels, bilinear)
            self.size_multiple = 16  # four 2x poolings
        elif encoder in LITE_VARIANTS:
            encoder_module = EfficientNetLiteEncoder(encoder, in_channels)
            self._build_encoder_decoder(encoder_module, num_classes, tuple(decoder_channels))
            self.size_multiple = 32  # five stride-2 stages
        else:
            raise ValueError(f"unknown encoder {encoder!r}; available: None, {', '.join(LITE_VARIANTS)}")

    def _build_original(self, in_channels: int, num_classes: int, c: int, bilinear: bool) -> None:
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

    def _build_encoder_decoder(self, encoder: nn.Module, num_classes: int, widths: tuple[int, ...]) -> None:
        if len(widths) != 5:
            raise ValueError(f"decoder_channels needs 5 widths, got {widths}")
        self.encoder = encoder
        skips = list(encoder.out_channels[:-1])[::-1] + [0]  # deepest skip first; none at full size
        ins = [encoder.out_channels[-1], *widths[:-1]]
        self.decoder = nn.ModuleList([DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, widths)])
        self.head = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        m = self.size_multiple
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        # Unconditional (a zero pad is a no-op) so exported graphs keep dynamic sizes.
        x = F.pad(x, (0, -width % m, 0, -height % m), mode="replicate")
        if channels_last:  # padding returns a contiguous tensor; keep the faster layout the caller chose
            x = x.contiguous(memory_format=torch.channels_last)
        if self.input_mean is not None:
            x = (x - self.input_mean) / self.input_std
        if self.encoder_name is None:
            skips = [self.inc(x)]
            for down in self.downs:
                skips.append(down(skips[-1]))
            x = skips.pop()
            for up in self.ups:
                x = up(x, skips.pop())
            return self.outc(x)[..., :height, :width]
        features = self.encoder(x)
        x = features.pop()
        for block in self.decoder:
            x = block(x, features.pop() if features else None)
        return self.head(x)[..., :height, :width]
