"""Shared fixtures: the real data in ../shared/data and tiny models.

Tests that need the data skip when it is absent (a user's fresh clone) and fail
instead when HANDSEG_REQUIRE_DATA=1 (CI), so a missing folder never passes silently.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import handseg
from handseg import HandUNet, load_mask
from handseg.metrics import score
from train import DEFAULT_DATA

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = DEFAULT_DATA.resolve()
PHOTO_SOURCES = ("egohands", "hgr", "handphotos", "indoor")
#: The shipped model whose int8 file the int8 tests' floors were measured on, and that every CPU backend
#: runs in tests of backends (an image-only network: its masks differ between backends on a GTEA frame).
INT8_MODEL = "handunet_lite0.hands_v4"
FOREARM_SOURCES = ("hgr", "indoor")  # masks that include the bare forearm (train.run --forearm-sources)


@dataclass
class CliRun:
    """What a `handseg` command did: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, process: bool = False, env: dict | None = None, timeout: float = 300) -> CliRun:
    """`handseg ARGS...`: in this process (`handseg.cli.main`, what the console script runs) unless
    `process` (a fresh interpreter: for what only a process shows, such as its environment, Ctrl-C or a
    package hidden from it) or `env` is given."""
    if process or env is not None:
        done = subprocess.run(
            [sys.executable, "-m", "handseg", *args], capture_output=True, text=True, timeout=timeout, env=env
        )
        return CliRun(done.returncode, done.stdout, done.stderr)
    from handseg.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, --version, usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return CliRun(code, out.getvalue(), err.getvalue())


def run_module(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m ARGS...` from the repository root, as its docs run it (train.run, train.prepare, ...)."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


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
    pytest.importorskip("scipy", reason='scoring under the label policy needs the train extra: "handseg[train]"')
    from train.labels import LabelPolicy

    truth, scored = LabelPolicy.hand_only(FOREARM_SOURCES).truth(load_mask(mask_path), source, Path(mask_path).stem)
    if scored is not None:
        predicted, truth = predicted & scored, truth & scored
    return score(predicted, truth).dice


def write_clip(path: Path, photo: np.ndarray, frames: int) -> Path:
    """A 320x240 MPEG-4 clip at 10 frames/s panning over `photo` (RGB, at least 400x300), one step a frame."""
    import av

    step_y, step_x = (photo.shape[0] - 240) // max(1, frames), (photo.shape[1] - 320) // max(1, frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            y, x = i * step_y, i * step_x
            picture = np.ascontiguousarray(photo[y : y + 240, x : x + 320])
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_tiny_model(base_channels: int = 4, seed: int = 0, **config) -> HandUNet:
    """A HandUNet small enough for a CPU test: the original U-Net at `base_channels`, or the network
    `config` names (an `encoder`: the Lite U-Net, whose width is its decoder_channels)."""
    torch.manual_seed(seed)
    if "encoder" in config:
        return handseg.create_model("lite_unet", **config).eval()
    return handseg.create_model("original_unet", base_channels=base_channels, **config).eval()


@pytest.fixture(scope="session")
def photo(sample_photos: list[Path]) -> np.ndarray:
    """A real photo as RGB: an HGR gesture photo, 400x604."""
    from PIL import Image

    return np.array(Image.open(sample_photos[1]).convert("RGB"))


@pytest.fixture(scope="session")
def gtea_frame(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1918x1280 JPEG of real hands: an EgoHands photo at GTEA_gaze's frame size, the original project's."""
    from PIL import Image

    photo = sorted((data_dir / "egohands" / "images").glob("*.jpg"))[5]
    path = tmp_path_factory.mktemp("frame") / "frame.jpg"
    Image.open(photo).convert("RGB").resize((1918, 1280), Image.BILINEAR).save(path, quality=90)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub folder holding a tiny random HandUNet (fast on CPU)."""
    path = tmp_path_factory.mktemp("tiny_model")
    make_tiny_model().save_pretrained(path)
    return path
