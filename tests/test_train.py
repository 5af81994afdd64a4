"""Training and evaluation on real photos from ../shared/data, small enough for a CPU."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

for needed in ("datasets", "scipy"):
    pytest.importorskip(needed, reason='training needs the train extra: pip install "handseg[train]"')

import datasets

import handseg
import handseg.pretrained
from handseg import load_mask
from handseg.metrics import score
from tests.conftest import REPO_ROOT, run_module
from train import run
from train.arguments import LR_FINE_TUNE, LR_FRESH, build_parser, parse_args
from train.augment import Augmenter
from train.checkpoints import STATE_FILE
from train.data import DataError, load_split
from train.labels import IGNORE
from train.loop import bce_dice_loss
from train.metrics_log import curves_figure
from train.trainset import TrainSet

TINY = ["--img-size", "64", "--base-channels", "4", "--batch-size", "8", "--workers", "0"]


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def train_command(data_dir: Path, sources: str, out: Path, epochs: int) -> list[str]:
    """`python -m train.run` on one source of the real data, tiny settings."""
    return [sys.executable, "-m", "train.run", "--data", str(data_dir), "--sources", sources, "--out", str(out),
            "--epochs", str(epochs), *TINY]  # fmt: skip


@pytest.mark.slow
def test_training_lowers_the_loss_and_writes_loadable_checkpoints(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = [
        "--data",
        str(data_dir),
        "--sources",
        "handphotos,negatives",
        "--out",
        str(out),
        "--epochs",
        "4",
        "--lr",
        "3e-3",
        "--composite",
        str(data_dir / "asl_cutouts"),
        *TINY,
    ]
    assert run.main(argv) == 0
    lines = read_metrics(out)
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert lines[0]["val_per_source"]["handphotos"]["n"] == 10
    assert set(lines[0]) >= {"train_loss", "val_dice", "val_iou", "val_per_source", "lr", "seconds"}
    # Hand-free val photos are scored as false alarms, never as dice.
    assert lines[0]["val_hand_free"]["n"] == 56 and 0 <= lines[0]["val_hand_free"]["mean_marked"] <= 1
    assert "negatives" not in lines[0]["val_per_source"]
    assert lines[0]["selection_score"] == pytest.approx(
        lines[0]["val_dice"] - lines[0]["val_hand_free"]["mean_marked"], abs=1e-5
    )
    assert (out / "curves.png").stat().st_size > 1000
    for name in ("best", "last"):
        model = handseg.HandUNet.from_pretrained(out / name)
        assert model.max_side == 64  # segment() runs it at the resolution it was trained at
        assert handseg.segment(next((data_dir / "hgr" / "images").iterdir()), model).mask.ndim == 2
    # the fine-tuned model gets the default's fast path: best/ has its int8 file, calibrated on train photos
    photo = next((data_dir / "hgr" / "images").iterdir())
    fast = handseg.segment(photo, out / "best")
    assert fast.backend == "int8"
    assert (fast.mask == handseg.segment(photo, out / "best", backend="torch").mask).mean() > 0.95
    card = (out / "best" / "README.md").read_text()
    assert "handphotos" in card and "python -m train.run" in card and "| **all** | 10 |" in card
    state = torch.load(out / "last" / STATE_FILE, weights_only=True)
    assert state["epoch"] == 4 and not state["interrupted"]


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, data_dir, capsys):
    common = ["--data", str(data_dir), "--sources", "handphotos", "--seed", "3", *TINY]
    assert run.main([*common, "--out", str(tmp_path / "straight"), "--epochs", "2"]) == 0
    assert run.main([*common, "--out", str(tmp_path / "split"), "--epochs", "1"]) == 0
    assert run.main(["--resume", str(tmp_path / "split"), "--epochs", "2"]) == 0
    capsys.readouterr()
    # Already at epoch 2: nothing to do is an error that says what to change, not a silent success.
    assert run.main(["--resume", str(tmp_path / "split"), "--epochs", "2"]) == 2
    assert "raise --epochs" in capsys.readouterr().err
    # No hand-free photos in handphotos: the card says what the epochs held, not the --mix asked for.
    card = (tmp_path / "split" / "last" / "README.md").read_text()
    assert "30 photos with hands, 0 hand-free photos, 0 composites an epoch" in card
    assert "--mix asked for 0.5/0.2/0.3" in card
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "split")
    assert len(resumed) == 2
    for a, b in zip(straight, resumed):
        for timing in ("seconds", "train_crops_per_s"):
            a.pop(timing), b.pop(timing)
        assert a == b
    w1 = handseg.HandUNet.from_pretrained(tmp_path / "straight" / "last").state_dict()
    w2 = handseg.HandUNet.from_pretrained(tmp_path / "split" / "last").state_dict()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def make_gtea_layout(root: Path, data_dir: Path, n: int = 8) -> list[tuple[Path, Path]]:
    """The original project's unzipped layout, GTEA_gaze_part/Resize/{Images,Masks_1}, masks stored 0/1."""
    images_dir, masks_dir = (
        root / "GTEA_gaze_part" / "Resize" / "Images",
        root / "GTEA_gaze_part" / "Resize" / "Masks_1",
    )
    images_dir.mkdir(parents=True)
    masks_dir.mkdir()
    pairs = []
    for i, image in enumerate(sorted((data_dir / "handphotos" / "images").iterdir())[:n]):
        mask = data_dir / "handphotos" / "masks" / f"{image.stem}.png"
        shutil.copy(image, images_dir / f"frame_{i:04d}.jpg")
        zero_one = (load_mask(mask)).astype(np.uint8)
        Image.fromarray(zero_one).save(masks_dir / f"frame_{i:04d}.png")
        pairs.append((image, mask))
    return pairs


