"""Training labels and compositing: the label policy's wrist cut and pasted hands whose masks
follow the pasted pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest

import handseg
from handseg.image import load_mask
from train.composite import HandCutout, PasteSettings, cutouts_from_photo, paste_hand, paste_hands
from train.data import load_split
from train.evaluate import score_predictions
from train.labels import BACKGROUND, HAND, IGNORE, LabelPolicy, cut_at_landmarks, cut_at_wrist


def arm_and_palm(height: int = 200, width: int = 120) -> np.ndarray:
    """A forearm (a 24 px wide strip) entering from the bottom edge, ending in a round palm."""
    mask = np.zeros((height, width), bool)
    mask[80:, 48:72] = True
    yy, xx = np.mgrid[:height, :width]
    mask |= (yy - 60) ** 2 + (xx - 60) ** 2 <= 30**2
    return mask


def test_wrist_cut_keeps_the_hand_and_drops_the_far_forearm():
    mask = arm_and_palm()
    labels = cut_at_wrist(mask)
    assert (labels[~mask] == BACKGROUND).all()  # nothing outside the mask becomes hand
    assert (labels[40:80, 40:80] == HAND).all()  # the palm
    assert (labels[190:, 48:72] == BACKGROUND).all()  # the forearm at the frame edge
    assert (labels[mask] == IGNORE).any()  # and a band between them, left unlabelled


def test_wrist_cut_leaves_a_hand_that_does_not_reach_the_edge():
    mask = arm_and_palm()
    mask[-5:] = False  # the arm stops inside the frame (a sleeve, say)
    assert (cut_at_wrist(mask) == np.where(mask, HAND, BACKGROUND)).all()


def solid_cutout(colour=(200, 150, 120), size: int = 60) -> HandCutout:
    yy, xx = np.mgrid[:size, :size]
    shape = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (size / 2 - 2) ** 2
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[shape] = colour
    return HandCutout(rgb, np.where(shape, HAND, BACKGROUND).astype(np.uint8), shape, "bottom")


@pytest.mark.parametrize("seed", range(6))
def test_pasted_mask_follows_the_pasted_pixels_exactly(seed):
    rng = np.random.default_rng(seed)
    background = np.full((120, 160, 3), 60, np.uint8)
    labels = np.zeros((120, 160), np.uint8)
    out, new_labels, alpha = paste_hand(background, labels, solid_cutout(), rng, PasteSettings(blur_prob=0))
    assert (alpha > 0).any()
    assert ((new_labels == HAND) == (alpha >= 0.5)).all()  # hand exactly where the hand's pixels dominate
    assert (out[alpha == 0] == background[alpha == 0]).all()  # untouched elsewhere: no halo
    assert (out[alpha >= 0.99] != 60).any(axis=-1).all()  # the hand's own pixels where it is opaque


def test_paste_onto_a_real_face_with_a_real_hand(data_dir):
    face = handseg.load_image(sorted((data_dir / "negatives" / "images").iterdir())[0])
    photo = sorted((data_dir / "hgr" / "images").iterdir())[0]
    rgb, mask = handseg.load_image(photo), handseg.load_mask(data_dir / "hgr" / "masks" / f"{photo.stem}.png")
    cutouts = cutouts_from_photo(rgb, mask, cut_at_wrist(mask))
    assert cutouts
    out, labels = paste_hands(face, np.zeros(face.shape[:2], np.uint8), cutouts, np.random.default_rng(1))
    assert out.shape == face.shape and labels.shape == face.shape[:2]
    assert (labels == HAND).mean() > 0.01 and (out != face).any()


def test_validation_scores_forearm_sources_under_the_label_policy(data_dir):
    """A prediction that is exactly the hand up to the wrist is perfect under the policy training
    follows, and is penalised only against the source's own hand-plus-forearm masks."""
    split = load_split(data_dir, sources=["hgr"])
    masks = [load_mask(split.val[i]["mask"]["path"]) for i in range(len(split.val))]
    rows = [i for i, m in enumerate(masks) if ((cut_at_wrist(m) == BACKGROUND) & m).any()]  # a forearm was cut
    example = split.val.select(rows[:1])
    truth = load_mask(example[0]["mask"]["path"])

    def hand_only(ex: dict) -> np.ndarray:
        return cut_at_wrist(truth) == HAND

    as_labelled = score_predictions(example, hand_only)[0]
    policy = score_predictions(example, hand_only, policy=LabelPolicy(frozenset({"hgr"})))[0]
    assert policy["dice"] == pytest.approx(1.0) and as_labelled["dice"] < 0.99


def test_landmark_cut_follows_the_hand_axis():
    """Wrist at y=90, middle knuckle 40 px above it: the palm stays hand, the forearm below the wrist
    becomes a short unlabelled band and then background."""
    mask = arm_and_palm()
    labels = cut_at_landmarks(mask, [(60.0, 90.0, 60.0, 50.0)])
    assert (labels[40:80, 40:80] == HAND).all()
    assert (labels[100:110, 48:72] == IGNORE).all()  # 0.25-0.5 lengths behind the wrist
    assert (labels[120:, 48:72] == BACKGROUND).all()  # beyond 0.6 lengths: forearm
    assert (labels[~mask] == BACKGROUND).all()


def test_every_forearm_photo_has_its_wrist(data_dir):
    """train/wrist_landmarks.csv covers every HGR and indoor photo, and cuts a real one at its wrist."""
    policy = LabelPolicy.hand_only(["hgr", "indoor"])
    for source in ("hgr", "indoor"):
        ids = {p.stem for p in (data_dir / source / "images").iterdir()}
        assert ids <= {i for s, i in policy.wrists if s == source}
    photo = "0_A_hgr2B_id01_1"
    mask = load_mask(data_dir / "hgr" / "masks" / f"{photo}.png")
    labels = policy.labels(mask, "hgr", photo)
    (wx, wy, kx, ky), *_ = policy.wrists[("hgr", photo)]
    assert labels[round(ky), round(kx)] == HAND  # the middle knuckle
    assert ((labels == BACKGROUND) & mask).sum() > 0.1 * mask.sum()  # a real part of the arm is cut off
