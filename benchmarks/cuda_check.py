"""The default path on a GPU against float32 on the CPU, and the backend rules there, on real photos.

    python benchmarks/cuda_check.py [--device cuda] [--data ../shared/data]

Photos: the first 8 EgoHands and 8 HGR photos and the first handphotos and indoor photo (18). Prints what
runs on each device, the share of pixels where the device's default mask equals the CPU's float32 mask,
the hands found on the device, and which backends are built or refused there (onnxruntime runs on the CPU
only). With `--device cpu` it runs the same on the CPU (a smoke test). The GPU's speed:
`python benchmarks/speed.py --device cuda`; the CUDA tests: `python -m pytest -k cuda`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import handseg
from train import DEFAULT_DATA

#: How many photos of each source, first by name.
PHOTOS_PER_SOURCE = {"egohands": 8, "hgr": 8, "handphotos": 1, "indoor": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    photos = [
        path
        for source, count in PHOTOS_PER_SOURCE.items()
        for path in sorted((args.data / source / "images").glob("*.jpg"))[:count]
    ]
    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
    on_device = handseg.Segmenter(device=args.device)
    reference = handseg.Segmenter(device="cpu", backend="torch")
    print("device:", on_device.describe())
    print("cpu   :", reference.describe())
    equal = [float((on_device(p).mask == reference(p).mask).mean()) for p in photos]
    print(
        f"{len(photos)} photos, pixels equal, {args.device} default vs cpu float32: "
        f"mean {np.mean(equal):.5f}, min {np.min(equal):.5f}"
    )
    hands = handseg.segment(photos[0], device=args.device).hands
    print(f"hands on {args.device}:", [(hand.handedness, hand.pixels) for hand in hands])
    for backend in ("int8", "onnx", "bf16"):
        try:
            print("built:", handseg.Segmenter(backend=backend, device=args.device).describe())
        except ValueError as exc:
            print(f"refused: backend={backend} on {args.device} -> {exc}")


if __name__ == "__main__":
    main()