def test_gtea_gaze_layout_with_0_1_masks(tmp_path, data_dir):
    pairs = make_gtea_layout(tmp_path, data_dir)
    images_dir = tmp_path / "GTEA_gaze_part" / "Resize" / "Images"
    shutil.copy(pairs[0][0], images_dir / "unpaired.jpg")
    Image.new("L", (10, 10)).save(tmp_path / "GTEA_gaze_part" / "Resize" / "Masks_1" / "lonely.png")
    split = load_split(tmp_path / "GTEA_gaze_part", val_percent=25, seed=0)
    assert (len(split.train), len(split.val)) == (6, 2)
    assert set(split.train["source"]) == {"gtea_gaze"}
    report = "\n".join(split.problems.report())
    assert "image without mask" in report and "unpaired.jpg" in report
    assert "mask without image" in report and "lonely.png" in report
    first = split.train[0]
    truth = handseg.load_mask(first["mask"]["path"])
    original = load_mask(pairs[int(first["id"][-4:])][1])
    assert np.array_equal(truth, original)  # 0/1 masks read as hand where 1
    out = tmp_path / "run"
    assert run.main(["--data", str(tmp_path), "--out", str(out), "--epochs", "1", "--val-percent", "25", *TINY]) == 0
    assert read_metrics(out)[0]["val_per_source"]["gtea_gaze"]["n"] == 2


def test_bad_pairs_are_reported_and_skipped(tmp_path, data_dir):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    photos = sorted((data_dir / "hgr" / "images").iterdir())[:4]
    for p in photos:
        shutil.copy(p, tmp_path / "images" / p.name)
        shutil.copy(data_dir / "hgr" / "masks" / f"{p.stem}.png", tmp_path / "masks" / f"{p.stem}.png")
    (tmp_path / "images" / photos[1].name).write_bytes(b"broken")
    Image.new("L", (7, 7)).save(tmp_path / "masks" / f"{photos[2].stem}.png")
    split = load_split(tmp_path, val_percent=0)
    assert len(split.train) == 2
    report = "\n".join(split.problems.report())
    assert "unreadable" in report and photos[1].name in report
    assert "mask size differs" in report and photos[2].name in report


