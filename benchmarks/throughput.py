"""Frames a second of `Segmenter.segment_batch` over many photos, with the next photos loaded (decoded, their
hands found) on a worker thread while one is segmented (handseg's default) and without, interleaved.

    python benchmarks/throughput.py [--model DIR] [--data ../shared/data] [--frames 32] [--rounds 3] [--contended]

The photos are the speed frames (`benchmarks/speed.py`: EgoHands and HGR photos as 1918x1280 JPEG files),
repeated to `--frames`; each round times each path both ways, one after the other, so the machine's drift
falls on both alike. `--contended`: while a second process keeps one core busy.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import handseg
from benchmarks.load import busy_core
from benchmarks.speed import make_frames
from train import DEFAULT_DATA

PATHS = {"default": {}, "raw": {"verify": False}, "masks-only": {"hands": False}}


def frames_per_second(segmenter: handseg.Segmenter, files: list[str], load_ahead: bool) -> float:
    segmenter.load_ahead = load_ahead
    started = time.perf_counter()
    segmenter.segment_batch(files)
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="hub folder (default: the shipped default model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--contended", action="store_true", help="while a second process keeps one core busy")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="handseg-throughput-") as folder:
        speed_frames = make_frames(args.data, Path(folder))["1918x1280"]
        files = (speed_frames * args.frames)[: args.frames]
        segmenters = {name: handseg.Segmenter(args.model, **options) for name, options in PATHS.items()}
        for segmenter in segmenters.values():
            segmenter.segment_batch(files[:2])  # warm-up
        print(f"{segmenters['default'].describe()}; {'one core busy' if args.contended else 'idle'}")
        print("\n| path | frames/s, loading ahead (default) | frames/s, loading in line | ratio |")
        print("|---|---:|---:|---:|")
        with busy_core() if args.contended else contextlib.nullcontext():
            for name, segmenter in segmenters.items():
                ahead, in_line = [], []
                for _ in range(args.rounds):
                    in_line.append(frames_per_second(segmenter, files, load_ahead=False))
                    ahead.append(frames_per_second(segmenter, files, load_ahead=True))
                a, b = statistics.median(ahead), statistics.median(in_line)
                print(f"| {name} | {a:.1f} | {b:.1f} | {a / b:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
