"""Between a photo and the network, both ways: the one place handseg prepares inputs and reads outputs.

    photo -> load_working_image (decode, at the working size) -> hand landmarks on that image (optional)
          -> to_model_input ([0, 1], CHW; plus the landmarks drawn, for a network that reads them)
          -> the network (which applies `normalize` with its own mean and std first)
    logits -> to_full_size (resize back, probability, optional CRF) -> threshold -> mask

`prepare` does the first line for one photo.

Every front end (CLI, app, video, datasets, Ray, training validation, evaluation, benchmarks) goes
through these through `handseg.Segmenter`, so the same photo gives the same mask everywhere.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from handseg.crf import refine_with_crf
from handseg.hands import Hand, hand_channels
from handseg.image import MAX_PIXELS, ImageInput, decode, resize_rgb

#: Cap on the longer side the network sees when neither the caller nor the model's config says
#: otherwise; larger images run down-scaled and the probability map is resized back to full size.
DEFAULT_MAX_SIDE = 1024

#: Hand probability above which a pixel is hand, unless the caller says otherwise.
DEFAULT_THRESHOLD = 0.5

#: The working resolution asked for: "auto" (the model's own, from its config; else DEFAULT_MAX_SIDE), a
#: cap on the longer side in pixels, or None (full size).
MaxSide = int | Literal["auto"] | None


def checked_threshold(threshold: float) -> float:
    """`threshold` if it is a probability; else a ValueError saying so."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    return threshold


def checked_scale(scale: float | None) -> float | None:
    """`scale` (None: not given) if it is above 0; else a ValueError saying so."""
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be above 0, got {scale}")
    return scale


def resolve_max_side(max_side: MaxSide, model_side: int | None = None) -> int | None:
    """The longer side the network sees (None: full size): `max_side` as given, or for "auto" the model's
    own (`model_side`, from its config) or DEFAULT_MAX_SIDE; anything else is a ValueError."""
    if max_side == "auto":
        return model_side or DEFAULT_MAX_SIDE
    if max_side is None:
        return None
    if isinstance(max_side, bool) or not isinstance(max_side, numbers.Integral) or max_side < 1:
        raise ValueError(f"max_side must be 'auto', None (full size) or a side of at least 1 pixel, got {max_side!r}")
    return int(max_side)


def working_size(
    height: int, width: int, *, scale: float | None = None, max_side: int | None = None
) -> tuple[int, int]:
    """The (height, width) the network runs at.

    `scale` multiplies both sides (the original project used 0.5); otherwise
    `max_side` caps the longer side, never up-sampling. Neither: full size.
    """
    if checked_scale(scale) is not None:
        factor = scale
    elif (side := resolve_max_side(max_side)) is not None:
        factor = min(1.0, side / max(height, width))
    else:
        factor = 1.0
    return max(1, round(height * factor)), max(1, round(width * factor))


@dataclass(frozen=True)
class WorkingImage:
    """An image as the network sees it, plus what is needed to map results back to full size."""

    small: np.ndarray  #: RGB uint8 at the working size
    full_size: tuple[int, int]  #: (height, width) of the full image, displayed orientation
    full: np.ndarray | None  #: the full-size RGB image, when decoding it could not be avoided


def load_working_image(
    source: ImageInput, *, scale: float | None = None, max_side: int | None = None, max_pixels: int = MAX_PIXELS
) -> WorkingImage:
    """Load `source` at its `working_size`, the way every front end feeds the network.

    JPEG files and bytes are decoded at a reduced DCT scale (Pillow's draft mode) that is still at
    least the working size, then resized: on a 1918x1280 photo for a 512-pixel working size this
    skips most of the decoding and resizing work (`python benchmarks/stages.py`). The full image
    is then not decoded at all (`full` is None).
    """
    rgb, full_size = decode(
        source, max_pixels=max_pixels, shrink_to=lambda h, w: working_size(h, w, scale=scale, max_side=max_side)
    )
    small = resize_rgb(rgb, working_size(*full_size, scale=scale, max_side=max_side))
    return WorkingImage(small=small, full_size=full_size, full=rgb if rgb.shape[:2] == full_size else None)


