"""The default model's targets, side by side for several models: false alarms on hand-free photos,
the held-out test split, val dice per source, and CPU time.

    python benchmarks/targets.py [--models A,B,...] [--backends torch,bf16,int8] [--masks confirmed,confirmed-once,raw]
                                 [--data ../shared/data] [--runs 9] [--json out.json]

Models default to every model shipped in the package, each run with every backend in --backends (default
torch: the float model; a backend a model lacks, such as int8 without its int8 file, is skipped), and each
mask in --masks: `confirmed` (the default, `verify=True`: every region a hand the landmark model confirms),
`confirmed-once` (the same without the second reading a landmark-reading network gives a photo where the
confirmation found hands the palm detector missed: `Segmenter.reread = False`) and `raw` (`verify=False`:
the network's mask as it is). Rows:
- hand-free val photos (negatives, 56): mean share of pixels marked as hand, photos with more than 1%
  marked, and the same per kind (UTKFace face crops, portraits, rooms);
- `hand_free_scenes` test split (41 hand-free photos from sources training never sees): mean share marked
  as hand and photos with more than 1% marked;
- hands against faces, without masks (`train.hands_on_faces`): the share of MediaPipe's hand landmarks
  inside the mask (dilated by 2% of the longer side), for hands over a face and for all, on the two
  held-out gesture people and the `faces_with_hands` photos where MediaPipe found a hand (for a model
  that reads landmarks this reads them back: report it, but it is not evidence);
- hands over faces, with masks: dice on a fixed set of composites of val hands on val faces
  (`benchmarks/hands_over_faces.py`);
- `luthaihoc_ego` test split (20, never trained on or used to choose): dice, precision, recall;
- val dice per source (photos with hands) and overall, and again with no landmarks given (`hands=False`:
  what a model that reads them does when the detector finds nothing);
- HGR val dice against hand-only labels (its forearms cut at the wrist by `train.labels.LabelPolicy`,
  the band at the wrist not scored: the default model's label policy, as `train.evaluate --label-policy
  hand` scores it) beside HGR's own hand-plus-forearm labels;
- hands: hand-free photos (val and test) with a hand found or confirmed on them; the share of the mask's
  pixels that belong to a hand with landmarks (egohands val, `luthaihoc_ego` test);
- median ms of `handseg.segment` on a 1918x1280 JPEG on this CPU (default threads; benchmarks/speed.py
  has the full speed table).
With more than one backend, a second table: each backend's difference from the float model (torch) on
every figure of the quality bar for a faster path (at most 0.005 dice per source, val and the
`luthaihoc_ego` test split; at most 0.1 percentage point of marked share on hand-free photos, val and
`hand_free_scenes` test), and whether it is within the bar.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import handseg
from benchmarks.hands_over_faces import composites
from benchmarks.hands_over_faces import dice as hands_over_faces_dice
from benchmarks.speed import make_frames
from benchmarks.threads import time_ms
from train import DEFAULT_DATA
from train.data import load_split
from train.evaluate import score_dataset, summarize, summarize_hand_free
from train.hands_on_faces import landmark_coverage
from train.labels import LabelPolicy

VAL_SOURCES = ["egohands", "hgr", "handphotos", "indoor", "negatives"]
FOREARM_SOURCES = ("hgr", "indoor")  # masks with the bare forearm: train.run's --forearm-sources default
#: Kinds of hand-free photo, by id prefix (see ../shared/data/README.md).
HAND_FREE_KINDS = {"faces (UTKFace crops)": "utkface_", "portraits": "deepface_", "rooms": "densedepth_"}


#: A faster path may differ from the float model by at most this much dice per source ...
BAR_DICE = 0.005
#: ... and this many percentage points of marked share on hand-free photos.
BAR_HAND_FREE_PP = 0.1


def cpu_ms(segmenter: handseg.Segmenter, data: Path, runs: int) -> float:
    frames = make_frames(data, Path(tempfile.mkdtemp(prefix="handseg-targets-")), per_size=1)["1918x1280"]
    return statistics.median(time_ms(lambda p: segmenter(p).mask, frames, runs))


class Recorded:
    """A Segmenter that notes, for each image it segments, how many hands it holds and how much of the mask
    belongs to one (the masks scored in the same order)."""

    def __init__(self, segmenter: handseg.Segmenter) -> None:
        self.segmenter, self.notes = segmenter, []

    def __call__(self, image, **options) -> handseg.Segmentation:
        result = self.segmenter(image, **options)
        marked = int(result.mask.sum())
        unexplained = int(result.unexplained.sum()) if result.unexplained is not None else marked
        self.notes.append({"hands": len(result.hands), "marked": marked, "on_a_hand": marked - unexplained})
        return result


def on_a_hand(rows: list[dict], notes: list[dict], source: str) -> float:
    """The share of the mask's pixels (all photos of `source` with hands, pooled) that belong to a hand."""
    picked = [n for r, n in zip(rows, notes, strict=True) if r["source"] == source and not r["hand_free"]]
    return sum(n["on_a_hand"] for n in picked) / max(1, sum(n["marked"] for n in picked))


