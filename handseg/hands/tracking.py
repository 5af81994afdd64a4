"""Hands across a video's frames, as MediaPipe's video mode follows them: each frame's hands read again
where the last frame's were, the palm detector run again when one is lost and every REDETECT_EVERY
frames, and a tracked hand's left or right kept steady."""

from __future__ import annotations

import numpy as np

from handseg.hands.landmarker import HandLandmarker
from handseg.hands.regions import distinct, enlarged_for_detection, region_from_landmarks
from handseg.hands.topology import Hand

#: In a video, the palm detector runs again every this many frames, to find hands coming into view while
#: others are tracked.
REDETECT_EVERY = 10

#: In a video, how much a tracked hand's left-or-right keeps of the frames before: the model's call flickers
#: on a hand seen edge-on or half out of view (0.62 "left" for a frame amid 0.97 "right"), a hand does not.
HANDEDNESS_MEMORY = 0.7


def steadier(hand: Hand, before: Hand) -> Hand:
    """`hand` (tracked from `before`) with its chance of being a right hand averaged with the frames before."""

    def right(h: Hand) -> float:
        return h.handedness_score if h.handedness == "right" else 1.0 - h.handedness_score

    p = HANDEDNESS_MEMORY * right(before) + (1 - HANDEDNESS_MEMORY) * right(hand)
    hand.handedness, hand.handedness_score = ("right", p) if p >= 0.5 else ("left", 1.0 - p)
    return hand


def track(landmarker: HandLandmarker, image: np.ndarray, previous: list[Hand], *, detect: bool = False) -> list[Hand]:
    """The hands in a video frame: each of the last frame's hands is read again where it was (its region
    from its landmarks, as MediaPipe tracks); the palm detector runs only when there were none, when one
    was lost, or when `detect` asks (the caller's cadence, to pick up hands coming into view)."""
    image, factor = enlarged_for_detection(image)
    hands = []
    for before in previous:
        hand = landmarker.read_hand(image, region_from_landmarks(before.scaled(factor)))
        if hand is not None:
            hands.append(steadier(hand, before))
    if detect or not hands or len(hands) < len(previous):
        hands = distinct(hands + landmarker.detect(image))
    return [hand.scaled(1 / factor) for hand in hands[: landmarker.max_hands]]


class HandFinder:
    """Finds the hands of each input of one `iter_segment` call: each on its own, or (`track`: frames of a
    video) where the last frame's were, the palm detector running again when a hand is lost and every
    REDETECT_EVERY frames, as MediaPipe's video mode does."""

    def __init__(self, landmarker: HandLandmarker, track: bool) -> None:
        self.landmarker, self.track = landmarker, track
        self.last: list[Hand] | None = None

    def __call__(self, small: np.ndarray, index: int) -> list[Hand]:
        if self.track and self.last is not None:
            hands = track(self.landmarker, small, self.last, detect=index % REDETECT_EVERY == 0)
        else:
            hands = self.landmarker(small)
        if self.track:
            self.last = hands
        return hands