def to_model_input(rgb: np.ndarray, hand_channels: np.ndarray | None = None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float tensor (3, H, W) in [0, 1], what every handseg network (and every
    exported ONNX file) takes; with `hand_channels` ((K, H, W) from `handseg.hands.hand_channels`, for a
    network that reads landmarks), (3 + K, H, W)."""
    extra = 0 if hand_channels is None else len(hand_channels)
    # One tensor written in place, not the image's and then a concatenation's.
    model_input = torch.empty((3 + extra, *rgb.shape[:2]), dtype=torch.float32)
    torch.div(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1), 255.0, out=model_input[:3])
    if extra:
        model_input[3:] = torch.from_numpy(hand_channels)
    return model_input


@dataclass(frozen=True)
class Prepared:
    """A photo ready for the network: as it sees it, the hands found in that image, and its input tensor."""

    working: WorkingImage
    hands: list[Hand]  #: in pixels of `working.small`
    tensor: torch.Tensor  #: (C, h, w)


def prepare(
    source: ImageInput,
    *,
    find_hands: Callable[[np.ndarray], list[Hand]] | None = None,
    hand_inputs: int = 0,
    scale: float | None = None,
    max_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Prepared:
    """Load `source` at its working size, find its hands there with `find_hands` (a `HandLandmarker`, or
    one that tracks a video's hands; none without one), and make the network's input: the image, then, for
    a network with `hand_inputs` hand channels, the landmarks drawn (zeros where no hand was found)."""
    working = load_working_image(source, scale=scale, max_side=max_side, max_pixels=max_pixels)
    hands = find_hands(working.small) if find_hands is not None else []
    return Prepared(working, hands, working_input(working, hands, hand_inputs))


def working_input(working: WorkingImage, hands: list[Hand], hand_inputs: int = 0) -> torch.Tensor:
    """The network's input for a working image: the image, then, for a network with `hand_inputs` hand
    channels, `hands`' landmarks (pixels of `working.small`) drawn (zeros for no hands)."""
    drawn = None
    if hand_inputs:
        height, width = working.small.shape[:2]
        drawn = hand_channels([hand.landmarks for hand in hands], height, width)[:hand_inputs]
    return to_model_input(working.small, drawn)


def normalize(x: torch.Tensor, mean: torch.Tensor | None, std: torch.Tensor | None) -> torch.Tensor:
    """[0, 1] input -> what the weights were trained on: (x - mean) / std per image channel (None: as it
    is); channels after the image's (hand landmarks) stay as drawn.

    The network applies it first thing (`HandUNet.forward`), with the mean and std its config.json
    names, so an exported graph takes the same [0, 1] input as the network in PyTorch."""
    if mean is None:
        return x
    channels = mean.shape[1]
    if x.shape[1] == channels:
        return (x - mean) / std
    return torch.cat([(x[:, :channels] - mean) / std, x[:, channels:]], dim=1)


def probability_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(N, 1 or 2, H, W) logits -> (N, H, W) hand probability."""
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ValueError(f"cannot read a hand probability from {logits.shape[1]} output classes")


def to_full_size(logits: torch.Tensor, working: WorkingImage, *, crf: bool = False) -> np.ndarray:
    """One image's logits (1, C, h, w) at the working size -> float32 hand probability at full size (H, W).

    With `crf`, the dense CRF runs at the working resolution, its kernels scaled to match: as good as
    full-size CRF on the val split at a third of the time (`python benchmarks/quality.py`), where a
    48 MP photo would need many GB at full size."""
    height, width = working.full_size
    logits = logits.float().cpu()
    if crf:
        small = working.small
        refined = refine_with_crf(small, probability_from_logits(logits)[0].numpy(), pixel_scale=small.shape[1] / width)
        probability = torch.from_numpy(refined)[None, None]
        if probability.shape[-2:] != (height, width):
            probability = F.interpolate(probability, size=(height, width), mode="bilinear", align_corners=False)
        probability = probability[0, 0]
    else:
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probability = probability_from_logits(logits)[0]
    return probability.numpy().astype(np.float32, copy=False)


def hands_at_full_size(
    prepared: Prepared, find: Callable[[np.ndarray], list[Hand]] | None
) -> list[Hand] | Callable[[], list[Hand]]:
    """The hands of a prepared image in pixels of the full image: those found already, or (`find`) how to
    find them on its working image when first asked for."""
    (height, width), (small_h, small_w) = prepared.working.full_size, prepared.working.small.shape[:2]

    def full_size(hands: list[Hand]) -> list[Hand]:
        return [hand.scaled(width / small_w, height / small_h) for hand in hands]

    if find is None:
        return full_size(prepared.hands)
    small = prepared.working.small
    return lambda: full_size(find(small))