#: --masks kind -> (verify, reread)
MASK_KINDS = {"confirmed": (True, True), "confirmed-once": (True, False), "raw": (False, True)}


def figures(model_path: str, data: Path, runs: int, backend: str = "torch", kind: str = "confirmed") -> dict:
    verify, reread = MASK_KINDS[kind]
    built = handseg.Segmenter(model_path, device="cpu", backend=backend, verify=verify)
    built.reread = reread
    segmenter = Recorded(built)
    split = load_split(data, sources=[*VAL_SOURCES, "luthaihoc_ego", "hand_free_scenes"])
    val_rows = score_dataset(segmenter, split.val)
    val_notes, segmenter.notes = segmenter.notes, []
    val = summarize(val_rows)
    blind = summarize(
        score_dataset(handseg.Segmenter(model_path, device="cpu", backend=backend, hands=False), split.val)
    )
    test_rows = score_dataset(segmenter, split.test)
    test_notes, segmenter.notes = segmenter.notes, []
    test = summarize(test_rows)
    hand_free_with_hands = sum(
        n["hands"] > 0 for r, n in zip([*val_rows, *test_rows], [*val_notes, *test_notes]) if r["hand_free"]
    )
    hand_only_policy = LabelPolicy.hand_only(FOREARM_SOURCES)
    hand_only = summarize(score_dataset(segmenter, split.val, policy=hand_only_policy))
    hand_free = [r for r in val_rows if r["hand_free"]]
    kinds = {
        kind: summarize_hand_free([r for r in hand_free if r["id"].startswith(prefix)])
        for kind, prefix in HAND_FREE_KINDS.items()
    }
    return {
        "hand_free": val["overall"]["hand_free"],
        "hand_free_by_kind": kinds,
        "test": {k: test["overall"][k] for k in ("n", "dice", "precision", "recall")},
        "test_hand_free": test["overall"]["hand_free"],
        "val_dice": {s: v["dice"] for s, v in val["per_source"].items() if v["n"]} | {"all": val["overall"]["dice"]},
        "hgr_val_dice_hand_only": hand_only["per_source"]["hgr"]["dice"],
        "hands_on_faces": landmark_coverage(lambda path: segmenter(path).mask, data),
        "hands_over_faces_dice": hands_over_faces_dice(segmenter, composites(data)),
        "val_dice_no_landmarks": {s: v["dice"] for s, v in blind["per_source"].items() if v["n"]}
        | {"all": blind["overall"]["dice"]},
        "hand_free_photos_with_a_hand": hand_free_with_hands,
        "hand_free_photos": sum(r["hand_free"] for r in [*val_rows, *test_rows]),
        "mask_on_a_hand": {
            "egohands val": on_a_hand(val_rows, val_notes, "egohands"),
            "luthaihoc_ego test": on_a_hand(test_rows, test_notes, "luthaihoc_ego"),
        },  # fmt: skip
        "cpu_ms_1918x1280": cpu_ms(segmenter.segmenter, data, runs) if runs else None,
    }


def bar_differences(fast: dict, reference: dict) -> dict[str, float]:
    """`fast` minus `reference` on every figure of the quality bar (dice; hand-free shares in points)."""
    differences = {f"val dice {s}": fast["val_dice"][s] - reference["val_dice"][s] for s in reference["val_dice"]}
    differences["`luthaihoc_ego` test dice"] = fast["test"]["dice"] - reference["test"]["dice"]
    for label, key in (("negatives val", "hand_free"), ("`hand_free_scenes` test", "test_hand_free")):
        differences[f"{label} marked share, points"] = 100 * (fast[key]["mean_marked"] - reference[key]["mean_marked"])
    return differences


