"""Pictures of results: overlays, error maps and side-by-side panels (uint8 RGB arrays)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from handseg.hands.topology import BONES

#: The overlay's tint, unless another is asked for.
DEFAULT_OVERLAY_COLOR = "#ff3c8c"
#: Error-map colours: true positive, false positive, false negative.
TP_COLOR = (46, 204, 113)
FP_COLOR = (231, 76, 60)
FN_COLOR = (52, 152, 219)


def parse_color(color: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'#rrggbb', 'rgb(r, g, b)' / 'rgba(...)' or an (r, g, b) tuple."""
    if isinstance(color, tuple):
        return color
    text = color.strip()
    if text.startswith("#") and len(text) == 7:
        return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if text.startswith(("rgb(", "rgba(")):
        parts = [float(p) for p in text[text.index("(") + 1 : -1].split(",")[:3]]
        return tuple(int(round(p)) for p in parts)  # type: ignore[return-value]
    raise ValueError(f"unrecognized colour {color!r}: use '#rrggbb' or 'rgb(r, g, b)'")


def overlay(
    rgb: np.ndarray, mask: np.ndarray, color: str | tuple[int, int, int] = DEFAULT_OVERLAY_COLOR, opacity: float = 0.5
) -> np.ndarray:
    """The image with the mask tinted in `color` at `opacity` (0..1)."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    out = rgb.astype(np.float32)
    tint = np.array(parse_color(color), dtype=np.float32)
    out[mask] = (1 - opacity) * out[mask] + opacity * tint
    return out.round().astype(np.uint8)


def mask_to_image(mask: np.ndarray) -> np.ndarray:
    """Bool mask -> uint8 0/255 greyscale, the format masks are saved in."""
    return mask.astype(np.uint8) * 255


def error_map(pred: np.ndarray, truth: np.ndarray, rgb: np.ndarray | None = None) -> np.ndarray:
    """TP/FP/FN in three colours over a dimmed image (or black)."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in size")
    base = (rgb.astype(np.float32) * 0.35) if rgb is not None else np.zeros((*pred.shape, 3), np.float32)
    out = base.astype(np.uint8)
    out[pred & truth] = TP_COLOR
    out[pred & ~truth] = FP_COLOR
    out[~pred & truth] = FN_COLOR
    return out


def side_by_side(*panels: np.ndarray, gap: int = 8) -> np.ndarray:
    """Panels (H, W) or (H, W, 3) of one height, left to right, with white gaps."""
    rgb = [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p for p in panels]
    height = rgb[0].shape[0]
    if any(p.shape[0] != height for p in rgb):
        raise ValueError("panels must share one height")
    spacer = np.full((height, gap, 3), 255, np.uint8)
    pieces = []
    for i, p in enumerate(rgb):
        if i:
            pieces.append(spacer)
        pieces.append(p.astype(np.uint8))
    return np.concatenate(pieces, axis=1)


#: One colour per hand, in the order the hands are listed (then round again), with the names people call
#: them by; yellow: marked, but near no hand the landmark model found.
HAND_COLORS = ((255, 60, 140), (0, 170, 255), (255, 120, 0), (120, 220, 60), (170, 90, 255))
HAND_COLOR_NAMES = ("pink", "blue", "orange", "green", "purple")
UNKNOWN_HAND_COLOR = (255, 235, 0)


def hand_color(index: int, handedness: str | None) -> tuple[str, tuple[int, int, int]]:
    """(name, RGB) of the colour `draw_hands` gives the hand listed at `index` (0-based)."""
    if handedness is None:
        return "yellow", UNKNOWN_HAND_COLOR
    return HAND_COLOR_NAMES[index % len(HAND_COLORS)], HAND_COLORS[index % len(HAND_COLORS)]


def draw_hands(
    rgb: np.ndarray,
    labels: np.ndarray,
    hands: list[tuple[str | None, np.ndarray | None]],
    opacity: float = 0.5,
) -> np.ndarray:
    """The image with each hand's pixels (label i + 1 in `labels`) tinted in its own colour (yellow: marked
    but near no found hand), its skeleton drawn and "L" or "R" written at its wrist. `hands`: (handedness,
    landmarks (21, 2+) in pixels, or None) per label, in label order."""
    out = rgb.astype(np.float32)
    for index, (handedness, _) in enumerate(hands):
        color = np.array(hand_color(index, handedness)[1])
        pixels = labels == index + 1
        out[pixels] = (1 - opacity) * out[pixels] + opacity * color
    picture = Image.fromarray(out.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    scale = max(rgb.shape[:2]) / 640
    for index, (handedness, points) in enumerate(hands):
        if points is None:
            continue
        color = hand_color(index, handedness)[1]
        xy = [(float(x), float(y)) for x, y in points[:, :2]]
        for a, b in BONES:
            draw.line([xy[a], xy[b]], fill=(255, 255, 255), width=max(1, round(2 * scale)))
        radius = max(1.5, 2.5 * scale)
        for x, y in xy:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
        font = _font(max(10, round(18 * scale)))
        text = {"left": "L", "right": "R"}.get(handedness or "", "?")
        draw.text((xy[0][0] + 2 * radius, xy[0][1]), text, fill=color, font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    return np.asarray(picture)


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except (TypeError, OSError):  # a Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()
