"""Every training or evaluation source becomes a `datasets.Dataset`.

Columns: `image` and `mask` (`datasets.Image(decode=False)`: a path or bytes,
decoded later by `handseg.load_image`, so training sees exactly what inference
sees), `source` and `id`. Accepted `--data` forms:

1. the original GTEA_gaze layout, `Images/*.jpg` with `Masks_1/*.png`, at the
   folder or anywhere below it;
2. a plain `images/` + `masks/` folder;
3. a folder of such folders with a `splits.csv` (`source,id,split`);
4. a saved `datasets` directory (`load_from_disk`) or a hub dataset id.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from handseg import IMAGE_FILE_SUFFIXES, hub_reachable, load_image, load_mask

FEATURES = datasets.Features(
    {
        "image": datasets.Image(decode=False),
        "mask": datasets.Image(decode=False),
        "source": datasets.Value("string"),
        "id": datasets.Value("string"),
    }
)
#: A set made by `python -m train.prepare`: the same columns plus each training photo's label map.
PREPARED_FEATURES = datasets.Features(
    {
        **FEATURES,
        # train.labels values (0 background, 1 hand, 255 not scored) at the stored size; None for
        # validation and test photos, whose labels come from their full-size mask.
        "labels": datasets.Image(decode=False),
    }
)
#: The record train.prepare writes beside the Arrow files.
PREPARED_FILE = "handseg_prepared.json"


class DataError(ValueError):
    """The data given cannot be turned into a dataset."""


@dataclass
class Problems:
    """Files left out while building a dataset, by reason; reported, never silent."""

    by_reason: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, name: str) -> None:
        self.by_reason.setdefault(reason, []).append(name)

    def report(self) -> list[str]:
        lines = []
        for reason, names in self.by_reason.items():
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            lines.append(f"skipped {len(names)} ({reason}): {shown}")
        return lines


@dataclass
class SplitData:
    """Train, validation and test datasets plus what was left out building them.

    `test` is for measuring a finished model only: training, epoch selection and
    threshold tuning never read it."""

    train: datasets.Dataset
    val: datasets.Dataset
    problems: Problems
    test: datasets.Dataset = field(default_factory=lambda: _to_dataset([]))
    #: Hand cut-outs carried by a prepared set (train.prepare --composite), for compositing.
    cutouts: datasets.Dataset | None = None
    #: How a prepared set was made (its handseg_prepared.json); None for any other data.
    prepared: dict | None = None

    def describe(self) -> str:
        def counts(ds: datasets.Dataset) -> str:
            per = {}
            for s in ds["source"]:
                per[s] = per.get(s, 0) + 1
            return ", ".join(f"{k} {v}" for k, v in sorted(per.items())) or "none"

        text = f"train {len(self.train)} ({counts(self.train)}); val {len(self.val)} ({counts(self.val)})"
        return text + (f"; test {len(self.test)} ({counts(self.test)}), not used" if len(self.test) else "")


#: How images and masks pair up, said wherever a pair is missing.
PAIRING_RULE = "images/NAME.<jpg|png|...> pairs with masks/NAME.png or masks/NAME_mask.png"


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_FILE_SUFFIXES and p.is_file()}


def _masks_by_stem(folder: Path, problems: Problems, label: str) -> dict[str, Path]:
    """Masks by the stem of the image they belong to: `NAME.png` or `NAME_mask.png` (handseg's own
    output naming) both belong to NAME; a NAME with both is reported and left out."""
    files = _files_by_stem(folder)
    masks: dict[str, Path] = {}
    for stem, path in files.items():
        image_stem = stem.removesuffix("_mask") if stem.endswith("_mask") and stem != "_mask" else stem
        if image_stem in masks:
            problems.add("two masks for one image", f"{label}/{masks[image_stem].name} and {path.name}")
            masks[image_stem] = None
            continue
        masks[image_stem] = path
    return {stem: path for stem, path in masks.items() if path is not None}


def _pair_folder(images_dir: Path, masks_dir: Path, source: str, problems: Problems, ids: Sequence[str] | None = None):
    """Rows for one images/masks folder pair, matched by name (PAIRING_RULE), each pair checked."""
    mask_label = f"{source}/{masks_dir.name}"
    images, masks = _files_by_stem(images_dir), _masks_by_stem(masks_dir, problems, mask_label)
    wanted = list(ids) if ids is not None else sorted(images)
    if ids is None:
        for stem in sorted(set(masks) - set(images)):
            problems.add(f"mask without image; {PAIRING_RULE}", f"{mask_label}/{masks[stem].name}")
    rows = []
    for stem in wanted:
        if stem not in images:
            problems.add("listed but no image" if ids is not None else "image without mask", f"{source}/{stem}")
            continue
        if stem not in masks:
            problems.add(f"image without mask; {PAIRING_RULE}", f"{source}/{images_dir.name}/{images[stem].name}")
            continue
        try:
            with Image.open(images[stem]) as img, Image.open(masks[stem]) as mask:
                image_size, mask_size = img.size, mask.size
        except (OSError, SyntaxError, ValueError):
            problems.add("unreadable image or mask", f"{source}/{images[stem].name}")
            continue
        if image_size != mask_size:
            problems.add("mask size differs from image", f"{source}/{images[stem].name}")
            continue
        rows.append({"image": str(images[stem]), "mask": str(masks[stem]), "source": source, "id": stem})
    return rows


def _find_gtea(root: Path) -> list[tuple[Path, Path]]:
    """(Images, Masks_1) folder pairs at or below root."""
    found = []
    for images_dir in sorted([root, *root.rglob("*")]):
        if images_dir.is_dir() and images_dir.name == "Images" and (images_dir.parent / "Masks_1").is_dir():
            found.append((images_dir, images_dir.parent / "Masks_1"))
    return found


def _to_dataset(rows: list[dict]) -> datasets.Dataset:
    columns = {name: [r[name] for r in rows] for name in FEATURES}
    return datasets.Dataset.from_dict(columns, features=FEATURES)


def _random_split(ds: datasets.Dataset, val_percent: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    if not 0 <= val_percent < 100:
        raise DataError(f"--val-percent must be in [0, 100), got {val_percent}")
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    n_val = round(len(ds) * val_percent / 100)
    if val_percent > 0 and len(ds) > 1:
        n_val = max(1, n_val)
    return ds.select(sorted(order[n_val:])), ds.select(sorted(order[:n_val]))


#: splits.csv names and where their rows go; any other name is reported and left out.
SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def _from_folder_of_sources(root: Path, sources: Sequence[str] | None, problems: Problems) -> dict[str, list[dict]]:
    by_source: dict[str, dict[str, list[str]]] = {}
    with open(root / "splits.csv", newline="") as f:
        reader = csv.DictReader(f)
        if not {"source", "id", "split"} <= set(reader.fieldnames or []):
            raise DataError(f"{root / 'splits.csv'}: expected columns source,id,split")
        for row in reader:
            by_source.setdefault(row["source"], {}).setdefault(row["split"], []).append(row["id"])
    if sources:
        unknown = sorted(set(sources) - set(by_source))
        if unknown:
            raise DataError(f"sources not in splits.csv: {', '.join(unknown)}; known: {', '.join(sorted(by_source))}")
    rows_by_split: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for source in sorted(by_source):
        if sources and source not in sources:
            continue
        folder = root / source
        if not (folder / "images").is_dir() or not (folder / "masks").is_dir():
            problems.add("source folder without images/ and masks/", source)
            continue
        for split, ids in by_source[source].items():
            if split not in SPLIT_NAMES:  # never guess: an unknown split could be someone's test set
                problems.add(f"unknown split {split!r} (known: {', '.join(SPLIT_NAMES)})", f"{source} ({len(ids)})")
                continue
            rows = _pair_folder(folder / "images", folder / "masks", source, problems, ids)
            rows_by_split[SPLIT_NAMES[split]].extend(rows)
    return rows_by_split


def read_prepared_info(folder: str | Path) -> dict | None:
    """The record of a set made by train.prepare, or None for any other saved dataset."""
    path = Path(folder) / PREPARED_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not a readable record of a prepared dataset ({exc})") from None


def _from_saved_or_hub(
    spec: str, image_column: str, mask_column: str, problems: Problems
) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset | None, datasets.Dataset | None]:
    path = Path(spec)
    if not path.is_dir() and not hub_reachable():
        raise DataError(
            f"{spec}: no such folder here, and the Hugging Face Hub cannot be reached to load it as a dataset id "
            "(for a prepared set, run python -m train.prepare --out FOLDER first)"
        )
    try:
        loaded = datasets.load_from_disk(str(path)) if path.is_dir() else datasets.load_dataset(spec)
        if isinstance(loaded, datasets.DatasetDict):
            for part in loaded.values():
                if len(part):
                    part[len(part) - 1]  # read the last row: a truncated Arrow file fails here, not mid-training
    except Exception as exc:  # datasets and pyarrow raise many types for a wrong id or a broken folder
        raise DataError(f"cannot load dataset {spec!r}: {type(exc).__name__}: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        train = next((loaded[k] for k in ("train",) if k in loaded), None)
        val = next((loaded[k] for k in ("validation", "val") if k in loaded), None)
        test = loaded["test"] if "test" in loaded else None
        cutouts = loaded["cutouts"] if "cutouts" in loaded else None
        if train is None:
            raise DataError(f"{spec}: no 'train' split among {list(loaded)}")
    else:
        train, val, test, cutouts = loaded, None, None, None

    def normalize(ds: datasets.Dataset) -> datasets.Dataset:
        for column in (image_column, mask_column):
            if column not in ds.column_names:
                raise DataError(f"{spec}: no column {column!r}; columns: {', '.join(ds.column_names)}")
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
        ds = ds.cast_column(mask_column, datasets.Image(decode=False))
        source = ds["source"] if "source" in ds.column_names else [path.name or spec] * len(ds)
        ids = ds["id"] if "id" in ds.column_names else [str(i) for i in range(len(ds))]
        columns = {"image": ds[image_column], "mask": ds[mask_column], "source": source, "id": [str(i) for i in ids]}
        if "labels" in ds.column_names:  # a prepared set's label maps
            return datasets.Dataset.from_dict({**columns, "labels": ds["labels"]}, features=PREPARED_FEATURES)
        return datasets.Dataset.from_dict(columns, features=FEATURES)

    return (
        normalize(train),
        normalize(val) if val is not None else None,
        normalize(test) if test is not None else None,
        normalize(cutouts) if cutouts is not None else None,
    )


def load_split(
    data: str | Path,
    *,
    val_percent: float = 10.0,
    seed: int = 0,
    sources: Sequence[str] | None = None,
    image_column: str = "image",
    mask_column: str = "mask",
) -> SplitData:
    """Build train/val datasets from any accepted `--data` form.

    An explicit split (splits.csv, or the dataset's own validation split) wins;
    otherwise `val_percent` of the pairs, chosen with `seed`, become validation.
    A `test` split is kept apart in `.test`: never trained on, never used to choose.
    """
    problems = Problems()
    root = Path(data)
    explicit_val = explicit_test = None
    if root.is_dir() and (root / "splits.csv").is_file():
        rows = _from_folder_of_sources(root, sources, problems)
        return _finish(
            SplitData(_to_dataset(rows["train"]), _to_dataset(rows["val"]), problems, _to_dataset(rows["test"]))
        )
    if root.is_dir() and (root / "images").is_dir() and (root / "masks").is_dir():
        everything = _to_dataset(_pair_folder(root / "images", root / "masks", root.name, problems))
    elif root.is_dir() and (gtea := _find_gtea(root)):
        rows = []
        for images_dir, masks_dir in gtea:
            rows += _pair_folder(images_dir, masks_dir, "gtea_gaze", problems)
        everything = _to_dataset(rows)
    elif root.is_dir() and not any((root / n).exists() for n in ("dataset_info.json", "dataset_dict.json")):
        raise DataError(
            f"{root}: no data found: expected Images/ + Masks_1/ (GTEA_gaze), images/ + masks/, "
            "a folder of those with splits.csv, or a saved datasets directory"
        )
    else:
        everything, explicit_val, explicit_test, cutouts = _from_saved_or_hub(
            str(data), image_column, mask_column, problems
        )
        prepared = read_prepared_info(root) if root.is_dir() else None
        if sources:  # a saved set holds every source it was made from: keep those asked for
            everything, explicit_val, explicit_test = (
                _only_sources(ds, sources) for ds in (everything, explicit_val, explicit_test)
            )
        test = explicit_test if explicit_test is not None else _to_dataset([])
        if explicit_val is not None:
            return _finish(SplitData(everything, explicit_val, problems, test, cutouts, prepared))
        train, val = _random_split(everything, val_percent, seed)
        return _finish(SplitData(train, val, problems, test, cutouts, prepared))
    train, val = _random_split(everything, val_percent, seed)
    return _finish(SplitData(train, val, problems, _to_dataset([])))


def _only_sources(ds: datasets.Dataset | None, sources: Sequence[str]) -> datasets.Dataset | None:
    if ds is None:
        return None
    wanted = set(sources)
    return ds.select([i for i, s in enumerate(ds["source"]) if s in wanted])


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that choose data, shared by train.run and train.evaluate."""
    parser.add_argument(
        "--data",
        help="GTEA_gaze folder, images/+masks/ folder, folder with splits.csv, "
        "saved datasets directory or hub dataset id",
    )
    parser.add_argument("--sources", help="comma-separated sources to use from a splits.csv folder (default: all)")
    parser.add_argument("--val-percent", type=float, default=10.0, help="validation share when the data has no split")
    parser.add_argument("--seed", type=int, default=0, help="seed of that split (and, in training, of everything)")
    parser.add_argument("--image-column", default="image", help="image column of a saved or hub dataset")
    parser.add_argument("--mask-column", default="mask", help="mask column of a saved or hub dataset")


def load_split_from_args(args: argparse.Namespace) -> SplitData:
    return load_split(
        args.data,
        val_percent=args.val_percent,
        seed=args.seed,
        sources=args.sources.split(",") if args.sources else None,
        image_column=args.image_column,
        mask_column=args.mask_column,
    )


def _finish(split: SplitData) -> SplitData:
    if len(split.train) == 0 and len(split.val) == 0 and len(split.test) == 0:
        found = "; ".join(split.problems.report()) or f"no files ({PAIRING_RULE})"
        raise DataError(f"no usable image/mask pairs found; {found}")
    return split


def image_input(cell: dict) -> bytes | str:
    """What `handseg.load_image` should read for one `Image(decode=False)` cell."""
    return cell["bytes"] if cell.get("bytes") else cell["path"]


def load_pair(example: dict) -> tuple[np.ndarray, np.ndarray]:
    """An example's RGB image and bool mask, decoded by handseg like every input."""
    return load_image(image_input(example["image"])), load_mask(image_input(example["mask"]))


def mask_is_empty(example: dict) -> bool:
    """True for a hand-free photo (an all-zero mask), read without decoding the image."""
    cell = example["mask"]
    with Image.open(io.BytesIO(cell["bytes"]) if cell.get("bytes") else cell["path"]) as mask:
        return mask.convert("L").getbbox() is None
