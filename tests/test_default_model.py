"""The shipped default model: loads offline from the package, segments real hands well, and its
outputs on one real photo are pinned (a change in pre-processing or weights shows up here)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import handseg
from handseg.metrics import score
from handseg.pretrained import DEFAULT_MODEL, available_models, pretrained_path
from tests.conftest import REPO_ROOT, dice_as_trained, run_cli

pytestmark = pytest.mark.skipif(DEFAULT_MODEL is None, reason="this build ships no default model")

#: Pinned on the shipped weights (recorded when they were committed): hand probability at a few
#: pixels of hgr val photo 1_A_hgr2B_id10_1 (the middle knuckle, the bare forearm, the background, two
#: on the hand's edge), and dice against its hand-only truth (forearm cut at the wrist, as trained).
PINNED_PHOTO = ("hgr", "1_A_hgr2B_id10_1")
PINNED_PIXELS = {(198, 202): 1.0, (383, 250): 0.00115, (10, 10): 0.00121, (173, 197): 0.1478, (209, 162): 0.65725}
PINNED_DICE = 0.9812
#: Mean dice on every 4th test-split photo, hands confirmed, is 0.852 (benchmarks/targets.py, float32: 0.791 on
#: all 20; hands_v4 0.726, raw); pinned with margin, above what hands_v4 gave (0.675).
TEST_SPLIT_DICE_FLOOR = 0.78
#: Mean share marked on the 41 hand-free test photos from unseen sources: 0.02% (benchmarks/targets.py; hands_v4,
#: raw, 1.4%); a ceiling with margin that the previous default would not pass.
UNSEEN_HAND_FREE_CEILING = 0.002


def test_ships_inside_the_package_and_is_small():
    folder = pretrained_path()
    assert DEFAULT_MODEL in available_models()
    assert sorted(p.name for p in folder.iterdir() if p.suffix != ".jpg") == [
        "README.md",
        "config.json",
        "model.safetensors",
        "model_int8.onnx",  # for backend="int8" (python -m train.quantize)
    ]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 22 * 2**20  # 19.1 MiB: weights 13.9, int8 3.9
    config = json.loads((folder / "config.json").read_text())
    assert config["encoder"] == "efficientnet_lite0" and config["max_side"]
    card = (folder / "README.md").read_text()
    assert "python -m train.run" in card and "research" in card.lower()


def test_every_shipped_model_loads_by_name():
    for name in available_models():
        model = handseg.load_model(name)
        assert model is handseg.load_model(str(pretrained_path(name)))  # the same cached model
    assert handseg.load_model(DEFAULT_MODEL) is handseg.load_model()


def test_the_top_level_model_card_points_to_the_shipped_one():
    """One card, the shipped model's, in the package; model_card.md at the root links to it, and the card's
    galleries are files beside it."""
    top = (REPO_ROOT / "model_card.md").read_text()
    assert f"](handseg/pretrained/{DEFAULT_MODEL}/README.md)" in top
    shipped = (pretrained_path() / "README.md").read_text()
    images = re.findall(r"\]\((\w+\.jpg)\)", shipped)
    galleries = {"gtea", "faces", "faces_with_hands", "test", "hand_free_scenes", "gestures_held_out"}
    assert {f"{name}_gallery.jpg" for name in galleries} <= set(images)
    assert all((pretrained_path() / name).is_file() for name in images)


def test_from_pretrained_on_the_shipped_folder():
    model = handseg.HandUNet.from_pretrained(pretrained_path())
    assert isinstance(model, handseg.LiteUNet) and model.config["encoder"] == "efficientnet_lite0"
    assert sum(p.numel() for p in model.parameters()) == 3_601_681  # the figure in the model card
    assert handseg.load_model() is handseg.load_model(None)  # loaded once, reused


def test_segments_real_hands_well(val_pairs):
    """A handful of val photos per source, through segment() with no model argument."""
    for source, pairs in val_pairs.items():
        dice = [dice_as_trained(handseg.segment(img).mask, mask, source) for img, mask in pairs[:4]]
        assert np.mean(dice) > 0.75, (source, dice)


def _split_images(data_dir, source: str, split: str) -> list:
    with open(data_dir / "splits.csv", newline="") as f:
        ids = [r["id"] for r in csv.DictReader(f) if r["source"] == source and r["split"] == split]
    return [next((data_dir / source / "images").glob(f"{i}.*")) for i in ids]


def test_leaves_faces_alone(data_dir):
    """Hand-free val photos of faces and portraits (10 of the 56), through the default path: at most 2%
    of any marked as hand, and at most 1% of all but two. Two have a speck near the threshold that the
    path's precision moves: portrait deepface_img4 (float32 0.996%, bf16 1.02%, int8 1.06%) and UTKFace
    crop utkface_85_1_0 (0.16%, 0.08%, 1.79%: int8 grows a speck on the forehead into a blob)."""
    faces = [p for p in _split_images(data_dir, "negatives", "val") if not p.name.startswith("densedepth_")]
    marked = {photo.name: handseg.segment(photo).hand_fraction for photo in faces[::6]}
    assert len(marked) == 10
    assert max(marked.values()) <= 0.02, marked
    assert sum(m <= 0.01 for m in marked.values()) >= 8, marked


def test_leaves_most_of_unseen_hand_free_photos_alone(data_dir):
    """The hand-free test split (landscapes, cities, flowers, animals, old photographs from sources
    training never saw): a low mean share marked, and most photos with at most 1% marked."""
    marked = [handseg.segment(p).hand_fraction for p in _split_images(data_dir, "hand_free_scenes", "test")]
    assert len(marked) == 41
    assert np.mean(marked) < UNSEEN_HAND_FREE_CEILING, np.mean(marked)
    assert sum(m <= 0.01 for m in marked) >= 38


def test_finds_hands_in_a_scene_it_never_saw(data_dir):
    """The held-out egocentric test split (hand-only labels): dice above a floor pinned below the
    measured figure (benchmarks/targets.py), on a handful of its photos."""
    photos = _split_images(data_dir, "luthaihoc_ego", "test")[::4]
    dice = [
        score(handseg.segment(p).mask, handseg.load_mask(data_dir / "luthaihoc_ego" / "masks" / f"{p.stem}.png")).dice
        for p in photos
    ]
    assert np.mean(dice) > TEST_SPLIT_DICE_FLOOR, dice


def test_pinned_outputs(data_dir):
    """The float model's outputs (backend="torch"); the faster backends are held to it in test_backends."""
    source, name = PINNED_PHOTO
    result = handseg.segment(data_dir / source / "images" / f"{name}.jpg", backend="torch")
    mask = handseg.load_mask(data_dir / source / "masks" / f"{name}.png")
    assert result.mask.shape == mask.shape
    labels = pytest.importorskip("train.labels", reason='scoring under the label policy needs "handseg[train]"')
    truth, scored = labels.LabelPolicy.hand_only([source]).truth(mask, source, name)
    expected = json.loads((pretrained_path() / "config.json").read_text()).get("max_side")
    assert expected == handseg.load_model().max_side
    for (y, x), value in PINNED_PIXELS.items():
        assert result.probability[y, x] == pytest.approx(value, abs=2e-3), (y, x)
    assert score(result.mask & scored, truth & scored).dice == pytest.approx(PINNED_DICE, abs=2e-3)


