"""A result saves, draws and describes itself (`handseg.results`), and splits its mask by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import handseg
from handseg.results import VIEW_MAX_PIXELS, label_hands
from tests.conftest import run_cli


def test_a_result_saves_draws_and_describes_itself_as_the_command_line_does(tmp_path, sample_photos, tiny_model_dir):
    """`Segmentation.save` writes what `handseg segment --overlay --viz` writes, under the same names and
    with the same pixels; `overlay()` is the overlay's picture; `to_dict()` is JSON-ready and true."""
    photo = sample_photos[2]
    done = run_cli("segment", "-i", photo, "-o", tmp_path / "cli", "--overlay", "--viz", "--model", tiny_model_dir)
    assert done.returncode == 0, done.stderr
    result = handseg.segment(photo, tiny_model_dir)
    written = result.save(tmp_path / "py" / f"{photo.stem}_mask.png", overlay=True, viz=True)
    assert [p.name for p in written] == [f"{photo.stem}_{kind}.png" for kind in ("mask", "overlay", "viz")]
    for path in written:
        assert np.array_equal(np.array(Image.open(path)), np.array(Image.open(tmp_path / "cli" / path.name))), path
    assert np.array_equal(np.array(Image.open(written[1])), result.overlay())
    summary = json.loads(json.dumps(result.to_dict()))
    height, width = result.mask.shape
    hands = summary.pop("hands")
    assert summary == {
        "source": str(photo), "width": width, "height": height, "hand_fraction": result.hand_fraction,
        "hand_pixels": int(result.mask.sum()), "model": str(tiny_model_dir), "backend": result.backend,
        "verified": True, "unexplained_pixels": 0,
    }  # fmt: skip
    assert [hand["pixels"] for hand in hands] == [hand.pixels for hand in result.hands]
    assert sum(hand["pixels"] for hand in hands) == summary["hand_pixels"]  # hands confirmed: all of the mask
    with pytest.raises(ValueError, match="lossy"):
        result.save(tmp_path / "mask.jpg")


def test_a_viz_panel_of_a_huge_photo_is_one_people_can_open(tmp_path, sample_photos, tiny_model_dir):
    """`--viz` on a 6000x4000 photo (three panels: 72 MP at full size) writes a panel of at most 16 MP,
    in the photo's proportions, that Pillow opens without its decompression-bomb warning."""
    import warnings

    big = tmp_path / "big.jpg"
    Image.open(sample_photos[0]).convert("RGB").resize((6000, 4000)).save(big, quality=90)
    done = run_cli("segment", "-i", str(big), "--viz", "--model", str(tiny_model_dir), "-q")
    assert done.returncode == 0, done.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        panel = Image.open(tmp_path / "big_viz.png")
        panel.load()
    assert panel.width * panel.height <= VIEW_MAX_PIXELS
    assert abs(panel.height / ((panel.width - 16) / 3) - 4000 / 6000) < 0.01  # three panels, two 8 px gaps
    assert Image.open(tmp_path / "big_mask.png").size == (6000, 4000)  # the mask stays at full size


def test_label_hands_gives_each_pixel_to_the_nearest_skeleton():
    mask = np.zeros((100, 200), bool)
    mask[40:60, 10:90] = mask[40:60, 110:190] = True
    mask[0:5, 0:5] = True  # far from both hands
    left = np.zeros((21, 2), np.float32) + [50, 50]
    left[:, 0] += np.linspace(-30, 30, 21)
    right = left + [100, 0]
    labels = label_hands(mask, [left, right])
    assert (labels[45, 20:80] == 1).all() and (labels[45, 120:180] == 2).all() and (labels[0:5, 0:5] == 3).all()
    assert np.array_equal(labels > 0, mask)
    assert np.array_equal(label_hands(mask, []) > 0, mask)  # no hand found: one entry, all of the mask
    # Without `unexplained`, what no hand explains is left out; the hands' own pixels are labelled as before.
    explained_only = label_hands(mask, [left, right], unexplained=False)
    assert (explained_only[0:5, 0:5] == 0).all()
    assert np.array_equal(explained_only, np.where(labels == 3, 0, labels))
