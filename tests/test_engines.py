"""Whole datasets through `datasets.map` and Ray Data, on a small real set: twenty shared photos with
hands and without, and one corrupt file."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import handseg
from handseg import load_mask
from tests.conftest import run_cli

# Starts processes (training, Ray, the app's server): the full run, not the fast lane.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photo_folder(data_dir, tmp_path_factory) -> Path:
    """Twenty real photos (EgoHands, HGR, hand photos, faces, scenes) and one file that is no image."""
    folder = tmp_path_factory.mktemp("photos")
    for source, count in (("egohands", 5), ("hgr", 5), ("handphotos", 4), ("negatives", 4), ("hand_free_scenes", 2)):
        for path in sorted((data_dir / source / "images").iterdir())[:count]:
            shutil.copy(path, folder / path.name)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


def test_datasets_map_adds_the_masks_segment_gives(photo_folder, tmp_path):
    datasets = pytest.importorskip("datasets", reason='needs the train extra: pip install "handseg[train]"')
    paths = sorted(str(p) for p in photo_folder.iterdir())
    source = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image(decode=False))
    source.save_to_disk(tmp_path / "ds")
    ds = datasets.load_from_disk(tmp_path / "ds")  # on disk: map results are cached beside it
    first = ds.map(handseg.HandSegmenter(), batched=True, batch_size=4, num_proc=2)
    assert first.features["mask"] == datasets.Image()  # stored as PNG images in the dataset
    failed = [(p, e) for p, e in zip(paths, first["handseg_error"]) if e]
    assert [p for p, _ in failed] == [str(photo_folder / "corrupt.jpg")]
    assert failed[0][1].startswith("corrupt.jpg: ") and "broken" in failed[0][1]  # named as the dataset names it
    for path, row in zip(paths, first):
        if row["handseg_error"]:
            assert row["mask"] is None
            continue
        expected = handseg.segment(path)
        assert np.array_equal(load_mask(row["mask"]), expected.mask), path
        # each hand, as `handseg segment --hands` writes it: the label image and the JSON
        assert np.array_equal(np.array(row["hand_labels"]), expected.hand_labels), path
        assert json.loads(row["hands"]) == expected.to_dict()["hands"], path
    # The same map again is read from datasets' cache: nothing is computed twice.
    again = ds.map(handseg.HandSegmenter(), batched=True, batch_size=4, num_proc=2)
    assert again.cache_files == first.cache_files and again._fingerprint == first._fingerprint
    # Another model or threshold is another computation.
    other = ds.map(handseg.HandSegmenter(threshold=0.7), batched=True, batch_size=4)
    assert other._fingerprint != first._fingerprint


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason='needs the ray extra: pip install "handseg[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_job_writes_the_masks_segment_gives_and_resumes(local_ray, photo_folder, tmp_path):
    from handseg.cli.ray import FAILURES_FILE

    out = tmp_path / "masks"
    done = run_cli("ray", "-i", photo_folder, "-o", out, "--actors", "2", "--batch-size", "4")
    assert done.returncode == 1
    good = sorted(p for p in photo_folder.iterdir() if p.name != "corrupt.jpg")
    assert f"{len(good)} masks written to {out}, 0 skipped (output already there), 1 of 21 inputs failed" in done.stderr
    what = "handunet_lite0.hands_v5: int8 on cpu, 1 thread, working side 512, reads hand landmarks"
    assert f"{what}, hands confirmed (each of 2 actors)" in done.stderr
    with open(out / FAILURES_FILE, newline="") as f:
        failures = list(csv.DictReader(f))
    assert [row["path"] for row in failures] == [str(photo_folder / "corrupt.jpg")]
    assert failures[0]["reason"].startswith("the image data is broken")  # the path has its own column
    for photo in good:
        assert np.array_equal(load_mask(out / f"{photo.stem}_mask.png"), handseg.segment(photo).mask), photo.name
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.png")}
    # A second run: refused without a choice, then with --skip-existing it writes nothing new and says so.
    again = run_cli("ray", "-i", photo_folder, "-o", out)
    assert again.returncode == 2 and "exist already" in again.stderr
    resumed = run_cli("ray", "-i", photo_folder, "-o", out, "--skip-existing")
    assert resumed.returncode == 1  # corrupt.jpg again
    assert f"0 masks written to {out}, {len(good)} skipped" in resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.png")} == stamps


def test_ray_job_takes_the_segment_commands_flags(local_ray, photo_folder, tmp_path):
    """`handseg ray` shares `handseg segment`'s model flags (--max-side, --crf, --threshold, ...): the same
    photo gives the same mask either way; `python -m handseg.ray` is the same command."""
    photos = sorted(p for p in photo_folder.glob("*.jpg") if p.name != "corrupt.jpg")[:2]
    flags = ["--max-side", "256", "--threshold", "0.6"]
    done = run_cli("ray", "-i", *photos, "-o", tmp_path / "ray", *flags, "-q")
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr
    assert run_cli("segment", "-i", *photos, "-o", tmp_path / "cli", *flags).returncode == 0
    for photo in photos:
        name = f"{photo.stem}_mask.png"
        assert np.array_equal(load_mask(tmp_path / "ray" / name), load_mask(tmp_path / "cli" / name)), photo.name
    help_text = subprocess.run([sys.executable, "-m", "handseg.ray", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "usage: handseg ray" in help_text.stdout and "--crf" in help_text.stdout


def test_the_output_of_a_ray_job_is_never_an_input(local_ray, photo_folder, tmp_path):
    photo = tmp_path / "a.png"
    Image.open(next(photo_folder.glob("*.jpg"))).save(photo)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.open(photo).save(masks / "a_mask.png")  # a photo that happens to be named like a mask
    before = (masks / "a_mask.png").read_bytes()
    done = run_cli("ray", "-i", photo, masks / "a_mask.png", "-o", masks, "--overwrite")
    assert done.returncode == 2 and "never writes over its inputs" in done.stderr
    assert (masks / "a_mask.png").read_bytes() == before


def test_hand_segmenter_on_ray_data_read_images(local_ray, photo_folder):
    """The same callable class with Ray Data's own reader: one model per actor, masks as arrays."""
    good = sorted(str(p) for p in photo_folder.iterdir() if p.name != "corrupt.jpg")[::4]
    dataset = local_ray.data.read_images(good, include_paths=True, mode="RGB")
    rows = dataset.map_batches(
        handseg.HandSegmenter, fn_constructor_kwargs={"mask_format": "array"}, concurrency=1, batch_size=2
    ).take_all()
    assert len(rows) == len(good)
    for row in rows:
        assert not row["handseg_error"]
        assert np.array_equal(load_mask(row["mask"]), handseg.segment(row["image"]).mask), row["path"]


