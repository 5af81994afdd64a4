"""Training labels and compositing: the label policy's wrist cut and pasted hands whose masks
follow the pasted pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

for needed in ("datasets", "scipy"):
    pytest.importorskip(needed, reason='training needs the train extra: pip install "handseg[train]"')

import handseg
from handseg.image import load_mask
from tests.conftest import REPO_ROOT
from tools.pseudo_labels import main as pseudo_labels_main
from tools.pseudo_labels import pseudo_label
from train.augment import Augmenter
from train.composite import (
    HandCutout,
    PasteSettings,
    blob_shape,
    cutout_from_black,
    cutouts_from_photo,
    distractor_cutout,
    match_sharpness_and_noise,
    paste_hand,
)
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
    out, new_labels, alpha, _ = paste_hand(background, labels, solid_cutout(), rng, PasteSettings(blur_prob=0))
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
    out, labels, _, _ = paste_hand(face, np.zeros(face.shape[:2], np.uint8), cutouts[0], np.random.default_rng(1))
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


@pytest.mark.parametrize("seed", range(6))
def test_distractors_are_background_and_hands_stay_hands_exactly(seed, data_dir):
    """A hand, then a distractor over part of it, then another hand: the label map is background
    wherever the distractor's pixels dominate and hand wherever a hand's do, nothing else changes."""
    rng = np.random.default_rng(seed)
    faces = sorted((data_dir / "negatives" / "images").iterdir())
    background = handseg.load_image(faces[seed])
    other_face = handseg.load_image(faces[seed + 10])
    photo = sorted((data_dir / "hgr" / "images").iterdir())[seed]
    rgb, mask = handseg.load_image(photo), handseg.load_mask(data_dir / "hgr" / "masks" / f"{photo.stem}.png")
    hand = cutout_from_black(np.where(mask[..., None], rgb, 0).astype(np.uint8), mask)  # all of it labelled hand
    settings = PasteSettings(size_range=(0.6, 0.9))
    labels = np.zeros(background.shape[:2], np.uint8)
    image, labels, _, _ = paste_hand(background, labels, hand, rng, settings, centre=(0.5, 0.5))
    before = labels.copy()
    silhouette = hand.shape if seed % 2 else blob_shape(80, 60, rng)
    distractor = distractor_cutout(other_face, silhouette, "bottom", rng)
    assert (distractor.labels == BACKGROUND).all()
    image, labels, alpha, _ = paste_hand(image, labels, distractor, rng, settings, centre=(0.5, 0.5))
    assert (alpha >= 0.5).any()
    assert (labels[alpha >= 0.5] == BACKGROUND).all()  # background wherever the distractor shows
    assert (labels[alpha < 0.5] == before[alpha < 0.5]).all()  # untouched elsewhere
    image, labels, alpha, _ = paste_hand(image, labels, hand, rng, settings)
    assert (labels[alpha >= 0.5] == HAND).all()  # and hand wherever the next hand shows


def test_a_hand_over_a_face_lands_where_it_is_asked(data_dir):
    face = handseg.load_image(sorted((data_dir / "negatives" / "images").iterdir())[0])
    _, _, alpha, _ = paste_hand(
        face, np.zeros(face.shape[:2], np.uint8), solid_cutout(), np.random.default_rng(0), centre=(0.7, 0.5)
    )
    ys, xs = np.nonzero(alpha >= 0.5)
    assert abs(ys.mean() / face.shape[0] - 0.7) < 0.05 and abs(xs.mean() / face.shape[1] - 0.5) < 0.05


def test_a_sharp_clean_paste_is_blurred_and_given_the_grain_of_its_surroundings():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    sharp = np.where(((yy // 4 + xx // 4) % 2)[..., None] == 1, 200.0, 60.0) * np.ones(3)  # a crisp checkerboard
    soft = np.full((96, 96, 3), 128.0) + rng.normal(0, 6, (96, 96, 1))  # flat and grainy
    soft = np.clip(soft, 0, 255).astype(np.uint8)
    inside = np.ones((64, 64), bool)
    matched = match_sharpness_and_noise(sharp.copy(), inside, soft, rng)
    edges = np.abs(np.diff(matched.mean(axis=2), axis=1)).max()
    assert edges < 140 * 0.8  # the checkerboard's 140-level steps are softened
    flat = match_sharpness_and_noise(np.full((64, 64, 3), 100.0), inside, soft, rng)
    assert 3 < flat.std() < 9  # grain like the surroundings' (sigma 6)


def test_training_items_paste_distractors_as_background_only(data_dir):
    """Hand-free items with distractors pasted in: something was pasted, and nothing is labelled hand."""
    from train.composite import DistractorSettings
    from train.trainset import TrainSet

    split = load_split(data_dir, sources=["hgr", "negatives"])
    train_set = TrainSet(
        split.train, Augmenter(64, working_side=128), 0, mix=(0.5, 0.5, 0.0),
        policy=LabelPolicy.hand_only(["hgr"]), distractors=DistractorSettings(prob=1.0),
    )  # fmt: skip
    n_photo, n_free, _ = train_set.counts
    changed = 0
    for i in range(n_photo, n_photo + 6):
        rgb, labels, _ = train_set.item(0, i)
        j = train_set.hand_free[(i - n_photo) % len(train_set.hand_free)]
        original = train_set.photo(j)[0]
        assert (labels != HAND).all()
        changed += int(not np.array_equal(rgb, original))
    assert changed == 6


def test_pseudo_labels_are_never_written_for_a_frame_without_a_detected_hand(tmp_path, data_dir):
    """Three real gesture frames: one with MediaPipe's landmarks, one whose landmarks are taken away (as
    if no hand had been found), one of a held-out person. Only the first may be written."""
    lines = (REPO_ROOT / "train" / "gesture_landmarks.csv").read_text().splitlines()
    found = {line.split(",")[1] for line in lines[1:]}
    frames = sorted((data_dir / "gestures_unlabeled" / "images").iterdir())
    usable = [p for p in frames if p.stem in found and not p.stem.startswith(("tongam", "viany"))]
    with_hand, no_hand = usable[0], usable[1]
    held_out = next(p for p in frames if p.stem in found and p.stem.startswith("tongam"))
    folder = tmp_path / "data" / "gestures_unlabeled" / "images"
    folder.mkdir(parents=True)
    for path in (with_hand, no_hand, held_out):
        (folder / path.name).write_bytes(path.read_bytes())
    landmarks = tmp_path / "landmarks.csv"
    kept_rows = [line for line in lines[1:] if line.split(",")[1] in (with_hand.stem, held_out.stem)]
    landmarks.write_text("\n".join([lines[0], *kept_rows]) + "\n")
    out = tmp_path / "pseudo"
    assert pseudo_labels_main(["--data", str(tmp_path / "data"), "--landmarks", str(landmarks), "--out", str(out)]) == 0
    report = {row.split(",")[0]: row for row in (out / "pseudo_labels.csv").read_text().splitlines()[1:]}
    assert len(report) == 3 and "no hand found" in report[no_hand.stem]
    written = {p.stem for p in out.glob("*/*.*")}
    assert no_hand.stem not in written and held_out.stem not in written
    assert written <= {with_hand.stem}
    if written:  # kept: a label map of hand, not-scored and background values, with some hand
        labels = np.array(Image.open(out / "labels" / f"{with_hand.stem}.png"))
        assert set(np.unique(labels).tolist()) <= {BACKGROUND, HAND, IGNORE} and (labels == HAND).any()
    assert not pseudo_label("x", np.zeros((8, 8, 3), np.uint8), [], np.zeros((8, 8), np.float32)).kept


def test_a_hand_the_teacher_missed_is_labelled_from_its_landmarks():
    """MediaPipe found a hand, the teacher marked nothing: its palm and finger bones become hand, a margin
    around them is not scored, and the rest of the frame stays background."""

    wrist, knuckles = np.array([[100.0, 180.0]]), np.array([[70.0 + 15 * i, 120.0] for i in range(4)])
    thumb = np.array([[75.0, 165.0], [60.0, 150.0], [50.0, 135.0], [45.0, 120.0]])
    fingers = [np.array([[x, 120.0 - 20 * j] for j in range(1, 4)]) for x, _ in knuckles]
    # MediaPipe's order: wrist, thumb 1-4, then each finger's knuckle and three joints.
    points = np.concatenate([wrist, thumb] + [np.concatenate([k[None], f]) for k, f in zip(knuckles, fingers)])
    rgb = np.full((240, 200, 3), 120, np.uint8)
    label = pseudo_label("frame", rgb, [points], np.zeros((240, 200), np.float32))
    assert label.kept and label.from_landmarks == 1
    assert label.labels[150, 100] == HAND  # inside the palm
    assert label.labels[65, 115] == HAND  # on the little finger's bone
    assert (label.labels == IGNORE).sum() > (label.labels == HAND).sum() / 2  # the outline is not guessed
    assert (label.labels[:, :20] == BACKGROUND).all() and (label.labels[220:] == BACKGROUND).all()


def test_a_hue_turn_makes_skin_another_colour_of_the_same_brightness():
    from train.augment import turn_hue

    skin = np.full((8, 8, 3), (200, 150, 120), np.uint8)
    turned = turn_hue(skin, 0.5).astype(int)
    assert turned[0, 0, 2] > turned[0, 0, 0]  # half way round: blue above red
    assert abs(turned.mean() - skin.mean()) < 3  # the grey axis is kept
    assert np.array_equal(turn_hue(skin, 0.0), skin)
    crops = Augmenter(8, hue_turn_prob=1.0, colour_prob=0.0, cast_prob=0.0, max_rotation=0.0)
    out, labels = crops(skin, np.ones((8, 8), np.uint8), np.random.default_rng(0))
    assert not np.array_equal(out, skin) and (labels == 1).all()


def test_a_hand_on_a_face_takes_the_faces_skin_tone_and_size(data_dir):
    """On a real face, a pasted hand of another skin tone (a blue-grey one, to make it plain) comes out in
    the face's own tone, about the size of the face, and in one of the spots real hands go."""
    from train.composite import OnFace

    face = handseg.load_image(sorted((data_dir / "negatives" / "images").glob("utkface_*"))[0])
    on_face = OnFace((0.15, 0.1, 0.7, 0.8))
    skin = on_face.skin(face)
    shape = np.zeros((80, 50), bool)
    shape[5:75, 5:45] = True
    odd_tone = HandCutout(
        np.full((80, 50, 3), (90, 110, 160), np.uint8), np.where(shape, HAND, 0).astype(np.uint8), shape, None
    )
    image, labels, alpha, _ = paste_hand(face, np.zeros(face.shape[:2], np.uint8), odd_tone, np.random.default_rng(3),
                                      on_face=on_face)  # fmt: skip
    pasted = image[alpha > 0.9].astype(float)
    tone = lambda rgb: rgb / rgb.sum()  # noqa: E731 (the colour, whatever the light: the face may shade it)
    assert np.abs(tone(pasted.mean(axis=0)) - tone(skin.mean(axis=0))).max() < 0.02  # the face's, not blue-grey
    ys, xs = np.nonzero(labels == HAND)
    height = ys.max() - ys.min() + 1
    assert 0.5 * 0.8 * face.shape[0] < max(height, xs.max() - xs.min() + 1) < 1.5 * 0.8 * face.shape[0]


