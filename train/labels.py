"""Training label maps and the label policy: what counts as "hand".

Training targets are uint8 label maps: BACKGROUND (0), HAND (1) and IGNORE (255,
no loss either way). The shipped model follows the *hand up to the wrist* policy
of EgoHands, the held-out egocentric test split and most public benchmarks. HGR
and indoor label the bare forearm as hand; `cut_at_wrist` turns such a mask into
the hand-only policy by geometry alone:

- an arm enters the photo from the frame edge, so the part of a mask component
  that touches the border is the forearm and its far end is the hand;
- the palm is the widest part of the far half: its inscribed circle (radius r,
  from the distance transform) sits in the palm, and the wrist lies about one
  radius beyond its centre, towards the border;
- pixels at least 2.5 r nearer the border than the palm centre are forearm
  (background); the band in between is IGNORE, because the estimate is rough.

Components that do not touch the border (a hand in a sleeve, a hand alone) are
kept as they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKGROUND, HAND, IGNORE = 0, 1, 255

#: Wrist and forearm boundaries, in palm radii from the palm centre towards the border.
WRIST_RADII = 1.1
FOREARM_RADII = 2.5
#: Components smaller than this share of the image are left alone (specks, fingertips at the edge).
MIN_COMPONENT_SHARE = 0.002


def labels_from_mask(mask: np.ndarray) -> np.ndarray:
    """A bool mask as a label map (HAND where True)."""
    return np.where(mask, HAND, BACKGROUND).astype(np.uint8)


def cut_at_wrist(mask: np.ndarray) -> np.ndarray:
    """Label map of a hand-plus-forearm mask under the hand-only policy (see the module docstring)."""
    labels = labels_from_mask(mask)
    components, count = ndimage.label(mask)
    border = np.zeros(mask.shape, bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    for index in range(1, count + 1):
        component = components == index
        contact = component & border
        if not contact.any() or component.mean() < MIN_COMPONENT_SHARE:
            continue
        from_border = ndimage.distance_transform_edt(~contact)
        inside = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
        far_half = component & (from_border >= 0.5 * from_border[component].max())
        centre = np.unravel_index(np.argmax(np.where(far_half, inside, -1)), mask.shape)
        radius, palm_distance = inside[centre], from_border[centre]
        wrist = palm_distance - WRIST_RADII * radius
        forearm = palm_distance - FOREARM_RADII * radius
        labels[component & (from_border < wrist)] = IGNORE
        labels[component & (from_border < forearm)] = BACKGROUND
    return labels


def loss_weights(labels: np.ndarray) -> np.ndarray:
    """1 where a pixel is labelled, 0 where it is IGNORE."""
    return (labels != IGNORE).astype(np.float32)


def policy_truth(mask: np.ndarray, source: str, forearm_sources) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground truth under the hand-only policy, for scoring: (hand mask, pixels to score or None for all).
    Sources in `forearm_sources` have their forearm cut at the wrist and the uncertain band left unscored."""
    if source not in forearm_sources:
        return mask, None
    labels = cut_at_wrist(mask)
    return labels == HAND, labels != IGNORE
