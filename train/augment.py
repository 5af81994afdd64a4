"""Training augmentation on RGB uint8 images and uint8 label maps (`train.labels`),
deterministic given an rng.

Order: rotate, scale jitter, random crop to a square (zero-padded when the image
is smaller), flip, colour (white balance, tint, gamma, brightness, contrast,
saturation, hue), and sometimes a strong colour cast or grey. Colour changes are
broad on purpose: the original's GTEA_gaze kitchens are strongly orange, which
none of the training sources are, and hands must be found by shape and context,
not by hue. Compositing (`train.composite`) happens before this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from handseg import resize_rgb, working_size
from train.landmarks import Points, mirror, moved, scale, shift, turned


def resize_pair(rgb: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to (h, w): bilinear for the image, nearest for the mask (bool or label map, kept as given)."""
    h, w = size
    if (h, w) == rgb.shape[:2]:
        return rgb, mask
    m = np.array(Image.fromarray(mask.astype(np.uint8)).resize((w, h), Image.NEAREST))
    return resize_rgb(rgb, (h, w)), (m > 0 if mask.dtype == bool else m)


def fit_longer_side(rgb: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Down-scale so the longer side is at most `side` (never up-scales)."""
    return resize_pair(rgb, mask, working_size(*rgb.shape[:2], max_side=side))


@dataclass
class Augmenter:
    """Random training transforms producing (img_size, img_size) crops of images scaled so
    their longer side is about `working_side` (default img_size): the scale segment() runs at."""

    img_size: int
    working_side: int | None = None
    scale_range: tuple[float, float] = (0.75, 1.35)
    max_rotation: float = 15.0
    colour_prob: float = 0.9
    cast_prob: float = 0.25  #: share given a strong cast (warm, cold) or made grey
    #: share whose hue is turned a long way round the colour circle (green, blue, purple hands, pink
    #: petals turned blue): hue then says nothing about "hand", shape and context must
    hue_turn_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.working_side is None:
            self.working_side = self.img_size

    def __call__(self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(rgb, label map) -> an (img_size, img_size) training crop and its label map."""
        rgb, mask, _ = self.apply(rgb, mask, rng)
        return rgb, mask

    def apply(
        self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, points: Points = ()
    ) -> tuple[np.ndarray, np.ndarray, Points]:
        """(rgb, label map, hand landmarks) -> the training crop, its label map and its landmarks (moved
        with every geometric change, `train.landmarks`)."""
        points = list(points)
        if self.max_rotation and rng.random() < 0.5:
            angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
            size = rgb.shape[:2]
            rgb = np.array(Image.fromarray(rgb).rotate(angle, Image.BILINEAR))
            mask = np.array(Image.fromarray(mask).rotate(angle, Image.NEAREST))
            points = moved(points, turned(angle, size, size))
        # Scale jitter around the size segment() runs this image at: longer side = working_side,
        # or the image's own size when smaller (segment() never up-samples; a 200 px face stays 200 px).
        h, w = rgb.shape[:2]
        factor = min(self.working_side, max(h, w)) * rng.uniform(*self.scale_range) / max(h, w)
        new_h, new_w = max(1, round(h * factor)), max(1, round(w * factor))
        rgb, mask = resize_pair(rgb, mask, (new_h, new_w))
        points = moved(points, scale(new_w / w, new_h / h))
        rgb, mask, (dx, dy) = self.random_square(rgb, mask, rng)
        points = moved(points, shift(dx, dy))
        if rng.random() < 0.5:
            rgb, mask = rgb[:, ::-1], mask[:, ::-1]
            points = moved(points, mirror(self.img_size))
        if rng.random() < self.colour_prob:
            rgb = colour_jitter(rgb, rng)
        if rng.random() < self.cast_prob:
            rgb = strong_cast(rgb, rng)
        if self.hue_turn_prob and rng.random() < self.hue_turn_prob:
            rgb = turn_hue(rgb, float(rng.uniform(0.15, 0.85)))
        return np.ascontiguousarray(rgb), np.ascontiguousarray(mask), points

    def random_square(self, rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        """An img_size square of the image (cropped, or placed on black), and how far its content moved."""
        n = self.img_size
        h, w = rgb.shape[:2]
        out_rgb = np.zeros((n, n, 3), np.uint8)
        out_mask = np.zeros((n, n), mask.dtype)
        # Crop where larger than n, place at a random offset where smaller.
        y0, x0 = int(rng.integers(0, max(h - n, 0) + 1)), int(rng.integers(0, max(w - n, 0) + 1))
        crop_rgb, crop_mask = rgb[y0 : y0 + n, x0 : x0 + n], mask[y0 : y0 + n, x0 : x0 + n]
        ch, cw = crop_mask.shape
        oy, ox = int(rng.integers(0, n - ch + 1)), int(rng.integers(0, n - cw + 1))
        out_rgb[oy : oy + ch, ox : ox + cw] = crop_rgb
        out_mask[oy : oy + ch, ox : ox + cw] = crop_mask
        return out_rgb, out_mask, (ox - x0, oy - y0)


#: Channel gains of strong casts: warm kitchen light (GTEA_gaze's orange), warm tungsten, cold daylight.
CASTS = {"kitchen": (1.25, 0.95, 0.55), "tungsten": (1.15, 1.0, 0.75), "cold": (0.8, 0.95, 1.25)}


def strong_cast(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A strong colour cast (one of CASTS, at 50-120% strength) or, one time in four, grey."""
    if rng.random() < 0.25:
        grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat((grey + 0.5).astype(np.uint8)[..., None], 3, axis=2)
    gains = np.array(list(CASTS.values())[int(rng.integers(len(CASTS)))], np.float32)
    gains = 1 + (gains - 1) * rng.uniform(0.5, 1.2)
    return np.clip(rgb.astype(np.float32) * gains + 0.5, 0, 255).astype(np.uint8)


def colour_jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """White balance / tint, gamma, brightness, contrast, saturation and hue, in float."""
    x = rgb.astype(np.float32) / 255.0
    s = strength
    gains = np.array(
        [
            rng.uniform(1 - 0.3 * s, 1 + 0.45 * s),
            rng.uniform(1 - 0.2 * s, 1 + 0.2 * s),
            rng.uniform(1 - 0.4 * s, 1 + 0.3 * s),
        ],
        np.float32,
    )
    x = x * (gains / gains.mean())
    x = np.clip(x, 0, 1) ** rng.uniform(1 - 0.3 * s, 1 + 0.5 * s)
    x = x * rng.uniform(1 - 0.4 * s, 1 + 0.4 * s)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - 0.3 * s, 1 + 0.3 * s) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(1 - 0.4 * s, 1 + 0.4 * s) + grey
    x = _rotate_hue(x, float(rng.uniform(-0.06, 0.06) * s))
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def turn_hue(rgb: np.ndarray, turns: float) -> np.ndarray:
    """RGB uint8 with its hue rotated by `turns` of a full circle (brightness and saturation kept)."""
    x = _rotate_hue(rgb.astype(np.float32) / 255.0, turns)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _rotate_hue(x: np.ndarray, turns: float) -> np.ndarray:
    """Rotate hue by `turns` of a full circle, about the grey axis (a linear map in RGB)."""
    if turns == 0:
        return x
    angle = 2 * np.pi * turns
    c, s = np.cos(angle), np.sin(angle)
    k = 1 / 3
    sq = np.sqrt(k)
    m = np.array(
        [
            [c + (1 - c) * k, k * (1 - c) - sq * s, k * (1 - c) + sq * s],
            [k * (1 - c) + sq * s, c + k * (1 - c), k * (1 - c) - sq * s],
            [k * (1 - c) - sq * s, k * (1 - c) + sq * s, c + k * (1 - c)],
        ],
        np.float32,
    )
    return x @ m.T