def test_hue_turns_go_only_where_asked(data_dir):
    from train.trainset import HueTurns

    cutout = solid_cutout()
    rng = np.random.default_rng(0)
    turns = HueTurns(prob=1.0, where="distractors")
    assert turns.maybe_turn(cutout, "hands", rng) is cutout
    turned = turns.maybe_turn(cutout, "distractors", rng)
    assert not np.array_equal(turned.rgb, cutout.rgb) and np.array_equal(turned.labels, cutout.labels)
    assert HueTurns(prob=0.0, where="hands").maybe_turn(cutout, "hands", rng) is cutout


def test_hard_negatives_draw_the_marked_photos_more_often(data_dir):
    """The sampler hands a hand-free item the photo it drew by this epoch's weights, in the main process."""
    from torch.utils.data import DistributedSampler

    from train.trainset import EpochSampler, TrainSet

    split = load_split(data_dir, sources=["handphotos", "negatives"])
    train_set = TrainSet(split.train, Augmenter(64, working_side=128), 0, mix=(0.5, 0.5, 0.0))
    n_photo, n_free, _ = train_set.counts
    sampler = EpochSampler(DistributedSampler(train_set, num_replicas=1, rank=0, seed=0), train_set.counts, seed=0)
    weights = np.ones(len(train_set.hand_free))
    weights[:3] = 200.0  # three photos the model marks
    sampler.set_epoch(1, weights)
    keys = list(sampler)
    drawn = [key[2] for key in keys if n_photo <= key[1] < n_photo + n_free]
    assert len(drawn) == n_free and all(len(key) == 2 for key in keys if key[1] < n_photo)
    assert sum(j < 3 for j in drawn) > 0.5 * n_free
    rgb, labels, _ = train_set.item(1, n_photo, hand_free=drawn[0])
    assert np.array_equal(rgb, train_set.photo(train_set.hand_free[drawn[0]])[0])
    sampler.set_epoch(2)
    assert all(len(key) == 2 for key in sampler)  # without weights: the plain walk


