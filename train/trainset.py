"""The training set: an epoch of augmented crops of photos with hands, hand-free photos and composites,
and the sampler that hands out (epoch, index) keys so every item is reproducible."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler, Sampler

from handseg import to_model_input
from handseg.hands import hand_channels
from train.augment import Augmenter, fit_longer_side, turn_hue
from train.composite import (
    DistractorSettings,
    HandCutout,
    OnFace,
    PasteSettings,
    blob_shape,
    cutout_from_black,
    cutouts_from_photo,
    distractor_cutout,
    jpeg_roundtrip,
    paste_hand,
)
from train.data import load_pair, load_split, mask_is_empty
from train.hands_on_faces import CROP_FACE
from train.labels import LabelPolicy
from train.landmarks import LandmarkNoise, Points, detect_hands


class AslBank:
    """Hand cut-outs on black (with masks), decoded on first use and kept small; with `landmarks`, each
    with its hand's landmarks (found as handseg finds them)."""

    def __init__(self, items: datasets.Dataset, max_side: int, landmarks: bool = False) -> None:
        self.items = items
        self.max_side = max_side
        self.landmarks = landmarks
        self.cache: dict[int, HandCutout] = {}

    @classmethod
    def from_folder(cls, folder: str | Path, max_side: int, landmarks: bool = False) -> AslBank:
        """Cut-outs from an images/ + masks/ folder (e.g. ../shared/data/asl_cutouts)."""
        return cls(load_split(folder, val_percent=0).train, max_side, landmarks)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> HandCutout:
        if i not in self.cache:
            rgb, mask = fit_longer_side(*load_pair(self.items[i]), self.max_side)
            points = detect_hands(rgb, self.max_side) if self.landmarks else []
            self.cache[i] = cutout_from_black(rgb, mask, points)
        return self.cache[i]


@dataclass(frozen=True)
class HueTurns:
    """Hue turned far round the colour circle (0.15-0.85 of a turn) with probability `prob`, on `where`:
    "crops" (whole training crops, hands and all, in the Augmenter: hands_v4's recipe), "hands" (pasted
    hands only) or "distractors" (pasted hand-free patches only)."""

    prob: float = 0.0
    where: str = "crops"

    def maybe_turn(self, cutout: HandCutout, kind: str, rng: np.random.Generator) -> HandCutout:
        """`cutout` with its hue turned when `kind` ("hands", "distractors") is where turns go, by chance."""
        if self.where != kind or not self.prob or rng.random() >= self.prob:
            return cutout
        return replace(cutout, rgb=turn_hue(cutout.rgb, float(rng.uniform(0.15, 0.85))))


#: Hand-free photos whose subject is a face or a person (../shared/data ids): a pasted hand may go over
#: the face itself, as fingers across a cheek or a chin on a fist.
FACE_ID_PREFIXES = ("utkface_", "deepface_", "realfaces_", "gfpgan_")


