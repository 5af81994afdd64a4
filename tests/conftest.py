"""Shared fixtures: the real data in ../shared/data and tiny models.

Tests that need the data skip when it is absent (a user's fresh clone) and fail
instead when HANDSEG_REQUIRE_DATA=1 (CI), so a missing folder never passes silently.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from handseg import HandUNet, load_mask
from handseg.metrics import score

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HANDSEG_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()
PHOTO_SOURCES = ("egohands", "hgr", "handphotos", "indoor")
FOREARM_SOURCES = ("hgr", "indoor")  # masks that include the bare forearm (train.run --forearm-sources)


def require_data() -> Path:
    if (DATA_DIR / "splits.csv").is_file():
        return DATA_DIR
    reason = f"real hand data not found at {DATA_DIR} (set HANDSEG_DATA to its folder)"
    if os.environ.get("HANDSEG_REQUIRE_DATA") == "1":
        pytest.fail(f"HANDSEG_REQUIRE_DATA=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data()


@pytest.fixture(scope="session")
def val_pairs(data_dir: Path) -> dict[str, list[tuple[Path, Path]]]:
    """Validation (image, mask) pairs per photo source, from splits.csv."""
    pairs: dict[str, list[tuple[Path, Path]]] = {}
    with open(data_dir / "splits.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] != "val" or row["source"] not in PHOTO_SOURCES:
                continue
            folder = data_dir / row["source"]
            image = next((folder / "images").glob(row["id"] + ".*"))
            pairs.setdefault(row["source"], []).append((image, folder / "masks" / f"{row['id']}.png"))
    return pairs


@pytest.fixture(scope="session")
def sample_photos(data_dir: Path) -> list[Path]:
    """One real photo from each photo source: several cameras, sizes and aspect ratios."""
    return [sorted((data_dir / source / "images").iterdir())[0] for source in PHOTO_SOURCES]


def dice_as_trained(predicted: np.ndarray, mask_path: Path, source: str) -> float:
    """Dice of a predicted mask against its truth read under the shipped model's label policy: the
    hand up to the wrist (HGR and indoor forearms cut at the wrist, the band there not scored)."""
    from train.labels import LabelPolicy

    truth, scored = LabelPolicy.hand_only(FOREARM_SOURCES).truth(load_mask(mask_path), source, Path(mask_path).stem)
    if scored is not None:
        predicted, truth = predicted & scored, truth & scored
    return score(predicted, truth).dice


def make_tiny_model(base_channels: int = 4, seed: int = 0, **config) -> HandUNet:
    torch.manual_seed(seed)
    return HandUNet(base_channels=base_channels, **config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub folder holding a tiny random HandUNet (fast on CPU)."""
    path = tmp_path_factory.mktemp("tiny_model")
    make_tiny_model().save_pretrained(path)
    return path
