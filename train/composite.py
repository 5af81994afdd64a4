"""Hands pasted onto photos, so the model sees hands over and beside faces and skin.

A `HandCutout` is a hand cut from a labelled training photo with its own label map
(or an ASL cut-out on black). `paste_hand` puts one onto a background photo the
way hands appear in photographs:

- scaled to a share of the background's shorter side, flipped, rotated;
- either entering from the frame edge its arm came from in its own photo (wrist
  and forearm cut by the frame, as in real photos), or anywhere, partly outside;
- the background's colour cast and brightness transferred onto it, a light
  gradient for shading, sometimes blurred to the background's sharpness;
- its sharpness and noise matched to the background's around it (blurred where it is
  sharper, grain added where the background is noisier), so the seam does not show;
- soft edges: the hand is alpha-blended with a feathered matte, its label map
  is taken where the matte is at least one half, so the mask follows the pasted
  pixels exactly, and the cut-out's outermost pixel ring (the source photo's
  background) is never pasted, so there is no halo;
- its hand landmarks (`HandCutout.points`, found in its own photo) moved with it.

Distractors (`distractor_cutout`) go through exactly the same pipeline: patches of hand-free
photos (faces, hair, necks, flowers, fabrics, warm-coloured things), cut with a hand's silhouette
or a blob and labelled background everywhere, so that "looks pasted" says nothing about "hand".
`jpeg_roundtrip` re-encodes a finished composite, so pasted edges carry the same artefacts as the
rest of the photo.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from train.labels import BACKGROUND, HAND
from train.landmarks import Points, mirror, moved, scale, shift, turned

EDGES = ("top", "right", "bottom", "left")


@dataclass
class HandCutout:
    """A hand (and whatever forearm came with it) with its label map, cropped to its mask."""

    rgb: np.ndarray  #: uint8 (h, w, 3)
    labels: np.ndarray  #: uint8 (h, w): HAND, BACKGROUND (labelled forearm) or IGNORE
    shape: np.ndarray  #: bool (h, w): the pixels that belong to the cut-out
    entry_edge: str | None  #: the frame edge its arm entered from in its own photo, if any
    #: Landmarks (21, 2) of the hands in it, in its pixels (found in its own photo); a distractor's are
    #: a false detection: the skeleton of the hand whose silhouette it was cut with.
    points: tuple[np.ndarray, ...] = ()


def cutouts_from_photo(
    rgb: np.ndarray, mask: np.ndarray, labels: np.ndarray, min_share: float = 0.004, points: Points = ()
) -> list[HandCutout]:
    """One cut-out per mask component of at least `min_share` of the photo, with the landmarks (`points`,
    the photo's pixels) of the hands most of whose landmarks lie on it."""
    components, count = ndimage.label(mask)
    h, w = mask.shape
    out = []
    for index, found in enumerate(ndimage.find_objects(components), start=1):
        shape = components[found] == index
        if shape.sum() < min_share * h * w:
            continue
        ys, xs = found
        touches = {"top": ys.start == 0, "bottom": ys.stop == h, "left": xs.start == 0, "right": xs.stop == w}
        edges = [e for e in EDGES if touches[e]]
        corner = np.array([xs.start, ys.start], np.float32)
        own = tuple(p - corner for p in points if _on_component(p, components, index))
        out.append(
            HandCutout(rgb[found].copy(), labels[found].copy(), shape, edges[0] if len(edges) == 1 else None, own)
        )
    return out


def _on_component(points: np.ndarray, components: np.ndarray, index: int) -> bool:
    """Whether most of a hand's landmarks fall on mask component `index`."""
    h, w = components.shape
    x = np.clip(points[:, 0].astype(int), 0, w - 1)
    y = np.clip(points[:, 1].astype(int), 0, h - 1)
    return (components[y, x] == index).mean() > 0.5


def cutout_from_black(rgb: np.ndarray, mask: np.ndarray, points: Points = ()) -> HandCutout:
    """An ASL-style cut-out on black (its mask marks the hand); the wrist is at the bottom. `points`: its
    hands' landmarks in `rgb`'s pixels."""
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    shape = mask[box]
    labels = np.where(shape, HAND, BACKGROUND).astype(np.uint8)
    own = tuple(p - np.array([xs.min(), ys.min()], np.float32) for p in points)
    return HandCutout(rgb[box].copy(), labels, shape.copy(), "bottom", own)


@dataclass
class PasteSettings:
    """How hands are pasted (`python -m train.run --help` has the matching flags)."""

    size_range: tuple[float, float] = (0.3, 0.9)  #: longer side, as a share of the background's shorter side
    edge_prob: float = 0.6  #: share of hands entering from the frame edge (when the cut-out has one)
    match_colour: tuple[float, float] = (0.4, 1.0)  #: how much of the background's cast is transferred
    blur_prob: float = 0.3
    feather: tuple[float, float] = (0.6, 1.5)  #: matte blur sigma in pixels
    match_sharpness: bool = True  #: blur and add grain so the paste looks as sharp and noisy as its surroundings
    face_overlap_prob: float = 0.3  #: share of hands pasted onto a face photo that go over the face itself
    jpeg_prob: float = 0.5  #: share of pasted-on photos re-encoded as JPEG (quality 40-95) afterwards


@dataclass
class DistractorSettings:
    """Non-hand patches pasted like hands and labelled background (`python -m train.run --help`)."""

    prob: float = 0.5  #: share of hand-free photos and composites given one or two (photos with hands: half that)
    hand_shaped: float = 0.5  #: share cut with a real hand's silhouette (the rest: blobs)
    warm_bias: float = 0.5  #: share taken from the warmest of four candidate windows (skin, pink, gold)


def _rotate(rgb: np.ndarray, labels: np.ndarray, shape: np.ndarray, degrees: float, points: Points = ()):
    """Rotate counter-clockwise about the centre, expanding the canvas; outside is not part of the cut-out."""
    if degrees % 360 == 0:
        return rgb, labels, shape, list(points)
    r = np.array(Image.fromarray(rgb).rotate(degrees, Image.BILINEAR, expand=True))
    lab = np.array(Image.fromarray(labels).rotate(degrees, Image.NEAREST, expand=True, fillcolor=BACKGROUND))
    s = np.array(Image.fromarray(shape.astype(np.uint8) * 255).rotate(degrees, Image.NEAREST, expand=True)) > 127
    return r, lab, s, moved(list(points), turned(degrees, shape.shape, s.shape))


def _resize(rgb: np.ndarray, labels: np.ndarray, shape: np.ndarray, factor: float, points: Points = ()):
    h, w = shape.shape
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    r = np.array(Image.fromarray(rgb).resize(size, Image.BILINEAR))
    lab = np.array(Image.fromarray(labels).resize(size, Image.NEAREST))
    s = np.array(Image.fromarray(shape.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    return r, lab, s, moved(list(points), scale(size[0] / w, size[1] / h))


def _colour_matched(hand: np.ndarray, shape: np.ndarray, background: np.ndarray, amount: float, rng) -> np.ndarray:
    """Move the hand's colour cast and brightness towards the background's, and shade it."""
    x = hand.astype(np.float32)
    hand_mean = x[shape].mean(axis=0) + 1.0
    bg_mean = background.reshape(-1, 3).astype(np.float32).mean(axis=0) + 1.0
    # The cast is each channel relative to grey; keep the hand's own colour, add the scene's cast.
    cast = (bg_mean / bg_mean.mean()) / (hand_mean / hand_mean.mean())
    brightness = (bg_mean.mean() / hand_mean.mean()) ** rng.uniform(0.2, 0.6)
    x = x * cast**amount * brightness
    # A light gradient across the hand: one side lit, the other in shade.
    h, w = shape.shape
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * np.linspace(-1, 1, w)[None, :] + np.sin(angle) * np.linspace(-1, 1, h)[:, None]
    x = x * (1 + rng.uniform(0, 0.25) * ramp)[..., None]
    return np.clip(x, 0, 255)


def _detail(grey: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean absolute difference from a slightly blurred copy: how much fine detail (sharpness) there is."""
    diff = np.abs(grey - ndimage.gaussian_filter(grey, 1.0))
    return float(diff[where].mean() if where is not None and where.any() else diff.mean())


def _noise_sigma(grey: np.ndarray) -> float:
    """Immerkaer's fast estimate of white-noise sigma, from a Laplacian-difference kernel."""
    if min(grey.shape) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    response = ndimage.convolve(grey, kernel)[1:-1, 1:-1]
    return float(np.abs(response).mean() * np.sqrt(np.pi / 2) / 6)


def match_sharpness_and_noise(
    paste: np.ndarray, inner: np.ndarray, surroundings: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Blur `paste` (float RGB) until it is no sharper than `surroundings` (uint8 RGB, the background
    under and around it), then add the grain the surroundings have and it lacks."""
    grey = paste.mean(axis=2)
    around = surroundings.astype(np.float32).mean(axis=2)
    target = _detail(around)
    if _detail(grey, inner) > 1.1 * target:
        for sigma in (0.5, 0.8, 1.2, 1.7, 2.4):
            blurred = ndimage.gaussian_filter(paste, (sigma, sigma, 0))
            if _detail(blurred.mean(axis=2), inner) <= 1.1 * target:
                break
        paste = blurred
    missing = _noise_sigma(around) ** 2 - _noise_sigma(paste.mean(axis=2)) ** 2
    if missing > 0.25:
        paste = paste + rng.normal(0, np.sqrt(missing), paste.shape[:2])[..., None]
    return np.clip(paste, 0, 255)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """The image as a JPEG at `quality` would decode: pasted and photographed pixels alike get its artefacts."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.array(Image.open(buffer).convert("RGB"))


def blob_shape(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random blob filling much of a (height, width) box: two to four overlapping ellipses."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shape = np.zeros((height, width), bool)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
        ry, rx = rng.uniform(0.15, 0.45) * height, rng.uniform(0.15, 0.45) * width
        angle = rng.uniform(0, np.pi)
        dy, dx = ys - cy, xs - cx
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        shape |= (u / rx) ** 2 + (v / ry) ** 2 <= 1
    return shape


def _warmth(rgb: np.ndarray) -> float:
    """Share of pink, magenta, orange, gold and skin-coloured pixels: red clearly above green."""
    r, g = rgb[..., 0].astype(np.int16), rgb[..., 1].astype(np.int16)
    return float(((r > g + 15) & (r > 80)).mean())


def distractor_cutout(
    photo: np.ndarray,
    shape: np.ndarray,
    entry_edge: str | None,
    rng: np.random.Generator,
    warm_bias: float = 0.5,
    points: Points = (),
) -> HandCutout:
    """A patch of a hand-free `photo` cut with `shape` (a hand's silhouette, or a blob), labelled
    background everywhere. With probability `warm_bias` the warmest of four candidate windows is
    taken (skin, pink petals, gold), the colours a hand segmenter might mistake for a hand."""
    ph, pw = photo.shape[:2]
    factor = min(1.0, 0.95 * ph / shape.shape[0], 0.95 * pw / shape.shape[1])
    if factor < 1.0:
        size = (max(2, round(shape.shape[1] * factor)), max(2, round(shape.shape[0] * factor)))
        shape = np.array(Image.fromarray(shape.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 127
    h, w = shape.shape
    windows = []
    for _ in range(4):
        y0, x0 = int(rng.integers(0, ph - h + 1)), int(rng.integers(0, pw - w + 1))
        windows.append(photo[y0 : y0 + h, x0 : x0 + w])
    patch = max(windows, key=_warmth) if rng.random() < warm_bias else windows[0]
    labels = np.full(shape.shape, BACKGROUND, np.uint8)
    return HandCutout(
        np.ascontiguousarray(patch), labels, shape, entry_edge, tuple(moved(list(points), scale(factor, factor)))
    )


#: Where real hands go on and around a face: (y, x) in units of the face's box (0 to 1 inside it).
FACE_SPOTS = {
    "chin": (1.0, 0.5),
    "mouth": (0.78, 0.5),
    "left cheek": (0.62, 0.18),
    "right cheek": (0.62, 0.82),
    "forehead": (0.12, 0.5),
    "left temple": (0.3, 0.0),
    "right temple": (0.3, 1.0),
    "hair": (-0.2, 0.5),
}


@dataclass
class OnFace:
    """A hand pasted on a face: where (a spot of FACE_SPOTS, jittered), how large (its longer side
    0.7-1.3 face heights, as a real hand is), and in the face's own skin tone and light."""

    box: tuple[float, float, float, float]  #: the face: x, y, width, height as shares of the photo

    def place(self, rng: np.random.Generator) -> tuple[float, float]:
        """(y, x) as shares of the photo for the hand's centre; it may reach past the photo's edge."""
        x, y, w, h = self.box
        spot_y, spot_x = FACE_SPOTS[list(FACE_SPOTS)[int(rng.integers(len(FACE_SPOTS)))]]
        return y + h * (spot_y + rng.uniform(-0.1, 0.1)), x + w * (spot_x + rng.uniform(-0.1, 0.1))

    def side(self, height: int, rng: np.random.Generator) -> float:
        return rng.uniform(0.7, 1.3) * self.box[3] * height

    def skin(self, rgb: np.ndarray) -> np.ndarray:
        """The face's skin pixels (N, 3): inside the middle of its box, of skin colour (`skin_mask`);
        the whole middle where too few are."""
        h, w = rgb.shape[:2]
        x, y, bw, bh = self.box
        y0, y1 = int(max(0, y + 0.2 * bh) * h), int(min(1, y + 0.8 * bh) * h)
        x0, x1 = int(max(0, x + 0.2 * bw) * w), int(min(1, x + 0.8 * bw) * w)
        middle = rgb[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)].reshape(-1, 3).astype(np.float32)
        skin = middle[skin_mask(middle)]
        return skin if len(skin) >= 50 else middle


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """Skin-coloured pixels of RGB (..., 3): the YCrCb box commonly used with OpenCV (133 <= Cr <= 173,
    77 <= Cb <= 127; ITU-R BT.601 full range, as OpenCV's COLOR_RGB2YCrCb)."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128
    cb = (b - y) * 0.564 + 128
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def match_skin(hand: np.ndarray, inner: np.ndarray, skin: np.ndarray, shading: np.ndarray) -> np.ndarray:
    """The hand (float RGB) in the face's skin tone: its pixels' mean and spread per channel moved to the
    skin's (so tone says nothing about hand or face), then lit by `shading` (the face's brightness
    under the hand relative to its mean: its light gradient and shadows)."""
    pixels = hand[inner]
    mean, std = pixels.mean(axis=0), pixels.std(axis=0) + 1.0
    target_mean, target_std = skin.mean(axis=0), skin.std(axis=0) + 1.0
    # The spread moves at most 2x either way: a flat-lit hand is not to be stretched into noise.
    matched = (hand - mean) * np.clip(target_std / std, 0.5, 2.0) + target_mean
    return np.clip(matched * shading[..., None], 0, 255)


def paste_hand(
    background: np.ndarray,
    labels: np.ndarray,
    cutout: HandCutout,
    rng: np.random.Generator,
    settings: PasteSettings | None = None,
    centre: tuple[float, float] | None = None,
    on_face: OnFace | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Points]:
    """Paste `cutout` onto `background` (uint8 RGB) whose label map is `labels`.

    `centre` = (y, x) as shares of the frame puts the cut-out's centre there instead of at an edge or
    anywhere. `on_face` puts it on or around that face instead, sized to it, in its skin tone and
    light (`OnFace`). Returns the new image, the new label map, the matte (float32 alpha in
    [0, 1]) used: pixel = alpha * hand + (1 - alpha) * background, and the label is the cut-out's
    wherever alpha >= 0.5, the background's elsewhere; and the cut-out's landmarks in the new image."""
    s = settings or PasteSettings()
    if on_face is not None:
        centre = on_face.place(rng)
    bh, bw = labels.shape
    rgb, lab, shape, points = cutout.rgb, cutout.labels, cutout.shape, list(cutout.points)
    edge = cutout.entry_edge
    if rng.random() < 0.5:
        rgb, lab, shape = rgb[:, ::-1], lab[:, ::-1], shape[:, ::-1]
        points = moved(points, mirror(shape.shape[1]))
        edge = {"left": "right", "right": "left"}.get(edge, edge)
    from_edge = centre is None and edge is not None and rng.random() < s.edge_prob
    if from_edge:
        # Turn the cut-out so its arm side faces a chosen frame edge, give or take 20 degrees.
        target = EDGES[int(rng.integers(4))]
        quarter_turns = (EDGES.index(edge) - EDGES.index(target)) % 4
        degrees = 90 * quarter_turns + rng.uniform(-20, 20)
    elif on_face is not None and edge is not None:
        # On a face the arm comes from below: its side of the cut-out faces down, give or take 40 degrees.
        target = None
        degrees = 90 * ((EDGES.index(edge) - EDGES.index("bottom")) % 4) + rng.uniform(-40, 40)
    else:
        target, degrees = None, rng.uniform(-180, 180)
    rgb, lab, shape, points = _rotate(
        np.ascontiguousarray(rgb), np.ascontiguousarray(lab), np.ascontiguousarray(shape), degrees, points
    )
    side = on_face.side(bh, rng) if on_face is not None else rng.uniform(*s.size_range) * min(bh, bw)
    factor = side / max(shape.shape)
    rgb, lab, shape, points = _resize(rgb, lab, shape, factor, points)
    h, w = shape.shape
    if centre is not None:
        y0, x0 = round(centre[0] * bh - h / 2), round(centre[1] * bw - w / 2)
    elif target is None:  # anywhere, up to a third of it outside the frame
        y0 = int(rng.integers(-h // 3, max(bh - 2 * h // 3, -h // 3 + 1)))
        x0 = int(rng.integers(-w // 3, max(bw - 2 * w // 3, -w // 3 + 1)))
    else:  # flush with the edge, the arm side cut by it (a quarter of the cut-out may be outside)
        along_y = int(rng.integers(min(0, bh - h), max(bh - h, 0) + 1))
        along_x = int(rng.integers(min(0, bw - w), max(bw - w, 0) + 1))
        tuck = int(rng.uniform(0, 0.25) * (h if target in ("top", "bottom") else w))
        y0, x0 = {
            "top": (-tuck, along_x),
            "bottom": (bh - h + tuck, along_x),
            "left": (along_y, -tuck),
            "right": (along_y, bw - w + tuck),
        }[target]
    # Visible window of the cut-out on the background.
    ty0, tx0, ty1, tx1 = max(0, y0), max(0, x0), min(bh, y0 + h), min(bw, x0 + w)
    if ty1 <= ty0 or tx1 <= tx0:
        return background, labels, np.zeros(labels.shape, np.float32), []
    window = (slice(ty0 - y0, ty1 - y0), slice(tx0 - x0, tx1 - x0))
    target_box = (slice(ty0, ty1), slice(tx0, tx1))

    inner = ndimage.binary_erosion(shape, iterations=1)  # the outer ring is the source photo's background
    matte_full = (
        np.array(
            Image.fromarray(inner.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(rng.uniform(*s.feather))),
            np.float32,
        )
        / 255.0
    )
    matte_full *= ndimage.binary_dilation(inner, iterations=3)  # blur never reaches past the cut-out
    own = inner if inner.any() else shape
    if on_face is not None:
        grey = background.astype(np.float32).mean(axis=2)
        light = ndimage.gaussian_filter(grey, max(2.0, 0.05 * max(h, w)))
        shading = np.ones((h, w), np.float32)
        shading[window] = light[target_box] / max(1.0, float(light[target_box].mean()))
        hand = match_skin(rgb.astype(np.float32), own, on_face.skin(background), np.clip(shading, 0.6, 1.4))
    else:
        hand = _colour_matched(rgb, own, background, rng.uniform(*s.match_colour), rng)
    if s.match_sharpness:
        # Judge the background where the paste lands, plus a margin: what the seam sits in.
        my, mx = (ty1 - ty0) // 4 + 2, (tx1 - tx0) // 4 + 2
        around = background[max(0, ty0 - my) : ty1 + my, max(0, tx0 - mx) : tx1 + mx]
        hand = match_sharpness_and_noise(hand, inner if inner.any() else shape, around, rng)
    if rng.random() < s.blur_prob:
        blurred = Image.fromarray(hand.astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
        hand = np.asarray(blurred, np.float32)

    alpha = np.zeros(labels.shape, np.float32)
    alpha[target_box] = matte_full[window]
    out = background.astype(np.float32)
    a = alpha[target_box][..., None]
    out[target_box] = a * hand[window] + (1 - a) * out[target_box]
    new_labels = labels.copy()
    covered = alpha[target_box] >= 0.5
    new_labels[target_box][covered] = lab[window][covered]
    return (out + 0.5).astype(np.uint8), new_labels, alpha, moved(points, shift(x0, y0))
