"""Score a model on labelled data: `python -m train.evaluate --model DIR --data DIR`.

Per-image dice, IoU, precision and recall at the original mask resolution,
through a `handseg.Segmenter` (the path every user's image takes) and
`handseg.metrics`. Photos with no hand (an empty mask) are scored apart: dice
means nothing there, so they count as false alarms instead (the share of their
pixels marked as hand) and never enter the dice averages. Training validation
uses the same `score_dataset`.
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
from handseg.metrics import METRIC_NAMES, mean_scores, score
from handseg.visualize import error_map, mask_to_image, side_by_side
from train.data import DataError, add_data_arguments, image_input, load_split_from_args
from train.labels import LabelPolicy, label_policy_flags


def score_predictions(
    ds: datasets.Dataset,
    predict: Callable[[dict], np.ndarray],
    *,
    indices: Iterable[int] | None = None,
    progress: bool = False,
    policy: LabelPolicy | None = None,
) -> list[dict]:
    """One row per example (source, id and the four metrics) for `predict(example) -> bool mask`,
    scored against the example's mask at its original resolution, read under `policy` (default: every
    mask as drawn; training validates under the label policy it trains, `train.labels.LabelPolicy`)."""
    policy = policy or LabelPolicy()
    indices = list(range(len(ds)) if indices is None else indices)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="evaluate", unit="img", file=sys.stderr)
    rows = []
    for i in indices:
        example = ds[i]
        predicted = predict(example)  # decodes the image itself
        truth = handseg.load_mask(image_input(example["mask"]))
        if truth.shape != predicted.shape:
            raise DataError(f"{example['source']}/{example['id']}: mask {truth.shape} vs image {predicted.shape}")
        row = {"source": example["source"], "id": example["id"], "hand_free": not truth.any()}
        row["marked"] = float(predicted.mean())  # share of pixels marked as hand
        truth, scored = policy.truth(truth, example["source"], example["id"])
        if scored is not None:
            predicted, truth = predicted & scored, truth & scored
        rows.append({**row, **score(predicted, truth).as_dict()})
    return rows


def score_dataset(
    segmenter: handseg.Segmenter,
    ds: datasets.Dataset,
    *,
    threshold: float = handseg.DEFAULT_THRESHOLD,
    crf: bool = False,
    indices: Iterable[int] | None = None,
    progress: bool = False,
    policy: LabelPolicy | None = None,
) -> list[dict]:
    """`score_predictions` for a model run by `segmenter`, as users run it. Evaluation and validation
    build theirs with backend="torch" (float32 on a CPU), so a model's figures do not depend on the
    machine's bf16 support, and a model being trained is never scored through a stale export."""

    def predict(example: dict) -> np.ndarray:
        return segmenter(image_input(example["image"]), threshold=threshold, crf=crf).mask

    return score_predictions(ds, predict, indices=indices, progress=progress, policy=policy)


#: A hand-free photo with more than this share of its pixels marked counts as a false alarm.
FALSE_ALARM_SHARE = 0.01


def summarize_hand_free(rows: Sequence[dict]) -> dict:
    """False-alarm figures over hand-free photos: how many, the mean share of pixels marked as
    hand, and how many have more than FALSE_ALARM_SHARE marked."""
    marked = [r["marked"] for r in rows]
    return {
        "n": len(rows),
        "mean_marked": float(np.mean(marked)) if rows else 0.0,
        "above_1pct": sum(m > FALSE_ALARM_SHARE for m in marked),
    }


def _summarize_group(rows: Sequence[dict]) -> dict:
    with_hands = [r for r in rows if not r.get("hand_free")]
    group = {"n": len(with_hands), **(mean_scores(with_hands).as_dict() if with_hands else {})}
    hand_free = [r for r in rows if r.get("hand_free")]
    if hand_free:
        group["hand_free"] = summarize_hand_free(hand_free)
    return group


def summarize(rows: Sequence[dict]) -> dict:
    """Means over images, overall and per source (each image counts once). `n` and the metrics
    cover photos with hands; `hand_free` (where there are any) holds the false-alarm figures."""
    summary = {"overall": _summarize_group(rows), "per_source": {}}
    for source in sorted({r["source"] for r in rows}):
        summary["per_source"][source] = _summarize_group([r for r in rows if r["source"] == source])
    return summary


def selection_score(summary: dict) -> float:
    """What picks the best epoch: mean dice on photos with hands minus the mean share of pixels
    marked on hand-free photos. A model that paints faces loses about as much as it marks,
    so it cannot win on dice alone."""
    overall = summary["overall"]
    dice = overall.get("dice", 0.0)
    return dice - overall.get("hand_free", {}).get("mean_marked", 0.0)


