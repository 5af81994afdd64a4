"""Prepare training data once, at training resolution, as a saved `datasets` dataset (Arrow):

    python -m train.prepare --data ../shared/data --out cache/hands512
    python -m train.run --data cache/hands512 ...

Training photos are decoded, given their label map under the label policy (at full size, where
the wrist landmarks are), then stored with their longer side at most `--side` (default 512, the
working resolution): the image as JPEG (`--quality`; `--lossless` for PNG), the mask and the label
map as PNG (exact). Validation photos are stored as their original bytes, so validation still
scores each image at its original resolution, as `train.evaluate` does. The test split is left
out: training never reads it, and `train.evaluate --split test` reads it from the original data.
Hand cut-outs for compositing (`--composite DIR`, e.g. the ASL cut-outs) go in a `cutouts` split,
a seeded sample of `--cutouts` of them. Pseudo-labelled frames (`--pseudo-labels DIR`, from
`python -m tools.pseudo_labels`) join the training photos with their own label maps, as source
`gestures_pseudo`. `handseg_prepared.json` beside the Arrow files records how the set was made;
`train.run` checks that its flags agree (label policy, working resolution).

Why: on a 2-core machine an epoch decoded and resized every large photo again in each data-loading
process; a prepared set is decoded once, and small enough to carry to a GPU machine.
"""

from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from handseg import load_image, png_bytes
from train.augment import fit_longer_side
from train.data import (
    PREPARED_FEATURES,
    PREPARED_FILE,
    DataError,
    SplitData,
    add_data_arguments,
    image_input,
    load_pair,
    load_split,
    load_split_from_args,
)
from train.labels import HAND, LabelPolicy, label_policy_flags


def _image_bytes(rgb: np.ndarray, quality: int | None) -> bytes:
    if quality is None:
        return png_bytes(rgb)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _cell_bytes(cell: dict) -> bytes:
    source = image_input(cell)
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def training_row(example: dict, policy: LabelPolicy, side: int, quality: int | None) -> dict:
    """One training photo at the stored size: image, mask and label map, resized as TrainSet resizes them
    (label map made at full size, then nearest-neighbour)."""
    rgb, mask = load_pair(example)
    labels = policy.labels(mask, example["source"], example["id"])
    small_rgb, small_labels = fit_longer_side(rgb, labels, side)
    small_mask = fit_longer_side(rgb, mask, side)[1]
    return {
        "image": {"bytes": _image_bytes(small_rgb, quality), "path": None},
        "mask": {"bytes": png_bytes(small_mask.astype(np.uint8) * 255), "path": None},
        "source": example["source"],
        "id": example["id"],
        "labels": {"bytes": png_bytes(small_labels), "path": None},
    }


#: The source name pseudo-labelled frames train under.
PSEUDO_SOURCE = "gestures_pseudo"


def pseudo_rows(folder: Path, side: int, quality: int | None, every: int = 1) -> list[dict]:
    """Frames written by tools.pseudo_labels (images/, labels/), at the stored size like training photos;
    `every`: one frame in that many (in name order: consecutive frames of one person are near twins)."""
    rows = []
    for labels_path in sorted((folder / "labels").glob("*.png"))[::every]:
        image_path = next((folder / "images").glob(labels_path.stem + ".*"))
        rgb = load_image(image_path)
        small_rgb, small_labels = fit_longer_side(rgb, np.array(Image.open(labels_path)), side)
        rows.append(
            {
                "image": {"bytes": _image_bytes(small_rgb, quality), "path": None},
                "mask": {"bytes": png_bytes(((small_labels == HAND) * 255).astype(np.uint8)), "path": None},
                "source": PSEUDO_SOURCE,
                "id": labels_path.stem,
                "labels": {"bytes": png_bytes(small_labels), "path": None},
            }
        )
    return rows


