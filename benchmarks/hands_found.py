"""How much of each mask belongs to a hand with landmarks: per source, the share of the mask's pixels given
to a hand (the rest is `Segmentation.unexplained`), hands per photo, and the photos where the true mask
has a hand but no hand was found; and on the hand-free photos, the hands found there.

    python benchmarks/hands_found.py [--data ../shared/data] [--model NAME] [--split val] [--no-verify]

Each source's val split (or --split test: the held-out egocentric scene and the hand-free photos of
sources training never sees), run by the default Segmenter: hands confirmed, so every marked pixel is a
hand's and the share is 1 (hands found or confirmed per photo is the figure); `--no-verify`: the network's
mask as it is, and the hands the palm detector found. Reported, never used to choose anything.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import handseg
from train import DEFAULT_DATA
from train.data import load_pair, load_split

SOURCES = ("egohands", "handphotos", "hgr", "luthaihoc_ego", "negatives", "hand_free_scenes")


def main() -> None:
    parser = argparse.ArgumentParser(parents=[handseg.model_flag()], description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="the raw mask (verify=False)")
    args = parser.parse_args()
    segmenter = handseg.Segmenter(args.model, verify=args.verify)
    split = load_split(args.data, sources=list(SOURCES))
    rows = split.val if args.split == "val" else split.test
    by_source: dict[str, list[tuple[float, int, bool]]] = {}
    hand_free: dict[str, list[int]] = {}
    for i in range(len(rows)):
        example = rows[i]
        rgb, truth = load_pair(example)
        result = segmenter(rgb)
        found = result.hands
        if not truth.any():
            hand_free.setdefault(example["source"], []).append(len(found))
            continue
        explained = sum(hand.pixels for hand in found) / max(int(result.mask.sum()), 1)
        by_source.setdefault(example["source"], []).append((explained, len(found), not found))
    print(f"{segmenter.describe()}; {args.split} photos with hands\n")
    print("| source | photos | mask share on a hand, mean | hands per photo | photos with none |")
    print("|---|---:|---:|---:|---:|")
    for source, values in sorted(by_source.items()):
        shares, counts, none = (np.array(column) for column in zip(*values))
        print(f"| {source} | {len(values)} | {shares.mean():.2f} | {counts.mean():.2f} | {int(none.sum())} |")
    for source, counts in sorted(hand_free.items()):
        print(f"\n{source}: {len(counts)} hand-free photos, hands found on {sum(c > 0 for c in counts)}")


if __name__ == "__main__":
    main()