def markdown_table(summary: dict) -> str:
    """Dice etc. per source for photos with hands, then the false alarms on hand-free photos."""
    lines = ["| source | images | dice | IoU | precision | recall |", "|---|---:|---:|---:|---:|---:|"]
    entries = list(summary["per_source"].items()) + [("**all**", summary["overall"])]
    for name, s in entries:
        if s.get("n"):
            lines.append(f"| {name} | {s['n']} | " + " | ".join(f"{s[m]:.3f}" for m in METRIC_NAMES) + " |")
    hand_free = [(name, s["hand_free"]) for name, s in summary["per_source"].items() if "hand_free" in s]
    if len(hand_free) > 1:
        hand_free.append(("**all**", summary["overall"]["hand_free"]))
    if hand_free:
        lines += [
            "",
            "| hand-free photos | images | mean share marked as hand | photos above 1% |",
            "|---|---:|---:|---:|",
        ]
        for name, h in hand_free:
            lines.append(f"| {name} | {h['n']} | {100 * h['mean_marked']:.1f}% | {h['above_1pct']} |")
    if len(lines) == 2:
        return "no images scored"
    return "\n".join(lines)


def write_report(
    report_dir: Path,
    rows: list[dict],
    ds: datasets.Dataset,
    segmenter: handseg.Segmenter,
    worst: int = 12,
    policy: LabelPolicy | None = None,
    **options,
) -> None:
    """Per-image CSV and a gallery of the worst images: image | truth | prediction (TP/FP/FN), the
    truth as it was scored (under `policy`; unscored pixels grey)."""
    policy = policy or LabelPolicy()
    report_dir.mkdir(parents=True, exist_ok=True)
    with open(report_dir / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["source", "id", "hand_free", "marked", *METRIC_NAMES])
        writer.writeheader()
        writer.writerows(rows)
    index_of = {(ds[i]["source"], ds[i]["id"]): i for i in range(len(ds))}
    panels = []
    # Worst first: lowest dice among photos with hands, most marked among hand-free ones.
    for row in sorted(rows, key=lambda r: -r["marked"] if r.get("hand_free") else r["dice"] - 1)[:worst]:
        example = ds[index_of[(row["source"], row["id"])]]
        result = segmenter(image_input(example["image"]), **options)
        truth, scored = policy.truth(handseg.load_mask(image_input(example["mask"])), example["source"], example["id"])
        truth_image = mask_to_image(truth)
        errors = error_map(result.mask, truth, result.image)
        if scored is not None:
            truth_image = np.where(scored, truth_image, 128).astype(np.uint8)
            errors = np.where(scored[..., None], errors, result.image // 2)
        panel = side_by_side(result.image, truth_image, errors)
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
        parents=[handseg.model_flag(), label_policy_flags(default="as-labelled")],
    )
    add_data_arguments(parser)
    parser.add_argument(
        "--split",
        choices=["val", "test", "train", "all"],
        default="val",
        help="val (default); test: the held-out split, for a finished model only; all: every split",
    )
    parser.add_argument("--threshold", type=float, default=handseg.DEFAULT_THRESHOLD)
    parser.add_argument("--crf", action="store_true", help="dense-CRF refinement (needs pydensecrf2)")
    parser.add_argument("--max-side", type=int, default=None, help="working resolution (default: the model's)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument(
        "--backend",
        choices=handseg.BACKENDS,
        default="torch",
        help="torch (default: the float model's figures), or the backend to score as users run it "
        "(auto, bf16, onnx, int8; see handseg segment --help)",
    )
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="score the network's mask as it is (verify=False), not the confirmed hands users get by default",
    )
    parser.add_argument("--json", type=Path, help="write the summary and per-image rows here")
    parser.add_argument("--report", type=Path, help="folder for per_image.csv and worst.png")
    args = parser.parse_args(argv)

    try:
        if not args.data:
            parser.error("--data is required")
        split = load_split_from_args(args)
        segmenter = handseg.Segmenter(
            args.model,
            device=args.device,
            backend=args.backend,
            max_side=args.max_side or handseg.AUTO,
            verify=args.verify,
        )
    except handseg.DeviceUnavailableError as exc:
        print(f"error: --device: {exc}", file=sys.stderr)
        return 2
    except (DataError, handseg.NoDefaultModelError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in split.problems.report():
        print(line, file=sys.stderr)
    ds = {"val": split.val, "train": split.train, "test": split.test}.get(args.split)
    if ds is None:
        ds = datasets.concatenate_datasets([split.train, split.val, split.test])
    if len(ds) == 0:
        print(f"error: no images in the {args.split} split of {args.data}", file=sys.stderr)
        return 2
    print(f"scoring the {args.split} split of {args.data} ({len(ds)} images); {segmenter.describe()}", file=sys.stderr)
    options = {"threshold": args.threshold, "crf": args.crf}
    policy = LabelPolicy.from_args(args)
    rows = score_dataset(segmenter, ds, progress=True, policy=policy, **options)
    summary = summarize(rows)
    print(markdown_table(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "images": rows}, indent=2))
    if args.report:
        write_report(args.report, rows, ds, segmenter, policy=policy, **options)
        print(f"report: {args.report / 'per_image.csv'}, {args.report / 'worst.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
