"""Hand landmarks on onnxruntime and numpy: held to MediaPipe's own on shared photos, left and right as
photographed, one mask per hand, and the files and columns that carry them."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import handseg
import handseg.backends
from handseg import load_mask
from handseg.hands import HandLandmarker
from handseg.hands.detector import PalmDetector
from handseg.hands.warp import crop
from handseg.processing import load_working_image
from tests.conftest import REPO_ROOT, run_cli, write_clip
from tools.hands_reference import WORKING_SIDE, reference_photos

REFERENCE = REPO_ROOT / "tests" / "data" / "hands_reference.csv"


@pytest.fixture(scope="module")
def landmarker() -> HandLandmarker:
    return HandLandmarker()


def read_reference(path: Path) -> dict[tuple[str, str], list[tuple[str, np.ndarray]]]:
    """(source, id) -> [(handedness, landmarks (21, 3))] from tools/hands_reference.py's CSV."""
    hands: dict[tuple[str, str], list[tuple[str, np.ndarray]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            found = hands[(row["source"], row["id"])]
            if row["hand"] != "-1":
                points = np.array([[float(v) for v in point.split(",")] for point in row["landmarks"].split()])
                found.append((row["handedness"], points))
    return hands


def compare(reference, landmarker, data_dir) -> tuple[int, int, list[float], int, int]:
    """(photos with the same hand count, photos, landmark errors as shares of the hand's size, hands whose
    classifier's left or right agrees (before handseg weighs the landmarks' geometry), hands) of handseg's
    pipeline against `reference`."""
    same, errors, agree, total = 0, [], 0, 0
    photos = reference_photos(data_dir)
    for source, path in photos:
        found = landmarker(load_working_image(path, max_side=WORKING_SIDE).small)
        expected = reference[(source, path.stem)]
        same += len(found) == len(expected)
        for handedness, points in expected:
            if not found:
                continue
            nearest = min(found, key=lambda h: np.abs(h.landmarks[:, :2] - points[:, :2]).mean())
            size = np.hypot(*(points[9, :2] - points[0, :2]))
            errors.append(float(np.linalg.norm(nearest.landmarks[:, :2] - points[:, :2], axis=1).mean() / size))
            agree += ("right" if nearest.classifier_right >= 0.5 else "left") == handedness  # the classifier's own
            total += 1
    return same, len(photos), errors, agree, total


def test_the_landmarks_are_mediapipes_on_shared_photos(data_dir, landmarker):
    """72 shared photos (hands of every source, faces with hands, gestures, hand-free photos) through
    handseg's pipeline and through `mediapipe.solutions.hands` (tests/data/hands_reference.csv, made by
    tools/hands_reference.py where mediapipe is installed): the same hands found on every photo, the
    landmarks within a small share of the hand's size, the same left and right. Measured: 72 of 72 photos,
    median error 0.00003 of the hand's size, the worst hand 0.0008, handedness 78 of 78."""
    same, photos, errors, agree, total = compare(read_reference(REFERENCE), landmarker, data_dir)
    assert same == photos and total >= 70
    assert np.median(errors) < 0.002 and max(errors) < 0.02, (np.median(errors), max(errors))
    assert agree == total


def test_the_landmarks_are_mediapipes_where_mediapipe_is_installed(data_dir, landmarker, tmp_path):
    """The same comparison against MediaPipe run now (a training venv: pip install mediapipe==0.10.21)."""
    pytest.importorskip("mediapipe", reason="needs mediapipe==0.10.21 (a training-time helper, never a dependency)")
    from train import hands_reference

    out = tmp_path / "reference.csv"
    hands_reference.main(["--data", str(data_dir), "--out", str(out)])
    same, photos, errors, agree, total = compare(read_reference(out), landmarker, data_dir)
    assert same == photos and np.median(errors) < 0.002 and max(errors) < 0.02 and agree == total


def test_a_mirrored_photo_gives_the_same_hands_left_and_right_swapped(data_dir, landmarker):
    """On the HGR and gesture photos of the reference set (open hands, palm or back clearly shown). On three
    other photos of the set (the back of a hand low in the frame, a hand half out of it) MediaPipe's own
    handedness model calls the hand and its mirror image the same side, and so does handseg, which runs it."""
    photos = [path for source, path in reference_photos(data_dir) if source in ("hgr", "gestures_unlabeled")]
    checked = 0
    for path in photos:
        image = load_working_image(path, max_side=WORKING_SIDE).small
        hands, mirrored = landmarker(image), landmarker(np.ascontiguousarray(image[:, ::-1]))
        assert len(hands) == len(mirrored), path.name
        width = image.shape[1]
        for hand in hands:
            flipped = hand.landmarks[:, :2] * [-1, 1] + [width, 0]
            twin = min(mirrored, key=lambda m: np.abs(m.landmarks[:, :2] - flipped).mean())
            x0, y0, x1, y1 = hand.box
            size = np.hypot(x1 - x0, y1 - y0)  # the hand's extent (wrist to knuckle can be foreshortened)
            assert np.linalg.norm(twin.landmarks[:, :2] - flipped, axis=1).mean() < 0.1 * size, path.name
            assert {hand.handedness, twin.handedness} == {"left", "right"}, path.name
            checked += 1
    assert checked >= 26


def test_the_crop_rounds_as_opencv_does_and_keeps_an_unmoved_image_exact():
    """An image cropped to itself is itself (OpenCV's integer weights sum to exactly one), and a half-pixel
    shift blends neighbours with OpenCV's fixed-point rounding (16 / 32 of each, rounded half up)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    same, _ = crop(image, (20, 20), (40, 40), 0.0, 40)
    assert np.array_equal(same, image)
    shifted, _ = crop(image, (20.5, 20), (40, 40), 0.0, 40)
    expected = (image[:, :-1].astype(int) + image[:, 1:] + 1) // 2
    assert np.array_equal(shifted[:, :-1], expected)


def test_every_mask_pixel_belongs_to_exactly_one_hand_or_to_none(data_dir, sample_photos):
    """The network's mask as it is (`verify=False`): one entry of `hands` per hand, each with its own pixels
    of the mask, and the pixels near no found hand in `unexplained`; together they are the mask."""
    two_hands = sorted((data_dir / "egohands" / "images").glob("*.jpg"))[0]  # two players' hands
    for photo in [two_hands, *sample_photos]:
        result = handseg.segment(photo, verify=False)
        masks = [hand.mask for hand in result.hands] + [result.unexplained]
        assert np.array_equal(np.sum(masks, axis=0), result.mask), photo
        labels = result.hand_labels
        assert labels.max() <= len(result.hands) + 1 and np.array_equal(labels > 0, result.mask)
        assert np.array_equal(labels == len(result.hands) + 1, result.unexplained)
        for number, hand in enumerate(result.hands, start=1):
            assert np.array_equal(labels == number, hand.mask)
            x0, y0, x1, y1 = hand.box  # a found hand's own pixels lie around its own landmarks
            ys, xs = np.nonzero(hand.mask)
            if len(xs):
                assert x0 - (x1 - x0) <= np.median(xs) <= x1 + (x1 - x0), photo
    result = handseg.segment(two_hands)
    assert sorted(h.handedness for h in result.hands) == ["left", "right"]


def test_the_command_line_writes_each_hand(tmp_path, data_dir):
    photo = sorted((data_dir / "egohands" / "images").glob("*.jpg"))[0]
    done = run_cli("segment", "-i", photo, "-o", tmp_path / "out", "--hands")
    assert done.returncode == 0, done.stderr
    labels = np.array(Image.open(tmp_path / "out" / f"{photo.stem}_hands.png"))
    summary = json.loads((tmp_path / "out" / f"{photo.stem}_hands.json").read_text())
    mask = load_mask(tmp_path / "out" / f"{photo.stem}_mask.png")
    assert np.array_equal(labels > 0, mask) and labels.max() == len(summary["hands"])
    for number, hand in enumerate(summary["hands"], start=1):
        assert hand["pixels"] == int((labels == number).sum())
        assert hand["handedness"] in ("left", "right")
        assert len(hand["landmarks"]) == 21
    assert sorted(h["handedness"] for h in summary["hands"]) == ["left", "right"]
    # --no-hands: the mask alone, and --hands with it is a usage error
    assert run_cli("segment", "-i", photo, "-o", tmp_path / "m", "--no-hands").returncode == 0
    assert not (tmp_path / "m" / f"{photo.stem}_hands.png").exists()
    refused = run_cli("segment", "-i", photo, "-o", tmp_path / "x", "--no-hands", "--hands")
    assert refused.returncode == 2 and "--no-hands" in refused.stderr


def test_a_video_tracks_hands_and_detects_again_only_when_needed(tmp_path, data_dir, monkeypatch):
    """Frames of a video: each frame's hands are read where the last frame's were; the palm detector runs on
    the first frame, every REDETECT_EVERY frames, and when a hand is lost, as MediaPipe's video mode does."""
    pytest.importorskip("av", reason='needs the video extra: pip install "handseg[video]"')
    from handseg.video import iter_video

    photo = sorted((data_dir / "hgr" / "images").glob("*.jpg"))[3]
    clip = write_clip(tmp_path / "clip.mp4", np.array(Image.open(photo).convert("RGB").resize((480, 400))), 12)
    segmenter = handseg.Segmenter(verify=False)  # tracking alone: confirmation runs the palm detector on crops too
    calls = []
    detect = PalmDetector.__call__
    monkeypatch.setattr(PalmDetector, "__call__", lambda self, image: calls.append(1) or detect(self, image))
    frames = list(iter_video(clip, segmenter))
    # the clip pans the hand out of view in its last frame
    assert [len(frame.detected) for frame in frames] == [1] * 11 + [0]
    assert len(calls) == 3  # frame 0, frame 10 (REDETECT_EVERY), frame 11 (the hand was lost)
    assert all(frame.hands[0].handedness == frames[0].hands[0].handedness for frame in frames[:11])


def test_a_model_that_reads_landmarks_is_given_them_as_drawn(data_dir, monkeypatch):
    """A network with hand channels gets, after the image's, the landmarks the landmark stage found in that
    very image, drawn by `handseg.hands.hand_channels`; with hands=False, zeros (as where no hand is found)."""
    photo = sorted((data_dir / "egohands" / "images").glob("*.jpg"))[0]
    model = handseg.create_model("lite_unet", decoder_channels=[16, 8, 8, 8, 8], max_side=256, hand_channels=3).eval()
    fed = []
    real = handseg.backends.TorchRunner.__call__
    monkeypatch.setattr(
        handseg.backends.TorchRunner, "__call__", lambda self, batch: fed.append(batch) or real(self, batch)
    )
    for hands in (True, False):
        result = handseg.Segmenter(model, backend="torch", hands=hands)(photo)
        assert (result.detected is not None) == hands
    with_hands, without = fed
    assert with_hands.shape[1] == 6 and without.shape[1] == 6
    small = load_working_image(photo, max_side=256).small
    found = HandLandmarker()(small)
    expected = handseg.hands.hand_channels([hand.landmarks for hand in found], *small.shape[:2])
    assert found and np.array_equal(with_hands[0, 3:].numpy(), expected)
    assert not without[0, 3:].any()
