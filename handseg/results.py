"""The result of segmenting one image: its mask and probability, and what it can make of itself
(an overlay, the files the command line writes, a summary to serialise), so front ends don't."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handseg.image import save_image
from handseg.visualize import DEFAULT_OVERLAY_COLOR, mask_to_image, overlay, side_by_side

#: What handseg appends to an input's stem when it names what it writes: the mask
#: (`photo_mask.png`), the overlay and the image | mask | overlay panel.
OUTPUT_TAGS = ("_mask", "_overlay", "_viz")


def sibling(mask_path: str | Path, kind: str) -> Path:
    """The picture written beside a mask: `<stem>_overlay.png`, `<stem>_viz.png`."""
    mask_path = Path(mask_path)
    return mask_path.with_name(f"{mask_path.stem.removesuffix('_mask')}_{kind}.png")


@dataclass(repr=False)
class Segmentation:
    """The result for one image, at the image's original (displayed) size."""

    mask: np.ndarray  #: bool (H, W): True where a hand is
    probability: np.ndarray  #: float32 (H, W): hand probability in [0, 1]
    model: str | None = None  #: the model that made it: a shipped model's name, a folder or a repo id
    backend: str | None = None  #: how it ran: "torch", "bf16", "onnx" or "int8" (`handseg.BACKENDS`)
    #: The full-size RGB image, or how to decode it when first asked (a reduced JPEG decode fed the network).
    _image: np.ndarray | Callable[[], np.ndarray] | None = field(default=None)

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
    def hand_fraction(self) -> float:
        """Share of the image's pixels marked as hand."""
        return float(self.mask.mean())

    def overlay(self, color: str | tuple[int, int, int] = DEFAULT_OVERLAY_COLOR, opacity: float = 0.5) -> np.ndarray:
        """uint8 (H, W, 3): the image with the hands tinted in `color` at `opacity` (0..1)."""
        return overlay(self.image, self.mask, color=color, opacity=opacity)

    def save(self, path: str | Path, *, overlay: bool = False, viz: bool = False) -> list[Path]:
        """Write the mask at `path` (0/255, lossless: a PNG unless the extension says otherwise; JPEG is
        refused) and, when asked, the overlay (`<stem>_overlay.png`) and the image | mask | overlay panel
        (`<stem>_viz.png`) beside it, as `handseg segment` names them. Each file is written whole or not
        at all; a missing folder is made. Returns the paths written."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        written = [save_image(mask_to_image(self.mask), path)]
        if overlay or viz:
            tinted = self.overlay()
            if overlay:
                written.append(save_image(tinted, sibling(path, "overlay")))
            if viz:
                panel = side_by_side(self.image, mask_to_image(self.mask), tinted)
                written.append(save_image(panel, sibling(path, "viz")))
        return written

    def to_dict(self) -> dict[str, Any]:
        """What the result says, as JSON-ready values (no pixels: `save` writes those)."""
        height, width = self.mask.shape
        return {
            "width": width,
            "height": height,
            "hand_fraction": self.hand_fraction,
            "hand_pixels": int(self.mask.sum()),
            "model": self.model,
            "backend": self.backend,
        }
