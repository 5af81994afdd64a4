"""Score a model on labelled data: `python -m train.evaluate --model DIR --data DIR`.

Per-image dice, IoU, precision and recall at the original mask resolution,
through `handseg.segment` (the path every user's image takes) and
`handseg.metrics`. Training validation uses the same `score_dataset`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

import handseg
from handseg.image import load_mask
from handseg.metrics import METRIC_NAMES, mean_scores, score
from handseg.visualize import error_map, mask_to_image, side_by_side
from train.data import DataError, add_data_arguments, image_input, load_split_from_args


def score_predictions(
    ds: datasets.Dataset,
    predict: Callable[[dict], np.ndarray],
    *,
    indices: Iterable[int] | None = None,
    progress: bool = False,
) -> list[dict]:
    """One row per example (source, id and the four metrics) for `predict(example) -> bool mask`,
    scored against the example's mask at its original resolution."""
    indices = list(range(len(ds)) if indices is None else indices)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="evaluate", unit="img", file=sys.stderr)
    rows = []
    for i in indices:
        example = ds[i]
        predicted = predict(example)  # decodes the image itself
        truth = load_mask(image_input(example["mask"]))
        if truth.shape != predicted.shape:
            raise DataError(f"{example['source']}/{example['id']}: mask {truth.shape} vs image {predicted.shape}")
        rows.append({"source": example["source"], "id": example["id"], **score(predicted, truth).as_dict()})
    return rows


def score_dataset(
    model: handseg.HandUNet,
    ds: datasets.Dataset,
    *,
    threshold: float = 0.5,
    crf: bool = False,
    max_side: int | str | None = "auto",
    indices: Iterable[int] | None = None,
    progress: bool = False,
) -> list[dict]:
    """`score_predictions` for a model run through `handseg.segment`."""

    def predict(example: dict) -> np.ndarray:
        options = {"threshold": threshold, "crf": crf, "max_side": max_side}
        return handseg.segment(image_input(example["image"]), model, **options).mask

    return score_predictions(ds, predict, indices=indices, progress=progress)


def summarize(rows: Sequence[dict]) -> dict:
    """Means over images, overall and per source (each image counts once)."""
    if not rows:
        return {"overall": {"n": 0}, "per_source": {}}
    summary = {"overall": {"n": len(rows), **mean_scores(rows).as_dict()}, "per_source": {}}
    for source in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == source]
        summary["per_source"][source] = {"n": len(mine), **mean_scores(mine).as_dict()}
    return summary


def markdown_table(summary: dict) -> str:
    lines = ["| source | images | dice | IoU | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    entries = list(summary["per_source"].items()) + [("**all**", summary["overall"])]
    for name, s in entries:
        if s.get("n"):
            lines.append(f"| {name} | {s['n']} | " + " | ".join(f"{s[m]:.3f}" for m in METRIC_NAMES) + " |")
    return "\n".join(lines)


def write_report(
    report_dir: Path, rows: list[dict], ds: datasets.Dataset, model: handseg.HandUNet, worst: int = 12, **options
) -> None:
    """Per-image CSV and a gallery of the worst images: image | truth | prediction (TP/FP/FN)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    with open(report_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["source", "id", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    index_of = {(ds[i]["source"], ds[i]["id"]): i for i in range(len(ds))}
    panels = []
    for row in sorted(rows, key=lambda r: r["dice"])[:worst]:
        example = ds[index_of[(row["source"], row["id"])]]
        result = handseg.segment(image_input(example["image"]), model, **options)
        truth = load_mask(image_input(example["mask"]))
        panel = side_by_side(result.image, mask_to_image(truth), error_map(result.mask, truth, result.image))
        height = 200
        width = round(panel.shape[1] * height / panel.shape[0])
        panels.append(np.array(Image.fromarray(panel).resize((width, height), Image.BILINEAR)))
    if panels:
        width = max(p.shape[1] for p in panels)
        padded = [np.pad(p, ((0, 8), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
        Image.fromarray(np.concatenate(padded)).save(report_dir / "worst.png")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Dice, IoU, precision and recall of a model on labelled hand data, at the original resolution.",
    )
    parser.add_argument("--model", default=None, help="hub folder or repo id (default: the shipped model)")
    add_data_arguments(parser)
    parser.add_argument("--split", choices=["val", "train", "all"], default="val")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--crf", action="store_true", help="dense-CRF refinement (needs pydensecrf2)")
    parser.add_argument("--max-side", type=int, default=None, help="working resolution (default: the model's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--json", type=Path, help="write the summary and per-image rows here")
    parser.add_argument("--report", type=Path, help="folder for per_image.csv and worst.png")
    args = parser.parse_args(argv)

    try:
        if not args.data:
            parser.error("--data is required")
        split = load_split_from_args(args)
        model = handseg.load_model(args.model, args.device)
    except (DataError, handseg.NoDefaultModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in split.problems.report():
        print(line, file=sys.stderr)
    ds = {"val": split.val, "train": split.train}.get(args.split)
    if ds is None:
        ds = datasets.concatenate_datasets([split.train, split.val])
    options = {"threshold": args.threshold, "crf": args.crf, "max_side": args.max_side or "auto"}
    rows = score_dataset(model, ds, progress=True, **options)
    summary = summarize(rows)
    print(markdown_table(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "images": rows}, indent=2))
    if args.report:
        write_report(args.report, rows, ds, model, **options)
        print(f"report: {args.report / 'per_image.csv'}, {args.report / 'worst.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
