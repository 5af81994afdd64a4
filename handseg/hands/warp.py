"""A rotated rectangle of an image cut out and resized, rounding as OpenCV's warpPerspective does.

MediaPipe crops its detector's and landmark model's inputs with OpenCV (INTER_LINEAR): each output pixel's
source position is rounded to 1/32 of a pixel, and the four neighbours are blended with 15-bit integer
weights into uint8. Cropping the same way (numpy only) keeps the landmarks MediaPipe's: a warp in floats
doubled the landmark error and flipped a presence score (tests/test_hands.py holds the agreement).
"""

from __future__ import annotations

import numpy as np

_TAB = 32  # OpenCV's INTER_TAB_SIZE: source positions in 1/32 pixel
_COEF_BITS = 15  # INTER_REMAP_COEF_BITS: the blending weights' fixed point


def rect_corners(center: tuple[float, float], size: tuple[float, float], rotation: float) -> np.ndarray:
    """The corners of a rotated rectangle (pixels; `rotation` in radians) as OpenCV's boxPoints gives
    them, in float32: bottom-left, top-left, top-right, bottom-right (for no rotation, y down)."""
    cx, cy = np.float32(center[0]), np.float32(center[1])
    width, height = np.float32(size[0]), np.float32(size[1])
    degrees = np.float32(np.float32(rotation) * np.float32(180.0) / np.float32(np.pi))
    angle = float(degrees) * np.pi / 180.0
    b = np.float32(np.cos(angle)) * np.float32(0.5)
    a = np.float32(np.sin(angle)) * np.float32(0.5)
    p0 = (cx - a * height - b * width, cy + b * height - a * width)
    p1 = (cx + a * height - b * width, cy - b * height - a * width)
    p2 = (np.float32(2) * cx - p0[0], np.float32(2) * cy - p0[1])
    p3 = (np.float32(2) * cx - p1[0], np.float32(2) * cy - p1[1])
    return np.array([p0, p1, p2, p3], dtype=np.float32)


def crop(
    image: np.ndarray,
    center: tuple[float, float],
    size: tuple[float, float],
    rotation: float,
    out_size: int,
    *,
    border: str = "replicate",
) -> tuple[np.ndarray, np.ndarray]:
    """The rectangle (pixels of `image`, RGB uint8) resized to `out_size` x `out_size`, and the 2x3
    matrix that maps output pixels back to `image`'s. `border`: "replicate" or "zero" outside the image."""
    corners = rect_corners(center, size, rotation).astype(np.float64)
    bottom_left, top_left, top_right = corners[0], corners[1], corners[2]
    # The output's corners are (0, n), (0, 0), (n, 0): its x axis runs top-left -> top-right, y top-left -> bottom-left.
    to_source = np.empty((2, 3))
    to_source[:, 0] = (top_right - top_left) / out_size
    to_source[:, 1] = (bottom_left - top_left) / out_size
    to_source[:, 2] = top_left
    return warp(image, to_source, out_size, border=border), to_source


def warp(image: np.ndarray, to_source: np.ndarray, out_size: int, *, border: str = "replicate") -> np.ndarray:
    """out[y, x] = image at to_source @ (x, y, 1), bilinear, rounded as OpenCV rounds (see the module)."""
    height, width, channels = image.shape
    steps = np.arange(out_size, dtype=np.float64)
    fixed = []
    for row in to_source:  # source x, then y, of every output pixel, in 1/32 pixel
        source = row[0] * steps[None, :] + row[1] * steps[:, None] + row[2]
        fixed.append(np.rint(source * _TAB).astype(np.int32).ravel())
    fixed_x, fixed_y = fixed
    x0, y0 = fixed_x >> 5, fixed_y >> 5
    fx, fy = fixed_x & (_TAB - 1), fixed_y & (_TAB - 1)
    # OpenCV's bilinear weights (32 - f) * (32 - g) * 32: exact integers summing to 2**15.
    weights = ((_TAB - fx) * (_TAB - fy), fx * (_TAB - fy), (_TAB - fx) * fy, fx * fy)
    # One plane per channel: numpy gathers and multiplies a plane at a time faster than pixels of three
    # channels (a trailing axis of three is its slow case).
    planes = np.ascontiguousarray(image.reshape(-1, channels).T)
    total = np.full((channels, out_size * out_size), 1 << (_COEF_BITS - 1), dtype=np.int32)
    inside = (x0 >= 0) & (x0 < width - 1) & (y0 >= 0) & (y0 < height - 1)
    for (dx, dy), weight in zip(((0, 0), (1, 0), (0, 1), (1, 1)), weights):
        xx, yy = x0 + dx, y0 + dy
        if not inside.all():
            if border == "replicate":
                xx, yy = np.clip(xx, 0, width - 1), np.clip(yy, 0, height - 1)
            else:  # zero: a neighbour outside the image counts as black
                weight = weight * ((xx >= 0) & (xx < width) & (yy >= 0) & (yy < height))
                xx, yy = np.clip(xx, 0, width - 1), np.clip(yy, 0, height - 1)
        total += np.take(planes, yy * width + xx, axis=1) * (weight * _TAB)
    return (total >> _COEF_BITS).clip(0, 255).astype(np.uint8).T.reshape(out_size, out_size, channels)
