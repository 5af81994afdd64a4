"""Prepared training sets (python -m train.prepare): the same pixels and labels as reading the photos,
clear errors for a missing or broken one, train.run reading one, and the GPU job's CPU smoke test."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

for needed in ("datasets", "scipy"):
    pytest.importorskip(needed, reason='training needs the train extra: pip install "handseg[train]"')

from tests.conftest import REPO_ROOT, run_module
from train.augment import fit_longer_side
from train.data import SplitData, load_pair, load_split
from train.labels import LabelPolicy
from train.prepare import prepare

TINY = ["--img-size", "64", "--base-channels", "4", "--batch-size", "8", "--workers", "0"]

# Starts processes (training, Ray, the app's server): the full run, not the fast lane.
pytestmark = pytest.mark.slow


def few_photos(data_dir: Path) -> SplitData:
    """Three HGR photos (forearms cut at the wrist by the policy), two hand-free ones, two val photos."""
    split = load_split(data_dir, sources=["hgr", "negatives"])
    sources = split.train["source"]
    rows = [i for i, s in enumerate(sources) if s == "hgr"][:3] + [i for i, s in enumerate(sources) if s != "hgr"][:2]
    return SplitData(split.train.select(rows), split.val.select(range(2)), split.problems)


def labels_of(row: dict) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(row["labels"]["bytes"])))


def test_round_trip_gives_the_photos_masks_and_labels_resized_as_read_directly(tmp_path, data_dir):
    split = few_photos(data_dir)
    policy = LabelPolicy.hand_only(["hgr", "indoor"])
    prepare(split, tmp_path / "png", policy=policy, side=300, quality=None)
    prepare(split, tmp_path / "jpeg", policy=policy, side=300, quality=90)
    lossless, jpeg = load_split(tmp_path / "png"), load_split(tmp_path / "jpeg")
    assert lossless.prepared["side"] == 300 and lossless.prepared["label_policy"] == "hand"
    assert len(lossless.train) == 5 and len(lossless.val) == 2
    for i in range(len(split.train)):
        example = split.train[i]
        rgb, mask = load_pair(example)
        expected_rgb, expected_labels = fit_longer_side(rgb, policy.labels(mask, example["source"], example["id"]), 300)
        expected_mask = fit_longer_side(rgb, mask, 300)[1]
        for prepared in (lossless, jpeg):
            row = prepared.train[i]
            got_rgb, got_mask = load_pair(row)
            assert (row["source"], row["id"]) == (example["source"], example["id"])
            assert np.array_equal(got_mask, expected_mask) and np.array_equal(labels_of(row), expected_labels)
        assert np.array_equal(load_pair(lossless.train[i])[0], expected_rgb)  # PNG: the very same pixels
        jpeg_error = np.abs(load_pair(jpeg.train[i])[0].astype(int) - expected_rgb).mean()
        assert jpeg_error < 2.5, jpeg_error  # JPEG q90: within a few levels of 255
    # Validation photos travel as their original bytes: scored at full resolution, as before.
    assert lossless.val[0]["image"]["bytes"] == Path(split.val[0]["image"]["path"]).read_bytes()
    assert lossless.val[0]["labels"] is None


def test_train_run_reads_a_prepared_set_and_refuses_one_made_differently(tmp_path, data_dir):
    prepared = tmp_path / "hands"
    done = run_module("train.prepare", "--data", str(data_dir), "--sources", "handphotos,negatives",
                      "--side", "64", "--out", str(prepared))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "prepared" in done.stdout and "MiB" in done.stdout
    out = tmp_path / "run"
    done = run_module("train.run", "--data", str(prepared), "--out", str(out), "--epochs", "1", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "prepared data: jpeg q90 at 64 px" in done.stderr
    assert (out / "best" / "model.safetensors").is_file()
    done = run_module("train.run", "--data", str(prepared), "--out", str(tmp_path / "x"), "--label-policy",
                      "as-labelled", *TINY)  # fmt: skip
    assert done.returncode == 2 and "prepared differently" in done.stderr and "Traceback" not in done.stderr
    done = run_module("train.prepare", "--data", str(data_dir), "--sources", "handphotos", "--out", str(prepared))
    assert done.returncode == 2 and "not empty" in done.stderr


def test_a_missing_or_broken_prepared_set_is_a_clear_error(tmp_path, data_dir):
    done = run_module("train.run", "--data", str(tmp_path / "cache" / "hands512"), "--out", str(tmp_path / "x"),
                      env={"HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no such folder" in done.stderr and "train.prepare" in done.stderr
    prepared = tmp_path / "hands"
    prepare(few_photos(data_dir), prepared, policy=LabelPolicy(), side=64)
    arrow = next((prepared / "train").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])  # a copy cut short
    done = run_module("train.run", "--data", str(prepared), "--out", str(tmp_path / "x"), *TINY)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot load dataset" in done.stderr


@pytest.mark.skipif(shutil.which("bash") is None, reason="the GPU job is a bash script")
def test_gpu_job_starts_and_runs_two_steps_on_cpu(tmp_path, data_dir):
    """train/gpu_job.sh is for a lent GPU machine; on the CPU it must start, train two steps and leave
    the model, its log and metrics where a device run brings them back from."""
    prepared = tmp_path / "hands"
    split = load_split(data_dir, sources=["handphotos", "negatives"])
    prepare(SplitData(split.train, split.val.select(range(4)), split.problems), prepared,
            policy=LabelPolicy.hand_only(["hgr", "indoor"]), side=64)  # fmt: skip
    out = tmp_path / "out"
    done = subprocess.run(
        ["bash", "train/gpu_job.sh", str(prepared), *TINY],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
        env={**os.environ, "DEVICE": "cpu", "MAX_STEPS": "2", "EPOCHS": "3", "OUT": str(out), "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {"config.json", "model.safetensors", "model_card.md", "metrics.jsonl", "curves.png", "train.log"} <= {
        p.name for p in out.iterdir()
    }
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # two steps end the run inside its first epoch
