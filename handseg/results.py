"""The result of segmenting one image: its mask and probability, its hands one by one, and what it can
make of itself (an overlay, a picture of its hands, the files the command line writes, a summary to
serialise), so front ends don't."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from handseg.hands import Hand, label_hands
from handseg.image import save_image, whole_file
from handseg.visualize import DEFAULT_OVERLAY_COLOR, draw_hands, mask_to_image, overlay, side_by_side

#: What handseg appends to an input's stem when it names what it writes: the mask (`photo_mask.png`),
#: the overlay, the image | mask | overlay panel, and the hands (a label PNG and a JSON file).
OUTPUT_TAGS = ("_mask", "_overlay", "_viz", "_hands")


#: The files `Segmentation.save` can write beside a mask, by kind: their endings.
EXTRA_FILES = {"overlay": (".png",), "viz": (".png",), "hands": (".png", ".json")}


def sibling(mask_path: str | Path, kind: str, suffix: str = ".png") -> Path:
    """A file written beside a mask: `<stem>_overlay.png`, `<stem>_viz.png`, `<stem>_hands.png`, ..."""
    mask_path = Path(mask_path)
    return mask_path.with_name(f"{mask_path.stem.removesuffix('_mask')}_{kind}{suffix}")


def extra_files(mask_path: str | Path, kinds: Iterable[str]) -> list[Path]:
    """Every file `Segmentation.save(mask_path, **{kind: True})` writes beside the mask, for these kinds."""
    return [sibling(mask_path, kind, suffix) for kind in kinds for suffix in EXTRA_FILES[kind]]


@dataclass(frozen=True, repr=False)
class SegmentedHand:
    """One hand of a Segmentation: its pixels of the mask, and what the landmark model says of it.
    A `handedness` of None gathers mask pixels that no detected hand explains (a hand the detector
    missed, or something that is not a hand): every pixel of the mask belongs to exactly one entry."""

    mask: np.ndarray  #: bool (H, W)
    handedness: str | None  #: "left" or "right", as seen in an ordinary (unmirrored) photo; None: unknown
    score: float | None  #: hand presence, 0.5 to 1 (None for the unknown entry)
    landmarks: np.ndarray | None  #: float32 (21, 3) in pixels of the image (`handseg.hands.LANDMARK_NAMES`)
    handedness_score: float | None = None

    def __repr__(self) -> str:
        return f"SegmentedHand({self.handedness}, {self.pixels} px, score={self.score})"

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        """(x0, y0, x1, y1): the landmarks' bounding box in pixels (None for the unknown entry)."""
        if self.landmarks is None:
            return None
        x, y = self.landmarks[:, 0], self.landmarks[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: handedness, scores, pixel count, box and the 21 landmarks as [x, y, z]."""
        landmarks = None if self.landmarks is None else [[round(float(v), 2) for v in p] for p in self.landmarks]
        return {
            "handedness": self.handedness,
            "score": None if self.score is None else round(self.score, 4),
            "handedness_score": None if self.handedness_score is None else round(self.handedness_score, 4),
            "pixels": self.pixels,
            "box": None if self.box is None else [round(v, 1) for v in self.box],
            "landmarks": landmarks,
        }


@dataclass(repr=False)
class Segmentation:
    """The result for one image, at the image's original (displayed) size."""

    mask: np.ndarray  #: bool (H, W): True where a hand is
    probability: np.ndarray  #: float32 (H, W): hand probability in [0, 1]
    model: str | None = None  #: the model that made it: a shipped model's name, a folder or a repo id
    backend: str | None = None  #: how it ran: "torch", "bf16", "onnx" or "int8" (`handseg.BACKENDS`)
    #: The full-size RGB image, or how to decode it when first asked (a reduced JPEG decode fed the network).
    _image: np.ndarray | Callable[[], np.ndarray] | None = field(default=None)
    #: The hands the landmark model found (landmarks in pixels of the full image), or how to find them when
    #: first asked (a model that does not read landmarks never waits for them); None: not looked for.
    _hands: list[Hand] | Callable[[], list[Hand]] | None = field(default=None)

    def __repr__(self) -> str:
        height, width = self.mask.shape
        return (
            f"Segmentation({width}x{height}, hand {100 * self.hand_fraction:.1f}%, model={self.model!r}, "
            f"backend={self.backend!r})"
        )

    @property
    def image(self) -> np.ndarray:
        """uint8 (H, W, 3): the RGB image as segmented, at full size, decoded on first use when the network
        saw a reduced decode (callers that only want the mask never pay for it)."""
        if callable(self._image):
            self._image = self._image()
        if self._image is None:
            raise ValueError("this result was made without its image")
        return self._image

    @property
    def detected(self) -> list[Hand] | None:
        """The hands the landmark model found, most present first, landmarks in pixels of the full image
        (found on first use, where the model did not need them); None where hands were not looked for
        (`hands=False`)."""
        if callable(self._hands):
            self._hands = self._hands()
        return self._hands

    @property
    def hand_fraction(self) -> float:
        """Share of the image's pixels marked as hand."""
        return float(self.mask.mean())

    @cached_property
    def hand_labels(self) -> np.ndarray:
        """uint8 (H, W): 0 background, i + 1 on the pixels of `hands[i]` (worked out on first use)."""
        return label_hands(self.mask, [hand.landmarks for hand in self.detected or []])

    @cached_property
    def hands(self) -> list[SegmentedHand]:
        """The mask split by hand: one entry per detected hand (most present first), then, when some mask
        pixels are near no detected hand, one entry of unknown handedness for them. Together the entries'
        masks are the mask. Empty where the landmark stage did not run (`hands=False`)."""
        if self.detected is None:
            return []
        labels, found = self.hand_labels, self.detected
        entries = [
            SegmentedHand(labels == i + 1, hand.handedness, hand.score, hand.landmarks, hand.handedness_score)
            for i, hand in enumerate(found)
        ]
        rest = labels == len(found) + 1
        if rest.any():
            entries.append(SegmentedHand(rest, None, None, None))
        return entries

    def plot(self, opacity: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): the image with each hand in its own colour, its skeleton, and L or R at its wrist
        (pixels no detected hand explains in yellow); the overlay's colour where hands were not looked for."""
        if self.detected is None:
            return self.overlay(opacity=opacity)
        return draw_hands(self.image, self.hand_labels, [(h.handedness, h.landmarks) for h in self.hands], opacity)

    def overlay(self, color: str | tuple[int, int, int] = DEFAULT_OVERLAY_COLOR, opacity: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): the image with the hands tinted in `color` at `opacity` (0..1)."""
        return overlay(self.image, self.mask, color=color, opacity=opacity)

    def save(self, path: str | Path, *, overlay: bool = False, viz: bool = False, hands: bool = False) -> list[Path]:
        """Write the mask at `path` (0/255, lossless: a PNG unless the extension says otherwise; JPEG is
        refused) and, when asked, beside it as `handseg segment` names them: the overlay
        (`<stem>_overlay.png`), the image | mask | overlay panel (`<stem>_viz.png`), and the hands: a label
        PNG (`<stem>_hands.png`: 0 background, 1..N by hand as in `hands`) and `<stem>_hands.json`
        (`to_dict()`). Each file is written whole or not at all; a missing folder is made. Returns the
        paths written."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        written = [save_image(mask_to_image(self.mask), path)]
        if hands:
            written.append(save_image(self.hand_labels, sibling(path, "hands")))
            written.append(_write_text(sibling(path, "hands", ".json"), json.dumps(self.to_dict(), indent=1)))
        if overlay or viz:
            tinted = self.overlay()
            if overlay:
                written.append(save_image(tinted, sibling(path, "overlay")))
            if viz:
                panel = side_by_side(self.image, mask_to_image(self.mask), tinted)
                written.append(save_image(panel, sibling(path, "viz")))
        return written

    def to_dict(self) -> dict[str, Any]:
        """What the result says, as JSON-ready values (no pixels: `save` writes those): size, hand share,
        model, backend and, where hands were looked for, each hand (`SegmentedHand.to_dict`), label i + 1
        of `hand_labels` being `hands[i]`."""
        height, width = self.mask.shape
        summary = {
            "width": width,
            "height": height,
            "hand_fraction": self.hand_fraction,
            "hand_pixels": int(self.mask.sum()),
            "model": self.model,
            "backend": self.backend,
        }
        if self.detected is not None:
            summary["hands"] = [hand.to_dict() for hand in self.hands]
        return summary


def _write_text(path: Path, text: str) -> Path:
    """A text file written whole or not at all."""
    with whole_file(path) as partial:
        partial.write_text(text)
    return path