def within_bar(differences: dict[str, float]) -> bool:
    return all(
        abs(value) <= (BAR_HAND_FREE_PP if label.endswith("points") else BAR_DICE)
        for label, value in differences.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated hub folders (default: every shipped model)")
    parser.add_argument("--backends", default="torch", help="comma-separated backends (default: torch)")
    parser.add_argument(
        "--masks", default="confirmed", help=f"comma-separated, of: {', '.join(MASK_KINDS)} (see above)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=int, default=9, help="timed runs for the CPU figure (0: no timing)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    paths = (
        args.models.split(",") if args.models else [str(handseg.pretrained_path(n)) for n in handseg.available_models()]
    )
    backends, masks = args.backends.split(","), args.masks.split(",")
    if unknown := set(masks) - set(MASK_KINDS):
        parser.error(f"--masks: {', '.join(sorted(unknown))} is not one of {', '.join(MASK_KINDS)}")
    results = {}
    for path in paths:
        for backend in backends:
            for kind in masks:
                print(f"scoring {path} ({backend}, {kind}) ...", file=sys.stderr, flush=True)
                try:
                    results[(path, backend, kind)] = figures(path, args.data, args.runs, backend, kind)
                except (handseg.Int8UnavailableError, ImportError) as exc:
                    print(f"skipped: {exc}", file=sys.stderr)
    models = list(results)

    def label(path: str, backend: str, kind: str) -> str:
        name = Path(path).name if Path(path).name not in ("best", "last") else "/".join(Path(path).parts[-2:])
        return " ".join([name, *([f"({backend})"] if len(backends) > 1 else []), *([kind] if len(masks) > 1 else [])])

    names = [label(*m) for m in models]

    def row(label: str, cell) -> None:
        print(f"| {label} | " + " | ".join(cell(results[m]) for m in models) + " |")

    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(models))
    row(
        "`hand_free_scenes` test (unseen sources): mean share marked as hand (photos above 1%)",
        lambda r: (
            f"{100 * r['test_hand_free']['mean_marked']:.1f}% "
            f"({r['test_hand_free']['above_1pct']}/{r['test_hand_free']['n']})"
        ),
    )
    row(
        "hand-free val photos (negatives): mean share marked as hand (photos above 1%)",
        lambda r: f"{100 * r['hand_free']['mean_marked']:.1f}% ({r['hand_free']['above_1pct']}/{r['hand_free']['n']})",
    )
    for kind in HAND_FREE_KINDS:
        if not any(results[m]["hand_free_by_kind"][kind]["n"] for m in models):
            continue  # e.g. rooms: all 11 are in the train split
        row(
            f"&nbsp;&nbsp;{kind}",
            lambda r, k=kind: (
                f"{100 * r['hand_free_by_kind'][k]['mean_marked']:.1f}% "
                f"({r['hand_free_by_kind'][k]['above_1pct']}/{r['hand_free_by_kind'][k]['n']})"
            ),
        )
    for key, what in (("over_face", "hands over a face"), ("all", "all hands")):
        row(
            f"hands against faces (no masks): MediaPipe landmarks covered, {what} (hands in photos)",
            lambda r, k=key: (
                f"{r['hands_on_faces'][k]['coverage']:.3f} "
                f"({r['hands_on_faces'][k]['hands']} in {r['hands_on_faces'][k]['photos']})"
            ),
        )
    row(
        "hands over faces, with masks: dice on composites of val hands on val faces (benchmarks/hands_over_faces.py)",
        lambda r: f"{r['hands_over_faces_dice']:.3f}",
    )
    row("`luthaihoc_ego` test dice (never trained on)", lambda r: f"{r['test']['dice']:.3f}")
    row("&nbsp;&nbsp;test precision / recall", lambda r: f"{r['test']['precision']:.3f} / {r['test']['recall']:.3f}")
    for source in ("egohands", "hgr", "handphotos", "all"):
        row(f"val dice {source}", lambda r, s=source: f"{r['val_dice'][s]:.3f}")
    row("val dice hgr, hand-only labels (forearm cut at the wrist)", lambda r: f"{r['hgr_val_dice_hand_only']:.3f}")
    row(
        "val dice with no landmarks given (hands=False): egohands / hgr / handphotos / all",
        lambda r: " / ".join(f"{r['val_dice_no_landmarks'][s]:.3f}" for s in ("egohands", "hgr", "handphotos", "all")),
    )
    row(
        "hand-free photos (val and test) with a hand found or confirmed on them",
        lambda r: f"{r['hand_free_photos_with_a_hand']} of {r['hand_free_photos']}",
    )
    row(
        "share of the mask on a hand with landmarks: egohands val / `luthaihoc_ego` test",
        lambda r: f"{r['mask_on_a_hand']['egohands val']:.2f} / {r['mask_on_a_hand']['luthaihoc_ego test']:.2f}",
    )
    if args.runs:
        row("`handseg.segment`, 1918x1280 JPEG, CPU median ms", lambda r: f"{r['cpu_ms_1918x1280']:.0f}")
    faster = [(p, b, k) for p, b, k in models if b != "torch" and (p, "torch", k) in results]
    if faster:
        differences = {m: bar_differences(results[m], results[(m[0], "torch", m[2])]) for m in faster}
        print()
        print("| difference from the float model (torch) | " + " | ".join(label(*m) for m in faster) + " |")
        print("|---|" + "---:|" * len(faster))
        for figure in differences[faster[0]]:
            print(f"| {figure} | " + " | ".join(f"{differences[m][figure]:+.4f}" for m in faster) + " |")
        bar = f"within the bar (dice within {BAR_DICE}, share within {BAR_HAND_FREE_PP} points)"
        print(f"| {bar} | " + " | ".join("yes" if within_bar(differences[m]) else "**no**" for m in faster) + " |")
    covered = results[models[0]]["hands_on_faces"]
    print()
    print(
        "hands against faces covers (hands in photos): "
        + "; ".join(
            f"{what}: " + ", ".join(f"{s} {n['hands']} in {n['photos']}" for s, n in covered[k]["by_source"].items())
            for k, what in (("all", "all hands"), ("over_face", "over a face"))
        )
    )
    if args.json:
        args.json.write_text(json.dumps({f"{p} ({b}, {k})": r for (p, b, k), r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