def test_saved_dataset_with_own_columns(tmp_path, data_dir):
    images = sorted((data_dir / "hgr" / "images").iterdir())[:10]
    ds = (
        datasets.Dataset.from_dict(
            {
                "img": [str(p) for p in images],
                "label": [str(data_dir / "hgr" / "masks" / f"{p.stem}.png") for p in images],
            }
        )
        .cast_column("img", datasets.Image())
        .cast_column("label", datasets.Image())
    )
    parts = ds.train_test_split(test_size=3, seed=0)
    own = datasets.DatasetDict(
        train=parts["train"].select(range(5)), validation=parts["train"].select(range(5, 7)), test=parts["test"]
    )
    own.save_to_disk(str(tmp_path / "saved"))
    split = load_split(tmp_path / "saved", image_column="img", mask_column="label")
    # The dataset's own splits win, and its test split is kept apart, never used as validation.
    assert (len(split.train), len(split.val), len(split.test)) == (5, 2, 3)
    out = tmp_path / "run"
    argv = [
        "--data",
        str(tmp_path / "saved"),
        "--image-column",
        "img",
        "--mask-column",
        "label",
        "--out",
        str(out),
        "--epochs",
        "1",
        *TINY,
    ]
    assert run.main(argv) == 0
    assert read_metrics(out)[0]["val_per_source"]["saved"]["n"] == 2  # validation, not the test split


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_gpu_flag_without_cuda_exits_2(tmp_path, data_dir):
    done = run_module("train.run", "--gpu", "--data", str(data_dir), "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "CUDA" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x").exists()


def test_curves_have_whole_epoch_ticks():
    rows = [{"epoch": e, "train_loss": 1 / e, "val_dice": 0.5 + e / 10, "val_per_source": {}} for e in (1, 2)]
    figure = curves_figure(rows)
    figure.canvas.draw()
    for axes in figure.axes:
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is missing")
def test_evaluate_on_a_device_this_machine_lacks_exits_2(data_dir):
    done = run_module("train.evaluate", "--data", str(data_dir), "--sources", "handphotos", "--device", "cuda")
    assert done.returncode == 2
    assert "CUDA is not available" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path, data_dir):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*launcher, *train_command(data_dir, "handphotos", out, epochs=2)[1:]],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = read_metrics(out)
    assert [r["epoch"] for r in lines] == [1, 2]  # rank 0 alone writes
    assert lines[0]["val_per_source"]["handphotos"]["n"] == 10  # both ranks' validation images gathered
    assert handseg.HandUNet.from_pretrained(out / "best") is not None


