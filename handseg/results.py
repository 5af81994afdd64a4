"""The result of segmenting one image: its mask and probability, its hands one by one (the mask split by
hand: `label_hands`), and what it can make of itself (an overlay, a picture of its hands, the files the
command line writes, a summary to serialise), so front ends don't."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from handseg.hands import Hand, landmarks_box
from handseg.hands.labels import label_hands
from handseg.image import resize_mask, resize_rgb, save_image, whole_files
from handseg.visualize import DEFAULT_OVERLAY_COLOR, draw_hands, mask_to_image, overlay, side_by_side

#: What handseg appends to an input's stem when it names what it writes: the mask (`photo_mask.png`),
#: the overlay, the image | mask | overlay panel, and the hands (a label PNG and a JSON file).
OUTPUT_TAGS = ("_mask", "_overlay", "_viz", "_hands")


#: What `Segmentation.save` writes for each kind of output: the endings of its files.
OUTPUT_FILES = {"mask": (), "overlay": (".png",), "viz": (".png",), "hands": (".png", ".json")}

#: The most pixels of a picture made for people to look at (the `_viz.png` panel): any viewer opens it.
VIEW_MAX_PIXELS = 16_000_000
VIZ_GAP = 8  #: white pixels between the viz panel's pictures


def sibling(mask_path: str | Path, kind: str, suffix: str = ".png") -> Path:
    """A file written beside a mask: `<stem>_overlay.png`, `<stem>_viz.png`, `<stem>_hands.png`, ..."""
    mask_path = Path(mask_path)
    return mask_path.with_name(f"{mask_path.stem.removesuffix('_mask')}_{kind}{suffix}")


def output_files(mask_path: str | Path, kind: str) -> list[Path]:
    """The files `Segmentation.save(mask_path, ...)` writes for one kind of output: the mask itself, or
    the files beside it (`sibling`)."""
    if kind == "mask":
        return [Path(mask_path)]
    return [sibling(mask_path, kind, suffix) for suffix in OUTPUT_FILES[kind]]


@dataclass(frozen=True, repr=False)
class SegmentedHand:
    """One hand of a Segmentation: its pixels of the mask, and what the landmark model says of it."""

    mask: np.ndarray  #: bool (H, W)
    handedness: str  #: "left" or "right", as seen in an ordinary (unmirrored) photo
    score: float  #: hand presence, 0.5 to 1
    landmarks: np.ndarray  #: float32 (21, 3) in pixels of the image (`handseg.hands.LANDMARK_NAMES`)
    handedness_score: float  #: how sure the side is, 0.5 to 1 (`handseg.hands.handedness`)
    #: Found by the landmark model confirming a region of the mask (no palm detected there).
    confirmed: bool = False

    def __repr__(self) -> str:
        return f"SegmentedHand({self.handedness}, {self.pixels} px, score={self.score})"

    @property
    def pixels(self) -> int:
        return int(self.mask.sum())

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1): the landmarks' bounding box in pixels."""
        return landmarks_box(self.landmarks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: handedness, scores, pixel count, box, the 21 landmarks as [x, y, z], and whether
        the hand was confirmed on the mask rather than found by the palm detector."""
        return {
            "handedness": self.handedness,
            "score": round(self.score, 4),
            "handedness_score": round(self.handedness_score, 4),
            "pixels": self.pixels,
            "box": [round(v, 1) for v in self.box],
            "landmarks": [[round(float(v), 2) for v in p] for p in self.landmarks],
            "confirmed": self.confirmed,
        }


@dataclass(repr=False)
class Segmentation:
    """The result for one image, at the image's original (displayed) size."""

    mask: np.ndarray  #: bool (H, W): True where a hand is
    #: float32 (H, W): the network's hand probability in [0, 1]; with hands confirmed, the mask is where it
    #: exceeds the threshold on a confirmed hand (`verified`).
    probability: np.ndarray
    model: str | None = None  #: the model that made it: a shipped model's name, a folder or a repo id
    backend: str | None = None  #: how it ran: "torch", "bf16", "onnx" or "int8" (`handseg.BACKENDS`)
    #: The full-size RGB image, or how to decode it when first asked (a reduced JPEG decode fed the network).
    _image: np.ndarray | Callable[[], np.ndarray] | None = field(default=None)
    #: The hands the landmark model found (landmarks in pixels of the full image), or how to find them when
    #: first asked (a model that does not read landmarks never waits for them); None: not looked for.
    _hands: list[Hand] | Callable[[], list[Hand]] | None = field(default=None)
    #: The file it was read from, where the input was a path (so outputs renamed apart can be traced back).
    source: str | None = None
    #: `hand_labels`, where they decided the mask (hands confirmed: `Segmenter(verify=True)`).
    _labels: np.ndarray | None = field(default=None, repr=False)

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

    @property
    def verified(self) -> bool:
        """Whether the mask holds confirmed hands only: every marked pixel belongs to one of `hands`."""
        return self._labels is not None

    @cached_property
    def hand_labels(self) -> np.ndarray:
        """uint8 (H, W): 0 background, i + 1 on the pixels of `hands[i]`, and (hands not confirmed) N + 1 on
        marked pixels no hand explains (`unexplained`); worked out on first use."""
        if self._labels is not None:
            return self._labels
        return label_hands(self.mask, [hand.landmarks for hand in self.detected or []])

    @cached_property
    def hands(self) -> list[SegmentedHand]:
        """The hands, one entry per hand (most present first; then those confirmed on the mask), each with
        its pixels of the mask, landmarks and side. With hands confirmed (`verified`) their masks together
        are the mask. Empty where the landmark stage did not run (`hands=False`)."""
        if self.detected is None:
            return []
        labels = self.hand_labels
        return [
            SegmentedHand(
                labels == i + 1, hand.handedness, hand.score, hand.landmarks, hand.handedness_score, hand.confirmed
            )  # fmt: skip
            for i, hand in enumerate(self.detected)
        ]

    @property
    def unexplained(self) -> np.ndarray | None:
        """bool (H, W): marked pixels that no hand explains (a hand nobody found, or something that is not a
        hand); all False with hands confirmed, which drops them; None where hands were not looked for."""
        if self.detected is None:
            return None
        return self.hand_labels == len(self.detected) + 1

    def plot(self, opacity: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): the image with each hand in its own colour, its skeleton, and L or R at its wrist
        (pixels no hand explains in yellow); the overlay's colour where hands were not looked for."""
        if self.detected is None:
            return self.overlay(opacity=opacity)
        hands: list[tuple[str | None, np.ndarray | None]] = [(h.handedness, h.landmarks) for h in self.hands]
        return draw_hands(self.image, self.hand_labels, [*hands, (None, None)], opacity)

    def overlay(self, color: str | tuple[int, int, int] = DEFAULT_OVERLAY_COLOR, opacity: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): the image with the hands tinted in `color` at `opacity` (0..1)."""
        return overlay(self.image, self.mask, color=color, opacity=opacity)

    def save(
        self,
        path: str | Path,
        *,
        overlay: bool = False,
        viz: bool = False,
        hands: bool = False,
        keep_existing: bool = False,
    ) -> list[Path]:
        """Write the mask at `path` (0/255, lossless: a PNG unless the extension says otherwise; JPEG is
        refused) and, when asked, beside it as `handseg segment` names them: the overlay
        (`<stem>_overlay.png`), the image | mask | overlay panel (`<stem>_viz.png`, scaled down to at most
        `VIEW_MAX_PIXELS` so that any viewer opens it), and the hands: a label PNG (`<stem>_hands.png`: 0
        background, 1..N by hand as in `hands`) and `<stem>_hands.json` (`to_dict()`). The files are one
        unit: all written, then renamed into place together (Ctrl-C waits for the renames), so an
        interrupted run leaves all of them or none. `keep_existing`: files already there are kept, and only
        the missing ones written (`--skip-existing`). A missing folder is made. Returns the paths written."""
        path = Path(path)
        kinds = ["mask", *(kind for kind, wanted in (("hands", hands), ("overlay", overlay), ("viz", viz)) if wanted)]
        targets = [(kind, target) for kind in kinds for target in output_files(path, kind)]
        if keep_existing:
            targets = [(kind, target) for kind, target in targets if not target.exists()]
        if not targets:
            return []
        path.parent.mkdir(parents=True, exist_ok=True)
        tinted = self.overlay() if {"overlay", "viz"} & {kind for kind, _ in targets} else None
        with whole_files([target for _, target in targets]) as partials:
            for (kind, target), partial in zip(targets, partials):
                if kind == "mask":
                    save_image(mask_to_image(self.mask), target, into=partial)
                elif kind == "hands" and target.suffix == ".json":
                    partial.write_text(json.dumps(self.to_dict(), indent=1))
                elif kind == "hands":
                    save_image(self.hand_labels, target, into=partial)
                elif kind == "overlay":
                    save_image(tinted, target, into=partial)
                else:
                    save_image(self._viz_panel(tinted), target, into=partial)
        return [target for _, target in targets]

    def _viz_panel(self, tinted: np.ndarray) -> np.ndarray:
        """image | mask | overlay, each scaled alike so the panel holds at most `VIEW_MAX_PIXELS`."""
        height, width = self.mask.shape
        # The largest s with height * s * (3 * width * s + 2 * VIZ_GAP) <= VIEW_MAX_PIXELS (the gaps keep their width).
        a, b = 3 * width * height, 2 * VIZ_GAP * height
        scale = min(1.0, (-b + (b * b + 4 * a * VIEW_MAX_PIXELS) ** 0.5) / (2 * a))
        size = (max(1, int(height * scale)), max(1, int(width * scale)))
        mask = mask_to_image(self.mask)
        if scale < 1.0:
            mask = resize_mask(mask, size)
        return side_by_side(resize_rgb(self.image, size), mask, resize_rgb(tinted, size), gap=VIZ_GAP)

    def to_dict(self) -> dict[str, Any]:
        """What the result says, as JSON-ready values (no pixels: `save` writes those): the source file
        (None where the input was not a path), size, hand share, model, backend and, where hands were looked
        for, whether they were confirmed, each hand (`SegmentedHand.to_dict`), label i + 1 of `hand_labels`
        being `hands[i]`, and how many marked pixels no hand explains."""
        height, width = self.mask.shape
        summary = {
            "source": self.source,
            "width": width,
            "height": height,
            "hand_fraction": self.hand_fraction,
            "hand_pixels": int(self.mask.sum()),
            "model": self.model,
            "backend": self.backend,
        }
        if self.detected is not None:
            summary["verified"] = self.verified
            summary["hands"] = [hand.to_dict() for hand in self.hands]
            summary["unexplained_pixels"] = int(self.unexplained.sum())
        return summary