def test_cli_uses_the_shipped_model(tmp_path, sample_photos):
    done = run_cli("segment", "-i", sample_photos[1], "-o", tmp_path / "m.png")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "m.png").size == Image.open(sample_photos[1]).size


@pytest.mark.slow
def test_from_pretrained_takes_shipped_names_from_any_folder(tmp_path):
    """As a user's script does, run from its own folder, not from the checkout."""
    code = (
        "import handseg; "
        f"m = handseg.HandUNet.from_pretrained({DEFAULT_MODEL!r}); "
        "print(m.name_or_path, sum(p.numel() for p in m.parameters())); "
        "print(handseg.available_models())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == f"{DEFAULT_MODEL} 3601681"  # hands_v4's 3,600,817 and the landmark channels' 864 weights
    assert DEFAULT_MODEL in second
    with pytest.raises(handseg.ModelNotFoundError, match=f"did you mean the shipped model {DEFAULT_MODEL}"):
        handseg.HandUNet.from_pretrained(DEFAULT_MODEL[:-1] + "9")


def test_a_result_prints_short_and_names_its_model(sample_photos):
    result = handseg.segment(sample_photos[0])
    text = repr(result)
    h, w = result.mask.shape
    backend = result.backend
    assert backend == "int8"  # on every CPU (test_backends)
    assert text == (
        f"Segmentation({w}x{h}, hand {100 * result.hand_fraction:.1f}%, model={DEFAULT_MODEL!r}, backend={backend!r})"
    )
