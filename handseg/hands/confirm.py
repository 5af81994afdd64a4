"""Each region of a mask confirmed as a hand by the landmark model, or dropped.

The segmentation network marks what looks like skin; the palm detector misses hands (seen from above,
cut by the frame, half hidden). A connected region of the mask is kept whole where a found hand lies on it
(at least `ON_REGION` of its landmarks), except its parts farther than `FAR` hand sizes from every found
hand (a face the hand touches), which are regions of their own. Every other region is shown to the
landmark model on its own: first where the palm detector finds a palm in a square crop of it (a hand
small in the photo, or lying on a face, is large there), then on square crops around it, turned so its
principal axis points up (as the model expects a hand, wrist down), the end that leaves the frame or the
lighter end taken as the wrist first, then the other way, then across. Where the model reads a hand
lying on the region, the region is kept (up to `FAR` from that hand, as for a found one) and the hand
joins the found ones (`Hand.confirmed`) with its landmarks and side, read once more from its own landmarks
as MediaPipe tracks; a region still largely unexplained by it (two hands touching) is read again for a
second hand. At the frame's edge the landmark model and the network are weighed together: a hand reaching
in, much of it out of view, is read less surely, so a lower presence confirms it (`EDGE_MIN_PRESENCE`)
where the network is fairly sure of the region (`EDGE_MIN_CERTAINTY`), and a region it is sure of
(`SURE_AT_EDGE`) is kept with the landmark model's likeliest reading on it, however low its presence: the
camera wearer's hands reaching in from the bottom edge, half out of view, read as low as 0.02 (such a
hand's side is the frame's half it reaches in at, as `handseg.hands.handedness` decides for the wearer's
hands). Regions nothing confirms are not hands: dropped.

The cost is bounded: at most `MAX_REGIONS` regions are read, the largest first, each by one palm detection
and at most `READS_PER_REGION` landmark readings; regions under `MIN_REGION_SHARE` of the image are
dropped unread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from handseg.hands.handedness import wearer_side
from handseg.hands.labels import GRID, REACH, GridLabels, label_hands, skeleton_distance
from handseg.hands.regions import distinct, normalized_angle, region_from_landmarks
from handseg.hands.topology import Hand, hand_size
from handseg.hands.warp import crop
from handseg.image import resize_mask

MAX_REGIONS = 4  #: regions read at most, the largest first
READS_PER_REGION = 6  #: landmark readings at most per region (its palms first, then `crops`)
MIN_REGION_SHARE = 0.0005  #: smaller regions (of the image's pixels) are dropped unread
CROP_SIDE = 1.3  #: the crop's side, in units of the region's longer extent
EDGE_CROP_SIDE = 2.0  #: the same for a region cut by the frame's edge (part of the hand is out of view)
#: Hand presence a confirmation needs: above the landmark model's own 0.5, which it gives ears and chins in
#: face photos (0.57-0.61 on the three val face photos it confirmed at 0.5; most hands it confirms on
#: EgoHands val score above 0.65).
MIN_PRESENCE = 0.65
#: The same for a region cut by the frame's edge: a hand reaching in, much of it out of view, which the
#: landmark model reads with less certainty (EgoHands val: true hands at the edge 0.2-0.8; the one region
#: at the edge of the 40 hand-free val photos looked at, 0.13).
EDGE_MIN_PRESENCE = 0.2
#: A region cut by the frame's edge with at least this mean hand probability is a hand whatever its presence
#: (EgoHands val: 11 true hands dropped at 0.94-0.97; every region dropped on a hand-free val or train
#: photo at most 0.92).
SURE_AT_EDGE = 0.93
#: The mean hand probability below which a region cut by the frame's edge needs `MIN_PRESENCE`, as inside the
#: frame (val: true hands confirmed at the edge below `MIN_PRESENCE` at 0.79-0.98; three such patches
#: on hand-free val and train photos 0.67-0.76).
EDGE_MIN_CERTAINTY = 0.78
ON_MASK = 0.6  #: share of a confirmed hand's 21 landmarks that must lie on the mask
ON_REGION = 3  #: landmarks of a found hand on a region that make it that hand's
FAR = 3.0  #: parts of a found hand's region farther than this from its skeleton (hand sizes) are regions apart
STILL_UNEXPLAINED = 0.3  #: a region this much unexplained by the hand confirmed on it is read again

#: (image, region (center x, center y, side, rotation), min presence) -> the hand the landmark model reads
#: there, or None.
ReadHand = Callable[[np.ndarray, tuple, float], Hand | None]
#: image -> the regions (center x, center y, side, rotation, score) where the palm detector finds palms.
FindPalms = Callable[[np.ndarray], list[tuple]]
#: The palm detector's input for one region: a square crop this many pixels a side (it letterboxes to 192).
PALM_CROP = 256


def confirm_hands(
    mask: np.ndarray,
    image: np.ndarray,
    hands: list[Hand],
    read_hand: ReadHand,
    find_palms: FindPalms,
    probability: np.ndarray | None = None,
) -> tuple[list[Hand], np.ndarray]:
    """(hands, kept): `hands` (found in `image`, RGB uint8 (H, W, 3)) and those the landmark model confirms
    on `mask` (bool (H, W), the network's mask at the image's size), and the mask's pixels that are hands.
    `probability` (float (H, W), the network's, at the same size): where given, it decides with the landmark
    model what confirms a region at the frame's edge (`edge_min_presence`, `SURE_AT_EDGE`)."""
    from scipy import ndimage

    height, width = mask.shape
    explained = explained_by(mask, hands)
    unexplained = mask & ~explained
    confirmed = list(hands)
    if unexplained.any():
        regions, count = ndimage.label(unexplained)
        areas = np.bincount(regions.ravel(), minlength=count + 1)[1:]
        min_area = max(16, MIN_REGION_SHARE * height * width)
        order = [k + 1 for k in np.argsort(-areas, kind="stable") if areas[k] >= min_area][:MAX_REGIONS]
        slices = ndimage.find_objects(regions)
        for label in order:
            rows, cols = slices[label - 1]
            ys, xs = np.nonzero(regions[rows, cols] == label)
            pixels = np.stack([xs + cols.start, ys + rows.start], axis=1).astype(np.float64)
            certainty = None if probability is None else _mean_at(pixels, probability)
            hand = _confirm_region(pixels, mask, image, confirmed, read_hand, find_palms, certainty=certainty)
            if hand is None:
                continue
            confirmed.append(hand)
            distance = skeleton_distance(pixels, hand.landmarks) / hand_size(hand.landmarks)
            near = pixels[distance <= FAR].astype(int)  # as for a found hand: what lies far from it is not it
            explained[near[:, 1], near[:, 0]] = True
            rest = pixels[distance > REACH]
            if len(rest) >= max(min_area, STILL_UNEXPLAINED * len(pixels)):  # two hands in one region?
                if second := _confirm_region(rest, mask, image, confirmed, read_hand, find_palms):
                    confirmed.append(second)
    return confirmed, explained


def explained_by(mask: np.ndarray, hands: list[Hand]) -> np.ndarray:
    """The pixels of `mask` (bool (H, W)) that `hands` (landmarks in its pixels) explain: each connected
    region holding at least `ON_REGION` of a hand's landmarks, except its parts farther than `FAR` hand
    sizes from every hand."""
    from scipy import ndimage

    height, width = mask.shape
    components, count = ndimage.label(mask)
    kept = np.zeros(count + 1, bool)
    for hand in hands:
        on = np.array([components[y, x] for x, y in _landmark_pixels(hand, height, width)], dtype=np.int64)
        labels, counts = np.unique(on[on > 0], return_counts=True)
        kept[labels[counts >= ON_REGION]] = True
    explained = kept[components]
    if hands:  # a found hand's region, but far from it: a region of its own
        explained &= label_hands(mask, [hand.landmarks for hand in hands], reach=FAR) <= len(hands)
    return explained


def confirmed_labels(mask: np.ndarray, kept: np.ndarray, hands: list[Hand]) -> tuple[list[Hand], np.ndarray]:
    """(hands, labels) at full size: `mask` (bool (H, W)) within the regions `confirm_hands` kept (`kept`,
    at the working size), each pixel its nearest hand's (`hands`: landmarks in `mask`'s pixels) unless it
    lies behind that hand's wrist; labels 1..N as the hands returned, which leave out a hand holding no
    pixel (one the landmark model found where the network marks nothing)."""
    # Grown by a pixel first, so the full-size mask's edges, which the working size rounds, stay inside.
    mask = mask & resize_mask(_grown_by_a_pixel(kept), mask.shape)
    if not hands:
        return hands, np.zeros(mask.shape, np.uint8)
    grid = GridLabels(mask, [hand.landmarks for hand in hands], math.inf, True, False, GRID)
    labels = grid.full()
    # Which hands hold a pixel, from the grid: every labelled cell holds some of the mask.
    holding = np.isin(np.arange(1, len(hands) + 1), grid.cells())
    if holding.all():
        return hands, labels
    renumber = np.zeros(len(hands) + 1, np.uint8)
    renumber[1:][holding] = np.arange(1, int(holding.sum()) + 1)
    return [hand for hand, held in zip(hands, holding) if held], renumber[labels]


def _grown_by_a_pixel(mask: np.ndarray) -> np.ndarray:
    """`mask` and its 4-neighbours (scipy's binary_dilation with its default cross, at a fifth of the time)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def crops(pixels: np.ndarray, height: int, width: int) -> list[tuple[float, float, float, float]]:
    """Up to `READS_PER_REGION` square regions (center x, center y, side, rotation) around a region's pixels
    ((N, 2) x, y). A region cut by the frame's edge is a hand reaching in from there: first a crop reaching
    out past that edge, fingers pointing away from it, the region in its upper half (the landmark model
    reads the hand as if the rest were there). Then crops around the region along its principal axis,
    fingers towards the end that does not leave the frame (or the heavier end, a hand being wider than
    its forearm), the other way, across, and the diagonals."""
    centre = pixels.mean(axis=0)
    offsets = pixels - centre
    if len(pixels) > 1:
        _, vectors = np.linalg.eigh(np.cov(offsets.T))
        axis = vectors[:, -1]
    else:
        axis = np.array([0.0, -1.0])
    across = np.array([-axis[1], axis[0]])
    along, side_way = offsets @ axis, offsets @ across
    low, high = along.min(), along.max()
    middle = centre + axis * (low + high) / 2 + across * (side_way.min() + side_way.max()) / 2
    extent = max(high - low, side_way.max() - side_way.min(), 8.0)
    # Which end holds the fingers: away from the frame's edge where the region leaves it, else the heavier.
    at_low, at_high = pixels[along <= low + 2], pixels[along >= high - 2]
    leaves = [_touches_edge(end, height, width) for end in (at_low, at_high)]
    if leaves[0] != leaves[1]:
        forward = axis if leaves[0] else -axis
    else:
        forward = axis if (along > (low + high) / 2).sum() >= len(along) / 2 else -axis
    first = _rotation(forward)
    cx, cy = float(middle[0]), float(middle[1])
    regions = []
    if (outward := _out_of_frame(pixels, height, width)) is not None:
        side = EDGE_CROP_SIDE * extent
        x, y = middle + outward * side / 4
        regions.append((float(x), float(y), float(side), _rotation(-outward)))
    # The principal axis both ways, then across, then the diagonals.
    turns = (0.0, math.pi, math.pi / 2, -math.pi / 2, math.pi / 4, -math.pi / 4, 3 * math.pi / 4, -3 * math.pi / 4)
    regions += [(cx, cy, float(CROP_SIDE * extent), normalized_angle(first + turn)) for turn in turns]
    return regions[:READS_PER_REGION]


def _out_of_frame(pixels: np.ndarray, height: int, width: int) -> np.ndarray | None:
    """The unit direction (x, y) out of the frame through the edges a region touches, weighted by how much
    of each it runs along; None for a region inside the frame."""
    x, y = pixels[:, 0], pixels[:, 1]
    direction = np.array(
        [(x >= width - 2).sum() - (x <= 1).sum(), (y >= height - 2).sum() - (y <= 1).sum()], dtype=np.float64
    )
    length = np.hypot(*direction)
    return direction / length if length > 0 else None


def _confirm_region(
    pixels: np.ndarray,
    mask: np.ndarray,
    image: np.ndarray,
    hands: list[Hand],
    read_hand: ReadHand,
    find_palms: FindPalms,
    *,
    certainty: float | None = None,
) -> Hand | None:
    """The first hand read on the mask around a region, told apart from `hands`, its landmarks read again
    from themselves; None when nothing shows one. First the palm detector on a square crop of the region
    (a hand small in the photo, or lying on a face, is large there), then the landmark model on `crops`.
    `certainty`, the network's mean probability on the region (None: not known), decides what presence a
    region cut by the frame's edge needs (`edge_min_presence`); where it is sure (`SURE_AT_EDGE`), the
    likeliest reading on the mask is kept whatever its presence."""
    height, width = mask.shape
    outward = _out_of_frame(pixels, height, width)
    at_edge = outward is not None
    min_presence = edge_min_presence(certainty) if at_edge else MIN_PRESENCE
    sure = at_edge and certainty is not None and certainty >= SURE_AT_EDGE
    tries = [*_palms_around(pixels, image, find_palms), *crops(pixels, height, width)][:READS_PER_REGION]
    likeliest = None
    for region in tries:
        hand = read_hand(image, region, 0.0 if sure else min_presence)
        if not _a_new_hand_on_the_mask(hand, mask, hands):
            continue
        if hand.score < min_presence:
            likeliest = hand if likeliest is None or hand.score > likeliest.score else likeliest
            continue
        again = read_hand(image, region_from_landmarks(hand), min_presence)
        if _a_new_hand_on_the_mask(again, mask, hands):
            hand = again
        return replace(hand, palm_score=None, confirmed=True)
    if likeliest is None:
        return None
    hand = replace(likeliest, palm_score=None, confirmed=True)
    # Read too unsurely for its landmarks to tell its side: a region reaching in mostly through the bottom
    # edge is the camera wearer's own hand, sided by the frame as `handseg.hands.handedness` sides them.
    if outward is not None and outward[1] >= math.cos(math.pi / 4):
        side, confidence = wearer_side(float(pixels[:, 0].mean()), width, hand.classifier_right)
        hand = replace(hand, handedness=side, handedness_score=confidence)
    return hand


def edge_min_presence(certainty: float | None) -> float:
    """The presence a hand on a region cut by the frame's edge needs, given the network's mean probability on
    the region (None: not known): `EDGE_MIN_PRESENCE` where the network is fairly sure of the region
    (`EDGE_MIN_CERTAINTY`) or that is not known, else `MIN_PRESENCE`, as inside the frame."""
    if certainty is None or certainty >= EDGE_MIN_CERTAINTY:
        return EDGE_MIN_PRESENCE
    return MIN_PRESENCE


def _mean_at(pixels: np.ndarray, values: np.ndarray) -> float:
    """The mean of `values` (H, W) over a region's pixels ((N, 2) x, y)."""
    cells = pixels.astype(np.intp)
    return float(values[cells[:, 1], cells[:, 0]].mean())


def _palms_around(pixels: np.ndarray, image: np.ndarray, find_palms: FindPalms) -> list[tuple]:
    """The landmark model's regions (in `image`'s pixels) for the palms the palm detector finds in a square,
    unturned crop around a region, 1.5 times its larger side (at most two, the surest first)."""
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    centre, side = (low + high) / 2, 1.5 * max(float((high - low).max()), 8.0)
    patch, _ = crop(image, (float(centre[0]), float(centre[1])), (side, side), 0.0, PALM_CROP)
    scale = side / PALM_CROP
    x0, y0 = centre - side / 2
    return [(x0 + cx * scale, y0 + cy * scale, size * scale, rotation, score)
            for cx, cy, size, rotation, score in find_palms(patch)[:2]]  # fmt: skip


def _a_new_hand_on_the_mask(hand: Hand | None, mask: np.ndarray, hands: list[Hand]) -> bool:
    """Whether the landmark model read a hand lying on the mask, not one of `hands`."""
    if hand is None or not _on_mask(hand, mask):
        return False
    return len(distinct([*hands, hand])) > len(hands)


def _landmark_pixels(hand: Hand, height: int, width: int) -> list[tuple[int, int]]:
    """A hand's landmarks as (x, y) pixels inside the image (those outside it left out)."""
    points = np.rint(hand.landmarks[:, :2]).astype(int)
    return [(x, y) for x, y in points if 0 <= x < width and 0 <= y < height]


def _on_mask(hand: Hand, mask: np.ndarray) -> bool:
    """Whether at least `ON_MASK` of a hand's landmarks in the frame (at least 5) lie on the mask, or within a
    tenth of its size."""
    height, width = mask.shape
    r = max(1, round(0.1 * hand_size(hand.landmarks)))
    inside = _landmark_pixels(hand, height, width)
    on = sum(bool(mask[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1].any()) for x, y in inside)
    return len(inside) >= 5 and on >= ON_MASK * len(inside)


def _touches_edge(points: np.ndarray, height: int, width: int) -> bool:
    if not len(points):
        return False
    x, y = points[:, 0], points[:, 1]
    return bool((x <= 1).any() or (y <= 1).any() or (x >= width - 2).any() or (y >= height - 2).any())


def _rotation(direction: np.ndarray) -> float:
    """The rotation (radians, MediaPipe's) that turns `direction` (wrist -> fingers, image x, y) upright."""
    return normalized_angle(math.pi / 2 - math.atan2(-direction[1], direction[0]))