@pytest.mark.slow
def test_sigint_saves_last_and_exits_cleanly(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        train_command(data_dir, "handphotos", out, epochs=500),  # the smallest source: the first epoch comes soon
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr and "saved" in stderr
    state = torch.load(out / "last" / STATE_FILE, weights_only=True)
    assert state["interrupted"]
    handseg.HandUNet.from_pretrained(out / "last")
    assert not list(out.glob(".*tmp"))  # no half-written folders left behind


@pytest.mark.slow
def test_evaluate_reports_known_numbers(tmp_path, data_dir, tiny_model_dir):
    """Truth masks made from the model's own predictions: perfect, half-erased, and inverted."""
    (tmp_path / "set" / "images").mkdir(parents=True)
    (tmp_path / "set" / "masks").mkdir()
    photos = sorted((data_dir / "handphotos" / "images").iterdir())[:3]
    model = handseg.load_model(tiny_model_dir, "cpu")
    # A random tiny model: threshold at its median probability so its masks mark about half of each photo.
    # float32, as train.evaluate scores by default
    threshold = float(np.median(handseg.segment(photos[0], model, backend="torch").probability))
    expected = {}
    for kind, photo in zip(("same", "half", "inverse"), photos):
        pred = handseg.segment(photo, model, threshold=threshold, backend="torch").mask
        assert 0 < pred.mean() < 1
        truth = {
            "same": pred,
            "half": np.where(np.arange(pred.shape[0])[:, None] < pred.shape[0] // 2, pred, False),
            "inverse": ~pred,
        }[kind]
        shutil.copy(photo, tmp_path / "set" / "images" / f"{kind}.jpg")
        Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "set" / "masks" / f"{kind}.png")
        expected[kind] = score(pred, truth)
    assert expected["same"].dice == 1.0 and expected["inverse"].dice == 0.0
    # A hand-free photo (empty truth): counted as a false alarm by the share it marks, never in dice.
    hand_free = sorted((data_dir / "negatives" / "images").iterdir())[0]
    marked = handseg.segment(hand_free, model, threshold=threshold, backend="torch").mask
    shutil.copy(hand_free, tmp_path / "set" / "images" / f"handfree{hand_free.suffix}")
    Image.fromarray(np.zeros(marked.shape, np.uint8)).save(tmp_path / "set" / "masks" / "handfree.png")

    done = run_module(
        "train.evaluate",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(tmp_path / "set"),
        "--split",
        "all",
        "--threshold",
        str(threshold),
        "--json",
        str(tmp_path / "eval.json"),
        "--report",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    by_id = {row["id"]: row for row in result["images"]}
    for kind, s in expected.items():
        assert by_id[kind]["dice"] == pytest.approx(s.dice)
        assert by_id[kind]["recall"] == pytest.approx(s.recall)
    mean_dice = np.mean([s.dice for s in expected.values()])
    assert result["summary"]["overall"]["dice"] == pytest.approx(mean_dice)
    assert f"| **all** | 3 | {mean_dice:.3f}" in done.stdout
    hand_free_summary = result["summary"]["overall"]["hand_free"]
    assert hand_free_summary["n"] == 1 and hand_free_summary["mean_marked"] == pytest.approx(marked.mean())
    assert hand_free_summary["above_1pct"] == int(marked.mean() > 0.01)
    assert by_id["handfree"]["hand_free"] and by_id["handfree"]["marked"] == pytest.approx(marked.mean())
    assert "mean share marked as hand" in done.stdout
    assert (tmp_path / "report" / "per_image.csv").read_text().count("\n") == 5
    assert Image.open(tmp_path / "report" / "worst.png").height > 200


@pytest.mark.slow
def test_test_split_never_reaches_training(data_dir):
    """The held-out `test` split is loaded apart, and none of its ids is in train or val."""
    split = load_split(data_dir)
    with open(data_dir / "splits.csv", newline="") as f:
        rows = list(csv.DictReader(f))  # counts come from the listing, so added photos never break this test
    listed = {(r["source"], r["id"]) for r in rows if r["split"] == "test"}
    ids = {name: set(zip(ds["source"], ds["id"])) for name, ds in [("train", split.train), ("val", split.val)]}
    assert set(zip(split.test["source"], split.test["id"])) == listed and listed
    assert not listed & ids["train"] and not listed & ids["val"]
    per_source = {s: sum(source == s for source, _ in listed) for s in sorted({source for source, _ in listed})}
    described = ", ".join(f"{s} {n}" for s, n in per_source.items())
    assert f"test {len(listed)} ({described}), not used" in split.describe()
    # What train.run trains on is split.train: its epoch draws only from those rows.
    augmenter = Augmenter(64)
    train_set = TrainSet(split.train, augmenter, 0, mix=(0.5, 0.2, 0.3))
    drawn = set(train_set.photos) | set(train_set.hand_free)
    assert drawn == set(range(len(split.train)))
    hand_free_sources = ("negatives", "hand_free_scenes")  # every mask empty (../shared/data/README.md)
    assert len(train_set.hand_free) == sum(r["split"] == "train" and r["source"] in hand_free_sources for r in rows)


def test_unknown_split_names_are_reported_not_trained(tmp_path, data_dir):
    root = tmp_path / "data"
    shutil.copytree(data_dir / "handphotos", root / "handphotos")
    ids = sorted(p.stem for p in (root / "handphotos" / "images").iterdir())
    rows = [f"handphotos,{i},{'holdout' if n < 3 else 'train'}" for n, i in enumerate(ids)]
    (root / "splits.csv").write_text("source,id,split\n" + "\n".join(rows) + "\n")
    split = load_split(root)
    assert len(split.train) == len(ids) - 3 and len(split.val) == 0
    assert "unknown split 'holdout'" in "\n".join(split.problems.report())


def test_fine_tuning_keeps_the_models_resolution_and_uses_a_gentle_learning_rate(data_dir):
    shipped = str(handseg.pretrained.pretrained_path())
    args = parse_args(["--data", str(data_dir), "--init", shipped])
    assert args.max_side == handseg.HandUNet.from_pretrained(shipped).max_side == 512
    assert args.lr == LR_FINE_TUNE < LR_FRESH
    args = parse_args(["--data", str(data_dir), "--init", shipped, "--max-side", "384", "--lr", "1e-3"])
    assert args.max_side == 384 and args.lr == 1e-3  # given flags win
    fresh = parse_args(["--data", str(data_dir)])
    assert fresh.lr == LR_FRESH and fresh.max_side == fresh.img_size
    with pytest.raises(SystemExit):
        parse_args(["--data", str(data_dir), "--init", shipped, "--encoder", "efficientnet_lite2"])


def test_help_shows_defaults_and_the_default_network_is_the_original():
    text = " ".join(build_parser().format_help().split())  # help is wrapped to the terminal
    assert "train until this epoch (also with --resume) (default: 30)" in text
    assert "(64 = the original network) (default: 64)" in text
    args = parse_args(["--data", "somewhere"])
    model = run.build_model(args)
    assert isinstance(model, handseg.OriginalUNet) and model.inc[0].out_channels == 64  # the original U-Net


def test_bce_dice_ignores_ignore_pixels():
    logits = torch.zeros(1, 1, 4, 4)
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    labels[..., :2] = IGNORE
    base = bce_dice_loss(logits, labels)
    logits[..., :2] = 50.0  # wildly wrong, but only where nothing is labelled
    assert bce_dice_loss(logits, labels) == pytest.approx(float(base))
    logits[..., 3] = 50.0  # wrong where it is labelled background
    assert bce_dice_loss(logits, labels) > base + 1


def own_folder(root: Path, data_dir: Path, n: int = 8, mask_name: str = "{stem}.png") -> Path:
    """A user's own images/ + masks/ folder of egocentric hands (EgoHands), masks named by `mask_name`."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for image in sorted((data_dir / "egohands" / "images").iterdir())[:n]:
        shutil.copy(image, root / "images" / image.name)
        mask = root / "masks" / mask_name.format(stem=image.stem)
        shutil.copy(data_dir / "egohands" / "masks" / f"{image.stem}.png", mask)
    return root


def test_masks_named_as_handseg_names_them_pair_up(tmp_path, data_dir):
    """`<stem>_mask.png`, handseg's own output naming, pairs like `<stem>.png`; the rule is said where a
    pair is missing, with the mask's folder in its path."""
    root = own_folder(tmp_path / "mydata", data_dir, mask_name="{stem}_mask.png")
    split = load_split(root, val_percent=25)
    assert len(split.train) + len(split.val) == 8 and not split.problems.report()
    Image.new("L", (10, 10)).save(root / "masks" / "orphan_mask.png")
    report = "\n".join(load_split(root, val_percent=25).problems.report())
    assert "mydata/masks/orphan_mask.png" in report and "masks/NAME_mask.png" in report
    shutil.rmtree(root / "images")
    (root / "images").mkdir()
    with pytest.raises(DataError, match="images/NAME"):
        load_split(root)


@pytest.mark.slow
def test_training_without_hand_free_photos_says_so_and_calibrates_on_hand_free_crops(tmp_path, data_dir, capsys):
    from train.quantize import choose_photos

    root = own_folder(tmp_path / "mydata", data_dir)
    out = tmp_path / "run"
    assert run.main(["--data", str(root), "--out", str(out), "--epochs", "1", "--max-steps", "1", *TINY]) == 0
    err = capsys.readouterr().err
    assert err.count("no hand-free photos in the training data") == 1 and "all-black mask" in err
    split = load_split(root, val_percent=25)
    photos = choose_photos(split.train, per_source=6)
    crops = [p for p in photos if isinstance(p, np.ndarray)]
    assert 1 <= len(crops) <= 6  # hand-free halves of the chosen photos
    assert (out / "best" / "model_int8.onnx").is_file()
    # With hand-free photos in the data, none are cut.
    shipped = load_split(data_dir, sources=["handphotos", "negatives"]).train
    assert not any(isinstance(p, np.ndarray) for p in choose_photos(shipped, per_source=2))


@pytest.mark.slow
def test_training_says_how_fast_it_ran(tmp_path, data_dir, capsys, monkeypatch):
    """Crops per second of the training loop: printed each epoch, in metrics.jsonl and in the card; bf16
    autocast only where the CPU does bf16 arithmetic (emulated bf16 is many times slower)."""
    out = tmp_path / "run"
    args = ["--data", str(data_dir), "--sources", "handphotos", "--out", str(out), "--epochs", "1", "--max-steps", "2"]
    assert run.main([*args, *TINY]) == 0
    printed, _ = capsys.readouterr()
    record = read_metrics(out)[0]
    assert record["train_crops_per_s"] > 0 and "crops/s" in printed
    assert "Throughput:" in (out / "best" / "README.md").read_text()
    again = [*args, "--overwrite"]  # the run's folder holds its files now
    parsed = parse_args(again)
    monkeypatch.setattr(handseg, "cpu_has_native_bf16", lambda: False)
    assert not run.amp_available(parsed)
    monkeypatch.setattr(handseg, "cpu_has_native_bf16", lambda: True)
    assert run.amp_available(parsed) and not run.amp_available(parse_args([*again, "--no-amp"]))


@pytest.mark.slow
def test_frozen_parts_stay_as_they_were(tmp_path, data_dir):
    """--freeze-encoder-blocks and --freeze-bn: the stem, the first blocks and every BatchNorm's statistics
    do not move while the rest trains."""
    start = tmp_path / "start"
    handseg.LiteUNet(encoder="efficientnet_lite0", decoder_channels=[16, 8, 8, 8, 8], max_side=64).save_pretrained(
        start
    )
    out = tmp_path / "run"
    flags = ["--freeze-encoder-blocks", "3", "--freeze-bn", "--no-int8"]
    tiny = ["--img-size", "64", "--batch-size", "4", "--workers", "0"]
    args = ["--data", str(data_dir), "--sources", "handphotos", "--init", str(start), "--out", str(out)]
    assert run.main([*args, "--epochs", "1", "--max-steps", "3", *tiny, *flags]) == 0
    before = handseg.HandUNet.from_pretrained(start).state_dict()
    after = handseg.HandUNet.from_pretrained(out / "last").state_dict()
    frozen = [k for k in before if k.startswith(("encoder.stem.", "encoder.blocks.0.", "encoder.blocks.2."))]
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen + statistics)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    with pytest.raises(SystemExit):
        parse_args([*args, "--freeze-encoder-blocks", "x"])
    assert run.main(["--data", str(data_dir), "--sources", "handphotos", "--out", str(tmp_path / "o"),
                     "--freeze-encoder-blocks", "2", "--epochs", "1", *TINY]) == 2  # fmt: skip


@pytest.mark.slow
def test_hands_against_faces_counts_the_landmarks_a_mask_covers(data_dir):
    """The measure needs no masks: a mask that covers every hand covers every landmark, an empty one none;
    it covers the held-out gesture people and the faces_with_hands photos where MediaPipe found a hand."""
    from train.hands_on_faces import found_hands, landmark_coverage

    hands = found_hands(data_dir)
    assert {h.source for h in hands} == {"gestures_unlabeled", "faces_with_hands"}
    assert {h.id.split("_")[0] for h in hands if h.source == "gestures_unlabeled"} <= {"tongam", "viany"}
    assert any(h.over_face for h in hands) and not all(h.over_face for h in hands)
    full = landmark_coverage(lambda path: np.ones(Image.open(path).size[::-1], bool), data_dir)
    empty = landmark_coverage(lambda path: np.zeros(Image.open(path).size[::-1], bool), data_dir)
    assert full["all"]["coverage"] == 1.0 and empty["all"]["coverage"] == 0.0
    assert full["all"]["hands"] == len(hands) and full["over_face"]["hands"] == sum(h.over_face for h in hands)


def test_a_network_grown_to_read_landmarks_starts_as_the_model_it_grew_from():
    """--init from a model that reads no landmarks, with --hand-channels 3: the first layer's new input
    channels start at zero weight, so whatever the landmarks drawn, the network computes what it did."""
    torch.manual_seed(0)
    start = handseg.create_model("lite_unet", decoder_channels=[16, 8, 8, 8, 8]).eval()
    grown = handseg.HandUNet.from_config({**start.config, "hand_channels": 3}).eval()
    grown.load_state_dict(run.with_hand_inputs(start.state_dict(), grown.state_dict()))
    image, drawn = torch.rand(2, 3, 64, 96), torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(grown(torch.cat([image, drawn], dim=1)), start(image))