@pytest.mark.parametrize("seed", range(8))
def test_landmarks_move_with_every_paste_and_augmentation(seed):
    """A cut-out's landmarks go wherever its pixels go: pasted (flipped, turned, scaled, placed), then through
    the training crop (turned, scaled, cropped, flipped). Marker: one bright pixel blob at a landmark."""
    from train.augment import Augmenter
    from train.landmarks import moved, scale

    rgb = np.zeros((60, 40, 3), np.uint8)
    shape = np.ones((60, 40), bool)
    rgb[:, :] = (90, 60, 50)
    rgb[14:19, 9:14] = (255, 255, 255)  # the marker, centred on (11.5, 16.5)
    points = np.zeros((21, 2), np.float32) + np.array([11.5, 16.5], np.float32)
    cutout = HandCutout(rgb, np.where(shape, HAND, BACKGROUND).astype(np.uint8), shape, None, (points,))
    rng = np.random.default_rng(seed)
    settings = PasteSettings(blur_prob=0, match_sharpness=False, match_colour=(0.0, 0.0), size_range=(0.5, 0.9))
    background = np.full((200, 200, 3), 100, np.uint8)
    empty = np.zeros((200, 200), np.uint8)
    image, labels, _, (pasted,) = paste_hand(background, empty, cutout, rng, settings, centre=(0.5, 0.5))
    # a crop larger than the scaled image: it lands whole, at a random place (rotated, scaled and flipped)
    augmenter = Augmenter(256, working_side=200, scale_range=(0.8, 1.2), colour_prob=0, cast_prob=0)
    image, labels, (augmented,) = augmenter.apply(image, labels, rng, [pasted])
    x, y = augmented[0]
    brightness = image.astype(int).sum(axis=2)
    ys, xs = np.nonzero(brightness > 0.85 * brightness.max())  # the marker, shaded and resampled
    assert abs(xs.mean() + 0.5 - x) < 2.5 and abs(ys.mean() + 0.5 - y) < 2.5, (xs.mean(), ys.mean(), x, y)
    assert np.allclose(moved([points], scale(2, 3))[0], points * [2, 3])