FORKED_AFTER_TORCH_THREADS = """
import json, sys, multiprocessing
import datasets, numpy as np, handseg

photos = sys.argv[1:]
parent = handseg.Segmenter(backend="torch", threads=2)
in_parent = [int(parent(p).mask.sum()) for p in photos]  # torch's thread team has run in this process
default = handseg.Segmenter(threads=2)  # the default path (int8 here): an onnxruntime session made here
by_default = [int(default(p).mask.sum()) for p in photos]

def in_child(path):
    return int(parent(path).mask.sum()), parent.runner_threads(), int(default(path).mask.sum())

ds = datasets.Dataset.from_dict({"image": photos}).cast_column("image", datasets.Image(decode=False))
mapped = ds.map(handseg.HandSegmenter(), batched=True, batch_size=2, num_proc=2)
with multiprocessing.get_context("fork").Pool(2) as pool:
    inherited = pool.map(in_child, photos)
print(json.dumps({
    "in_parent": in_parent,
    "inherited": inherited,
    "mapped": [int(handseg.load_mask(m).sum()) for m in mapped["mask"]],
    "by_default": by_default,
    "default": [int(handseg.segment(p).mask.sum()) for p in photos],
}))
"""


def test_forked_workers_run_after_the_parent_used_torch_threads(photo_folder):
    """A process that has run torch on two threads, then forks (datasets.map(num_proc=2), a fork Pool):
    the workers used to hang for ever (GNU OpenMP cannot start a thread team again after a fork). Now they
    finish, with the parent's masks; torch in a forked child runs one thread and says so."""
    pytest.importorskip("datasets", reason='needs the train extra: pip install "handseg[train]"')
    photos = [str(p) for p in sorted(photo_folder.iterdir()) if p.name != "corrupt.jpg"][:4]
    done = subprocess.run(
        [sys.executable, "-c", FORKED_AFTER_TORCH_THREADS, *photos], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [area for area, _, _ in result["inherited"]] == result["in_parent"]
    assert {threads for _, threads, _ in result["inherited"]} == {1}
    assert [area for _, _, area in result["inherited"]] == result["by_default"]  # the parent's session, in a child
    assert result["mapped"] == result["default"] and sum(result["default"]) > 0


@pytest.mark.slow
def test_ray_job_checks_its_inputs_first_and_keeps_rays_lines_out(tmp_path, sample_photos):
    """As a user runs it (a process of its own, starting Ray): a missing folder is one line before Ray
    starts, with no output folder made; a real run prints handseg's lines only (Ray's with -v)."""
    pytest.importorskip("ray", reason='needs the ray extra: pip install "handseg[ray]"')
    missing = run_cli("ray", "-i", str(tmp_path / "nofolder"), "-o", str(tmp_path / "out"), process=True)
    assert missing.returncode == 2
    assert missing.stderr == f"handseg ray: error: {tmp_path / 'nofolder'}: no such file or folder\n"
    assert not (tmp_path / "out").exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(sample_photos[1], photos)
    done = run_cli("ray", "-i", str(photos), "-o", str(tmp_path / "out"), process=True)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("handseg ray: ") for line in lines), lines
    assert lines[-1] == f"handseg ray: 1 mask written to {tmp_path / 'out'}, 0 skipped (output already there), 0 failed"