def original_row(example: dict) -> dict:
    """A validation or test photo as it is: its original image and mask bytes, no label map."""
    return {
        "image": {"bytes": _cell_bytes(example["image"]), "path": None},
        "mask": {"bytes": _cell_bytes(example["mask"]), "path": None},
        "source": example["source"],
        "id": example["id"],
        "labels": None,
    }


def _rows_to_dataset(rows: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in PREPARED_FEATURES}, features=PREPARED_FEATURES)


def prepare(
    split: SplitData,
    out: str | Path,
    *,
    policy: LabelPolicy,
    side: int = 512,
    quality: int | None = 90,
    cutouts: datasets.Dataset | None = None,
    n_cutouts: int = 600,
    pseudo_labels: Path | None = None,
    pseudo_every: int = 1,
    seed: int = 0,
    about: dict | None = None,
    progress: bool = False,
) -> dict:
    """Write the prepared dataset to `out`; returns what `handseg_prepared.json` records."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out} exists and is not empty; remove it or choose another --out")
    items = range(len(split.train))
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="train photos", unit="photo", file=sys.stderr)
    train_rows = [training_row(split.train[i], policy, side, quality) for i in items]
    if pseudo_labels is not None:
        train_rows += pseudo_rows(Path(pseudo_labels), side, quality, pseudo_every)
    parts = {
        "train": _rows_to_dataset(train_rows),
        "validation": _rows_to_dataset([original_row(row) for row in split.val]),
    }
    if cutouts is not None and len(cutouts) and n_cutouts:
        order = np.random.default_rng(seed).permutation(len(cutouts))
        chosen = sorted(order[: n_cutouts if n_cutouts > 0 else len(cutouts)].tolist())
        parts["cutouts"] = _rows_to_dataset([original_row(cutouts[i]) for i in chosen])
    datasets.DatasetDict(parts).save_to_disk(str(out))
    meta = {
        "side": side,
        "image_format": "png" if quality is None else f"jpeg q{quality}",
        "label_policy": "hand" if policy.forearm_sources else "as-labelled",
        "forearm_sources": sorted(policy.forearm_sources),
        "counts": {name: len(ds) for name, ds in parts.items()},
        **(about or {}),
    }
    (out / PREPARED_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.prepare",
        description="Decode and resize the training data once into a saved datasets dataset for train.run --data.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        parents=[label_policy_flags()],
    )
    add_data_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="folder to write (must not exist or be empty)")
    parser.add_argument("--side", type=int, default=512, help="longer side of stored training photos (working res.)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of stored training photos")
    parser.add_argument("--lossless", action="store_true", help="store training photos as PNG (larger)")
    parser.add_argument("--composite", help="folder of hand cut-outs on black (images/ + masks/) to include")
    parser.add_argument("--cutouts", type=int, default=600, help="how many cut-outs to include (-1: all)")
    parser.add_argument("--pseudo-labels", type=Path, help="a folder written by python -m tools.pseudo_labels")
    parser.add_argument(
        "--pseudo-every", type=int, default=1, help="take one pseudo-labelled frame in N (near-twin frames weigh less)"
    )
    args = parser.parse_args(argv)
    if not args.data:
        parser.error("--data is required")
    started = time.perf_counter()
    try:
        split = load_split_from_args(args)
        cutouts = None
        if args.composite:
            cutouts = load_split(args.composite, val_percent=0).train
        for line in split.problems.report():
            print(line, file=sys.stderr)
        policy = LabelPolicy.from_args(args)
        meta = prepare(
            split,
            args.out,
            policy=policy,
            side=args.side,
            quality=None if args.lossless else args.quality,
            cutouts=cutouts,
            n_cutouts=args.cutouts,
            pseudo_labels=args.pseudo_labels,
            pseudo_every=args.pseudo_every,
            seed=args.seed,
            about={
                "data": str(args.data),
                "sources": args.sources,
                "command": "python -m train.prepare " + shlex.join(sys.argv[1:]),
            },
            progress=True,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = folder_size(args.out)
    print(
        f"prepared {args.out}: {meta['counts']}, {size / 2**20:.1f} MiB, {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
