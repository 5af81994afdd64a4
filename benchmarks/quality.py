"""Quality of the shipped model with and without CRF (at the working resolution, as handseg runs it,
and at full size, as the original did), beside a classical skin-colour baseline,
in one table (dice per source on the fixed val split, original resolution).

    python benchmarks/quality.py [--model DIR] [--data ../shared/data] [--json out.json]

The skin baseline is the YCrCb box commonly used with OpenCV (133 <= Cr <= 173,
77 <= Cb <= 127), computed here with numpy so OpenCV is not needed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import datasets
import numpy as np

import handseg
from train import DEFAULT_DATA
from train.composite import skin_mask
from train.data import image_input, load_split
from train.evaluate import score_dataset, score_predictions, summarize

PHOTO_SOURCES = "egohands,hgr,handphotos,indoor"
#: The default sources: the photos with hands and the hand-free photos (scored as false alarms).
DEFAULT_SOURCES = PHOTO_SOURCES + ",negatives"


def skin_prediction(example) -> np.ndarray:
    return skin_mask(handseg.load_image(image_input(example["image"])))


def full_size_crf_prediction(segmenter: handseg.Segmenter):
    """The original's way: CRF on the full-size image and probability map (handseg runs it at the
    working resolution and up-samples, which is what `crf=True` measures)."""

    def predict(example) -> np.ndarray:
        result = segmenter(image_input(example["image"]))
        return handseg.crf.refine_with_crf(result.image, result.probability) > 0.5

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--sources", default=DEFAULT_SOURCES)
    parser.add_argument("--split", choices=["val", "all"], default="val")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    split = load_split(args.data, sources=args.sources.split(","))
    images = split.val if args.split == "val" else datasets.concatenate_datasets([split.train, split.val])
    model = handseg.Segmenter(args.model, device="cpu", backend="torch")
    results = {}
    for name, run in (
        ("handseg model", lambda: score_dataset(model, images)),
        ("handseg model + CRF", lambda: score_dataset(model, images, crf=True)),
        ("handseg model + CRF at full size", lambda: score_predictions(images, full_size_crf_prediction(model))),
        ("skin colour (YCrCb box)", lambda: score_predictions(images, skin_prediction)),
    ):
        started = time.perf_counter()
        summary = summarize(run())
        summary["seconds_per_image"] = (time.perf_counter() - started) / len(images)
        results[name] = summary
    first = next(iter(results.values()))
    sources = [s for s, v in sorted(first["per_source"].items()) if v["n"]]  # sources with hands
    hand_free_n = first["overall"].get("hand_free", {}).get("n", 0)
    counts = ", ".join(f"{s} {first['per_source'][s]['n']}" for s in sources)
    print(f"{args.split} images of {args.data}: {counts}" + (f", hand-free {hand_free_n}" if hand_free_n else ""))
    print()
    hand_free_header = " | hand-free photos: share marked (above 1%)" if hand_free_n else ""
    print(
        "| method | "
        + " | ".join(f"dice {s}" for s in sources)
        + f" | dice all | IoU all{hand_free_header} | s/image |"
    )
    print("|---|" + "---:|" * (len(sources) + 3 + bool(hand_free_n)))
    for name, summary in results.items():
        per = " | ".join(f"{summary['per_source'][s]['dice']:.3f}" for s in sources)
        overall = summary["overall"]
        hand_free = ""
        if hand_free_n:
            h = overall["hand_free"]
            hand_free = f" | {100 * h['mean_marked']:.1f}% ({h['above_1pct']}/{h['n']})"
        print(
            f"| {name} | {per} | {overall['dice']:.3f} | {overall['iou']:.3f}{hand_free} | "
            f"{summary['seconds_per_image']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