class TrainSet(Dataset):
    """An epoch of augmented training crops: every photo with hands once, then hand-free photos
    and composites (hands pasted onto hand-free photos) in the shares of `mix`.

    Indexed by (epoch, i) so each item is a pure function of (seed, epoch, i): identical with any
    number of workers or ranks. Photos are decoded once, at the largest size augmentation can ask
    for, and given their label map under the label policy (`train.labels`)."""

    def __init__(
        self,
        ds: datasets.Dataset,
        augmenter: Augmenter,
        seed: int,
        *,
        mix: Sequence[float] = (1.0, 0.0, 0.0),
        asl: AslBank | None = None,
        composite_prob: float = 0.0,
        paste: PasteSettings | None = None,
        policy: LabelPolicy | None = None,
        distractors: DistractorSettings | None = None,
        hue_turns: HueTurns | None = None,
        face_boxes: dict[str, tuple[float, float, float, float]] | None = None,
        hand_inputs: int = 0,
        landmark_noise: LandmarkNoise | None = None,
    ) -> None:
        self.ds, self.augmenter, self.seed = ds, augmenter, seed
        self.asl, self.composite_prob, self.paste = asl, composite_prob, paste or PasteSettings()
        self.distractors = distractors or DistractorSettings(prob=0.0)
        self.policy = policy or LabelPolicy()
        empty = [mask_is_empty(ds[i]) for i in range(len(ds))]
        self.photos = [i for i, e in enumerate(empty) if not e]
        self.hand_free = [i for i, e in enumerate(empty) if e]
        share = np.asarray(mix, float) / sum(mix)
        if not self.hand_free:
            share = np.array([1.0, 0.0, 0.0])
        if not self.photos and share[0] > 0:
            share = np.array([0.0, 1.0, 0.0])  # only hand-free photos: nothing to paste either
        total = round(len(self.photos) / share[0]) if share[0] > 0 else len(self.hand_free)
        self.counts = (len(self.photos), round(total * share[1]), round(total * share[2]))
        # Hands whose own photo shows a bare forearm, now labelled background: pasted often, so that
        # "an arm is not a hand" is learned from many scenes, not only from these photos' own.
        self.forearm_photos = [i for i in self.photos if ds[i]["source"] in self.policy.forearm_sources]
        self.face_photos = {i for i in self.hand_free if str(ds[i]["id"]).startswith(FACE_ID_PREFIXES)}
        self.hue_turns = hue_turns or HueTurns()
        # Where the face is in each face photo (MediaPipe's box, train/face_boxes.csv; a tight crop's middle).
        face_boxes = face_boxes or {}
        ids = ds["id"]
        self.faces = {i: face_boxes.get(str(ids[i]), CROP_FACE) for i in self.face_photos}
        #: Hand landmark channels the network reads (0: none: no landmarks are found or drawn).
        self.hand_inputs = hand_inputs
        self.landmark_noise = landmark_noise or LandmarkNoise()
        self.cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, Points]] = {}
        self.cutout_cache: dict[int, list[HandCutout]] = {}
        # Decode once, at the largest size augmentation can ask for.
        self.keep_side = int(augmenter.working_side * augmenter.scale_range[1] * 1.1)

    def __len__(self) -> int:
        return sum(self.counts)

    def photo(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Row i of the dataset: RGB and label map (under the label policy), at most keep_side."""
        return self.photo_and_mask(i)[:2]

    def photo_and_mask(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, Points]:
        """RGB, label map, the source's own mask (hand plus forearm where the source draws one) and, for a
        network that reads them, the hands' landmarks as handseg finds them at the working size (found once
        per photo in each process, and kept)."""
        if i not in self.cache:
            example = self.ds[i]
            rgb, mask = load_pair(example)
            if example.get("labels") is not None:  # a prepared set (train.prepare): made at full size already
                labels = np.array(Image.open(io.BytesIO(example["labels"]["bytes"])))
            else:  # at full size: the wrist landmarks are in the full image's pixels
                labels = self.policy.labels(mask, example["source"], example["id"])
            small_rgb, labels = fit_longer_side(rgb, labels, self.keep_side)
            points: Points = []
            if self.hand_inputs:
                found = detect_hands(rgb, self.augmenter.working_side)
                points = [p * np.float32(small_rgb.shape[1] / rgb.shape[1]) for p in found]
            self.cache[i] = (small_rgb, labels, fit_longer_side(rgb, mask, self.keep_side)[1], points)
        return self.cache[i]

    def random_hand(self, rng: np.random.Generator) -> HandCutout:
        """A hand cut from a labelled photo, with whatever forearm its mask drew (labelled as the policy
        says); a quarter of draws are ASL cut-outs when there are any, and a third of the rest come from
        photos with a bare forearm."""
        if self.asl is not None and (not self.photos or rng.random() < 0.25):
            return self.asl[int(rng.integers(len(self.asl)))]
        pool = self.forearm_photos if self.forearm_photos and rng.random() < 1 / 3 else self.photos
        i = pool[int(rng.integers(len(pool)))]
        if i not in self.cutout_cache:
            rgb, labels, mask, points = self.photo_and_mask(i)
            self.cutout_cache[i] = cutouts_from_photo(rgb, mask, labels, points=points) or cutouts_from_photo(
                rgb, mask, labels, min_share=0, points=points
            )
        cutouts = self.cutout_cache[i]
        return cutouts[int(rng.integers(len(cutouts)))] if cutouts else self.random_hand(rng)

    def random_distractor(self, rng: np.random.Generator) -> HandCutout:
        """A patch of a hand-free photo, hand-shaped or a blob, labelled background (train.composite)."""
        photo = self.photo(self.hand_free[int(rng.integers(len(self.hand_free)))])[0]
        points: Points = []
        if rng.random() < self.distractors.hand_shaped and (self.photos or self.asl):
            hand = self.random_hand(rng)
            shape, edge = hand.shape, hand.entry_edge
            # Half of hand-shaped distractors carry that hand's skeleton: a false detection, labelled background.
            if self.hand_inputs and rng.random() < 0.5:
                points = list(hand.points)
        else:
            side = min(photo.shape[:2])
            height, width = (int(rng.integers(side // 4, side // 2 + 2)) for _ in range(2))
            shape = blob_shape(height, width, rng)
            edge = None
        return distractor_cutout(photo, shape, edge, rng, self.distractors.warm_bias, points)

    def item(self, epoch: int, i: int, hand_free: int | None = None) -> tuple[np.ndarray, np.ndarray, Points]:
        """RGB, label map and hand landmarks of item i before augmentation: a photo with hands, a hand-free
        photo, or a composite (hands pasted onto a hand-free photo), by where i falls in `counts`; any of
        them may get pasted hands and distractors (pasted like hands, labelled background), each with its
        landmarks. `hand_free`: the hand-free photo for a hand-free item, when the sampler chose it (hard
        negatives)."""
        rng = np.random.default_rng([self.seed, epoch, i, 1])
        n_photo, n_free, _ = self.counts
        can_paste_hands = bool(self.photos or self.asl)
        can_distract = bool(self.hand_free) and self.distractors.prob > 0
        hands = distractors = 0
        on_face = False
        if i < n_photo:
            rgb, labels, _, points = self.photo_and_mask(self.photos[i])
            hands = int(can_paste_hands and rng.random() < self.composite_prob)
            distractors = int(can_distract and rng.random() < self.distractors.prob / 2)
        else:
            if hand_free is not None:
                j = self.hand_free[hand_free]
            elif i < n_photo + n_free:  # walk through the hand-free photos over the epochs
                j = self.hand_free[(i - n_photo + epoch * n_free) % len(self.hand_free)]
            else:
                j = self.hand_free[int(rng.integers(len(self.hand_free)))]
                hands = 1 + int(rng.random() > 0.6) + int(rng.random() > 0.9)  # 1-3: 60/30/10%
                on_face = j in self.face_photos
            rgb, labels, _, points = self.photo_and_mask(j)
            if can_distract and rng.random() < self.distractors.prob:
                distractors = 1 + int(rng.random() > 0.7)
        order = rng.permutation(["hand"] * hands + ["distractor"] * distractors)
        for kind in order:
            face = None
            if kind == "hand":
                cutout = self.hue_turns.maybe_turn(self.random_hand(rng), "hands", rng)
                if on_face and rng.random() < self.paste.face_overlap_prob:
                    face = OnFace(self.faces[j])  # on the cheek, chin, mouth, forehead, temple or hair
            else:
                cutout = self.hue_turns.maybe_turn(self.random_distractor(rng), "distractors", rng)
            rgb, labels, _, pasted = paste_hand(rgb, labels, cutout, rng, self.paste, on_face=face)
            points = [*points, *pasted]
        if len(order) and rng.random() < self.paste.jpeg_prob:
            rgb = jpeg_roundtrip(rgb, int(rng.integers(40, 96)))
        return rgb, labels, list(points)

    def __getitem__(self, key: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i, *hand_free = key
        rgb, labels, points = self.item(epoch, i, *hand_free)
        rng = np.random.default_rng([self.seed, epoch, i])
        rgb, labels, points = self.augmenter.apply(rgb, labels, rng, points)
        drawn = None
        if self.hand_inputs:
            noise_rng = np.random.default_rng([self.seed, epoch, i, 3])
            spare = self.random_skeleton(noise_rng)
            points = self.landmark_noise.apply(points, noise_rng, spare, self.augmenter.img_size)
            size = self.augmenter.img_size
            drawn = hand_channels(points, size, size)[: self.hand_inputs]
        return to_model_input(rgb, drawn), torch.from_numpy(labels[None].copy())

    def random_skeleton(self, rng: np.random.Generator) -> np.ndarray | None:
        """A real hand's landmarks from a training photo (for a false detection), or None where none has any."""
        for _ in range(4):
            if not self.photos:
                return None
            found = self.photo_and_mask(self.photos[int(rng.integers(len(self.photos)))])[3]
            if found:
                return found[int(rng.integers(len(found)))]
        return None


class EpochSampler(Sampler):
    """Wraps a DistributedSampler and yields (epoch, index) keys for TrainSet; with hand-free weights
    for the epoch (hard negatives), (epoch, index, hand-free photo) for the hand-free items, the photo
    drawn by weight. The sampler runs in the main process, so per-epoch weights reach every worker."""

    def __init__(self, base: DistributedSampler, counts: tuple[int, int, int] = (0, 0, 0), seed: int = 0) -> None:
        self.base, self.epoch, self.counts, self.seed = base, 0, counts, seed
        self.hand_free_weights: np.ndarray | None = None

    def set_epoch(self, epoch: int, hand_free_weights: np.ndarray | None = None) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)
        self.hand_free_weights = None if hand_free_weights is None else hand_free_weights / hand_free_weights.sum()

    def __iter__(self):
        n_photo, n_free, _ = self.counts
        for i in self.base:
            if self.hand_free_weights is not None and n_photo <= i < n_photo + n_free:
                rng = np.random.default_rng([self.seed, self.epoch, i, 2])
                yield self.epoch, i, int(rng.choice(len(self.hand_free_weights), p=self.hand_free_weights))
            else:
                yield self.epoch, i

    def __len__(self) -> int:
        return len(self.base)
