"""The one inference path behind the CLI, the app, video, datasets, Ray, training validation and evaluation.

A `Segmenter` is built once from a model and how to run it (device, backend, threads, compile,
working resolution, the pixel guard): the runner comes from `handseg.backends.build_runner`, the
only place a backend is chosen. It then segments images:

    load at the working size -> runner -> logits back to full size -> threshold    (handseg.processing)

`Segmenter.run` is the one loop over many inputs: results in input order, an input that fails in its
place, and what each front end does with a result (save it, encode it, zip it) inside the loop.
`handseg.segment(image, ...)` is the one-line convenience: it builds (or reuses) a Segmenter and runs
it. Loaded models and runners live in one cache, keyed on what they depend on.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np
import torch

from handseg.backends import (
    AUTO,
    Built,
    Runner,
    build_runner,
    check_request,
    is_onnx_file,
    onnx_file_runner,
    runner_device,
)
from handseg.crf import CRFUnavailableError
from handseg.hands import Hand, HandLandmarker, landmarks_unavailable
from handseg.hands.confirm import confirmed_labels, explained_by
from handseg.hands.tracking import HandFinder
from handseg.hardware import ONNXRUNTIME_POOL, TORCH_POOL, cpu_threads, torch_threads_set
from handseg.image import MAX_PIXELS, ImageInput, ImageLoadError, load_image, read_file_object
from handseg.loading import ModelInput, cache, load_model
from handseg.model import HandUNet
from handseg.packaging import FastPathNotice
from handseg.processing import (
    DEFAULT_THRESHOLD,
    MaxSide,
    Prepared,
    checked_scale,
    checked_threshold,
    hands_at_full_size,
    prepare,
    probability_from_logits,
    resolve_max_side,
    to_full_size,
    working_input,
)
from handseg.results import Segmentation

#: What may go wrong with one input of a run without stopping the others: it cannot be read, or what
#: is done with its result fails (a file that cannot be written, CRF without pydensecrf2).
InputError = ImageLoadError | OSError | CRFUnavailableError
#: One input as loaded for the network: its index, the input (a file object read into bytes), and the input
#: prepared (`handseg.processing.prepare`) or why it could not be.
Loaded = tuple[int, ImageInput, Prepared | ImageLoadError]


class SegmenterOptions(TypedDict, total=False):
    """How a Segmenter runs its model: `Segmenter`'s keywords, which `handseg.segment`, `iter_segment`
    and `segment_batch` take too."""

    device: str | torch.device | None
    backend: str
    threads: int | None
    concurrent: int
    compile: bool
    max_side: MaxSide
    scale: float | None
    max_pixels: int
    hands: bool
    verify: bool


@dataclass(frozen=True)
class Outcome:
    """One input of `Segmenter.run`: its result (None if it failed), what was done with it, or why it failed."""

    index: int  #: its place among the inputs
    result: Segmentation | None = None
    output: Any = None  #: what `then(result, index)` returned (the files written, an encoded mask, ...)
    error: InputError | None = None

    @property
    def reason(self) -> str:
        """Why it failed, without the input's name (for lists that name it already)."""
        if isinstance(self.error, ImageLoadError):
            return self.error.reason
        return str(self.error) if self.error else ""


class Segmenter:
    """Segments images with one model, run one way, decided once.

    segmenter = handseg.Segmenter("handunet_lite0.hands_v5", threads=2)
    segmenter("photo.jpg").mask                      # bool (H, W)
    for outcome in segmenter.run(paths): ...         # in input order; a bad file does not stop the rest

    `model`: a HandUNet, a hub folder or repo id, a shipped model's name, an exported `.onnx` file,
    or None (the shipped default model).
    `device`: "cpu", "cuda" or "cuda:N" (None: CUDA when available; a given HandUNet's own device).
    `backend`: one of `handseg.BACKENDS`; "auto" is, on a CPU, int8 where the model has its int8 file
    (the shipped default does), else bf16 on a CPU with bf16 arithmetic, else float32
    (`handseg.backends.build_runner`). When the first choice cannot run, `notice` says why, and a
    FastPathNotice warning says it once. Speeds: `python benchmarks/cpu_paths.py`; the quality bar
    every CPU path meets: `python benchmarks/targets.py`.
    `threads`: CPU threads (torch's, and onnxruntime's for the int8 network and the hand landmark models);
    None: OMP_NUM_THREADS where set, else shared by `concurrent` segmenters running at once (the app's
    requests, dataset workers, Ray actors) every usable core for onnxruntime and half of them for torch
    (`handseg.hardware.default_threads`), which holds up when the machine is busy.
    `compile`: torch.compile the float model (a one-off compilation per input size).
    `max_side`: the working resolution (see MaxSide); `scale`, instead, multiplies both sides.
    `max_pixels`: larger images are refused before they are decoded (100 MP: a guard against
    decompression bombs; raise it for larger photos).
    `hands`: find each hand's landmarks (MediaPipe Hands' models, `handseg.hands`), so each result has its
    `hands` (one mask per hand, left or right) and a model that reads landmarks gets them; for a model that
    does not read them, only when a result's hands are first asked for. False: the mask alone, faster for
    a model that reads landmarks (it then reads none, as where no hand is found).
    `verify` (with `hands`): the mask holds hands only. Each region of the network's mask is kept where a
    found hand explains it or the landmark model confirms a hand on it (`handseg.hands.confirm`), up to
    the hand's wrist; the rest is dropped (flowers, faces, forearms). Every marked pixel then belongs to
    one of the result's `hands`. False: the network's mask as it is, pixels no hand explains in the
    result's `unexplained`.
    """

    def __init__(
        self,
        model: ModelInput = None,
        *,
        device: str | torch.device | None = None,
        backend: str = AUTO,
        threads: int | None = None,
        concurrent: int = 1,
        compile: bool = False,
        max_side: MaxSide = "auto",
        scale: float | None = None,
        max_pixels: int = MAX_PIXELS,
        hands: bool = True,
        verify: bool = True,
    ) -> None:
        check_request(model, backend, compile)
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1, got {max_pixels}")
        self.device = runner_device(model, device, backend)
        # Resolved here, for the cache keys (and a count under 1 is refused before anything loads).
        per_pool = tuple(cpu_threads(threads, concurrent, pool) for pool in (TORCH_POOL, ONNXRUNTIME_POOL))
        #: CPU threads asked for (None: the default of the pool that runs each stage), and segmentations at once.
        self._threads, self._concurrent = threads, concurrent
        #: torch's threads for this segmenter's own torch work, whichever backend runs the network: its pool's
        #: count (`default_threads`), not torch's own (every core), which a busy core holds up.
        self._torch_threads = per_pool[0]
        self.max_pixels = max_pixels
        #: Whether hand landmarks are found (each result's `hands`, and the input of a model that reads them).
        self.hands = hands
        self._hands_notice: str | None = None
        if hands and (reason := landmarks_unavailable()):
            # The mask does not need them: say so once and go on without (a model that reads them reads none).
            self.hands, self._hands_notice = False, f"{reason}; segmenting without them (no per-hand masks)"
            warnings.warn(self._hands_notice, FastPathNotice, stacklevel=2)
        #: Whether each region of the mask must be a hand the landmark model confirms (needs `hands`).
        self.verify = verify and self.hands
        #: Whether a network that reads landmarks reads the photo again when the confirmation found hands the
        #: palm detector missed (on by default; off only to measure what it brings: benchmarks/targets.py).
        self.reread = True
        #: Whether the next images are loaded (decoded, hands found) on a worker thread while one is segmented
        #: (on by default; off only to measure what it brings: benchmarks/throughput.py).
        self.load_ahead = True
        self._request = (backend, compile)
        if is_onnx_file(model):
            self.model, self.name = None, str(model)
            self._key = ("onnx file", str(model), Path(model).stat().st_mtime_ns, per_pool)
            self._built: Built = cache.get(self._key, lambda: onnx_file_runner(model, threads, concurrent))
            own_side = self._built.runner.max_side
        else:
            net = load_model(model, None if isinstance(model, HandUNet) and device is None else self.device)
            #: The float network (None when running an .onnx file), and its name as results report it.
            self.model, self.name = net, net.name_or_path
            self._key = ("runner", id(net), str(self.device), backend, per_pool, compile)
            self._built = cache.get(
                self._key, lambda: build_runner(net, self.device, backend, threads, compile, concurrent)
            )
            own_side = net.max_side
        self._own_side: int | None = own_side
        #: The longer side the network sees (None: full size), unless `scale` is given.
        self.max_side: int | None = resolve_max_side(max_side, own_side)
        self.scale: float | None = checked_scale(scale)

    @property
    def backend(self) -> str:
        """What runs: "torch", "bf16", "onnx" or "int8"."""
        return self._built.runner.backend

    @property
    def notice(self) -> str | None:
        """Why the backend asked for (or auto's first choice) is not the one that runs, and why hand landmarks
        are off where they were asked for, in one line; None when everything runs as asked."""
        return "; ".join(filter(None, (self._built.notice, self._hands_notice))) or None

    @property
    def runner(self) -> Runner:
        """What runs the network (`handseg.backends.Runner`): batch in [0, 1] -> float32 logits; rebuilt
        first if it is an export of weights that have since changed in place (a model fine-tuned in memory
        never runs an int8 file or ONNX export made before)."""
        if self._built.watch is not None and self._built.watch.changed():
            cache.drop(self._key)
            backend, compile = self._request
            net, device, threads, concurrent = self.model, self.device, self._threads, self._concurrent
            self._built = cache.get(self._key, lambda: build_runner(net, device, backend, threads, compile, concurrent))
        return self._built.runner

    @property
    def hand_inputs(self) -> int:
        """Hand landmark channels the network reads after the image's (0: the image alone)."""
        return self.model.hand_channels if self.model is not None else self._built.runner.hand_inputs

    @property
    def landmarker(self) -> HandLandmarker | None:
        """The hand landmark stage (None with `hands=False`), built once per thread count."""
        if not self.hands:
            return None
        threads = cpu_threads(self._threads, self._concurrent, ONNXRUNTIME_POOL)  # its models run on onnxruntime
        return cache.get(("landmarker", threads), lambda: HandLandmarker(threads=threads))

    def runner_threads(self) -> int | None:
        """CPU threads the runner is set to use, read back from it (torch's setting, onnxruntime's session)."""
        return self._built.runner.threads()

    def with_working_size(self, *, max_side: MaxSide = "auto", scale: float | None = None) -> Segmenter:
        """The same model, run the same way, at another working resolution (cheap: nothing is rebuilt)."""
        other = copy.copy(self)
        other.max_side, other.scale = resolve_max_side(max_side, self._own_side), checked_scale(scale)
        return other

    def with_verify(self, verify: bool) -> Segmenter:
        """The same model, run the same way, with hands confirmed (`verify`) or not (cheap: nothing is rebuilt)."""
        other = copy.copy(self)
        other.verify = verify and self.hands
        return other

    def describe(self) -> str:
        """One line: model, backend, device and threads, e.g. for a log."""
        threads = self.runner_threads()
        where = f"{self.device}, {threads} thread{'s' if threads != 1 else ''}" if threads else str(self.device)
        size = f"scale {self.scale}" if self.scale else f"working side {self.max_side or 'full size'}"
        reads = ""
        if self.hand_inputs:
            reads = ", reads hand landmarks" if self.hands else ", hand landmarks off"
        verified = ", hands confirmed" if self.verify else ""
        return f"{self.name or 'model'}: {self.backend} on {where}, {size}{reads}{verified}"

    def default_batch_size(self) -> int:
        """8 on a GPU; 1 on a CPU, where batching measured slower per frame (benchmarks/stages.py)."""
        return 8 if self.device.type == "cuda" else 1

    def __call__(self, image: ImageInput, *, threshold: float = DEFAULT_THRESHOLD, crf: bool = False) -> Segmentation:
        """Segment one image (a path, bytes, a binary file object, a PIL image or an array).
        Raises ImageLoadError for unusable input."""
        ((_, result),) = self.iter_segment([image], threshold=threshold, crf=crf)
        if isinstance(result, ImageLoadError):
            raise result
        return result

    def run(
        self,
        inputs: Iterable[ImageInput],
        then: Callable[[Segmentation, int], Any] | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        crf: bool = False,
        batch_size: int | None = None,
    ) -> Iterator[Outcome]:
        """Segment many inputs, one `Outcome` each, in input order: the one loop of every front end that
        segments many images. `then(result, index)`, when given, is done with each result as it comes (save
        it, encode it); an input that cannot be read, or whose `then` fails with an OSError or
        CRFUnavailableError, gives an Outcome with its `error` and the others go on."""
        for index, result in self.iter_segment(inputs, threshold=threshold, crf=crf, batch_size=batch_size):
            if isinstance(result, ImageLoadError):
                yield Outcome(index, error=result)
                continue
            try:
                output = then(result, index) if then is not None else None
            except (ImageLoadError, OSError, CRFUnavailableError) as exc:
                yield Outcome(index, result, error=exc)
                continue
            yield Outcome(index, result, output)

    def segment_batch(
        self,
        images: Iterable[ImageInput],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        crf: bool = False,
        batch_size: int | None = None,
    ) -> list[Segmentation]:
        """Segment many images, batching those of the same working size. Raises on the first unusable input."""
        results = []
        for outcome in self.run(images, threshold=threshold, crf=crf, batch_size=batch_size):
            if outcome.error is not None:
                raise outcome.error
            results.append(outcome.result)
        return results

    def iter_segment(
        self,
        images: Iterable[ImageInput],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        crf: bool = False,
        batch_size: int | None = None,
        track: bool = False,
    ) -> Iterator[tuple[int, Segmentation | ImageLoadError]]:
        """Segment images lazily, yielding `(index, Segmentation)` pairs in input order.

        An input that cannot be loaded yields `(index, ImageLoadError)` in its place, and the others
        go on; so does one larger than `max_pixels`. Consecutive images whose working sizes match run as
        one batch of up to `batch_size` (default: `default_batch_size()`). `track`: the inputs are frames
        of one video, and each frame's hands are looked for where the last frame's were (the palm detector
        runs again when a hand is lost, and every `REDETECT_EVERY` frames)."""
        checked_threshold(threshold)
        batch_size = checked_batch_size(batch_size) or self.default_batch_size()
        pending: list[tuple[int, ImageInput, Prepared]] = []
        landmarker, hand_inputs = self.landmarker, self.hand_inputs
        finder = HandFinder(landmarker, track) if landmarker is not None else None
        # Hands are found before the network where it reads them or they confirm the mask; else only when a
        # result's hands are first asked for.
        eager = finder is not None and (hand_inputs > 0 or self.verify)

        def flush() -> Iterator[tuple[int, Segmentation]]:
            with torch_threads_set(self._torch_threads):  # not across the yields: the caller's code runs there
                segmented = list(segment_pending())
            pending.clear()
            yield from segmented

        def segment_pending() -> Iterator[tuple[int, Segmentation]]:
            runner = self.runner
            tensors = [prepared.tensor for _, _, prepared in pending]
            logits = runner(tensors[0][None] if len(tensors) == 1 else torch.stack(tensors))  # one: no copy
            for (index, source, prepared), logit in zip(pending, logits):
                working = prepared.working
                # The full image: decoded already, or decoded from the source when first asked for.
                full = working.full
                image = full if full is not None else partial(load_image, source, max_pixels=self.max_pixels)
                hands, labels = None, None
                if self.verify:
                    probability, hands, labels = self._confirmed(prepared, logit, threshold, crf)
                    mask = labels > 0
                else:
                    probability = to_full_size(logit[None], working, crf=crf)
                    mask = probability > threshold
                    if finder is not None:
                        hands = hands_at_full_size(prepared, None if eager else partial(finder, index=index))
                path = str(source) if isinstance(source, str | Path) else None
                yield (
                    index,
                    Segmentation(
                        mask, probability, self.name, runner.backend, image, hands, source=path, _labels=labels
                    ),
                )

        def load(index: int, source: ImageInput) -> Loaded:
            try:
                if isinstance(source, io.IOBase):  # read once: the full image may be decoded again later
                    source = read_file_object(source)
                with torch_threads_set(self._torch_threads):  # a thread of its own: its own count
                    prepared = prepare(
                        source, find_hands=partial(finder, index=index) if eager else None, hand_inputs=hand_inputs,
                        scale=self.scale, max_side=self.max_side, max_pixels=self.max_pixels,
                    )  # fmt: skip
            except ImageLoadError as exc:
                return index, source, exc
            return index, source, prepared

        loaded = prepared_ahead(images, load) if self.load_ahead else (load(*item) for item in enumerate(images))
        for index, source, prepared in loaded:
            if isinstance(prepared, ImageLoadError):
                if pending:  # the images before it first, so results stay in input order
                    yield from flush()
                yield index, prepared
                continue
            if pending and (len(pending) >= batch_size or pending[0][2].tensor.shape != prepared.tensor.shape):
                yield from flush()
            pending.append((index, source, prepared))
        if pending:
            yield from flush()

    def _confirmed(
        self, prepared: Prepared, logit: torch.Tensor, threshold: float, crf: bool
    ) -> tuple[np.ndarray, list[Hand], np.ndarray]:
        """(probability, hands, labels) with every region of the mask confirmed as a hand or dropped
        (`handseg.hands.confirm`): the hands found and confirmed at full size, and which each pixel is.

        A network that reads landmarks reads the photo again when the confirmation found hands the palm
        detector missed, with their landmarks drawn too, and its new mask is kept where the hands explain
        it (`reread`): on val, hands over faces 0.731 -> 0.746 dice, EgoHands and handphotos +0.001, no
        hand-free photo marked more (the model card, "Reading the photo again")."""
        working = prepared.working
        small = small_probability(logit)
        confirmed, kept = self.landmarker.confirm(small > threshold, working.small, prepared.hands, small)
        if self.reread and self.hand_inputs and len(confirmed) > len(prepared.hands):
            logit = self.runner(working_input(working, confirmed, self.hand_inputs)[None])[0]
            kept = explained_by(small_mask(logit, threshold), confirmed)
        probability = to_full_size(logit[None], working, crf=crf)  # of the reading kept: once
        full_hands = hands_at_full_size(replace(prepared, hands=confirmed), None)
        hands, labels = confirmed_labels(probability > threshold, kept, full_hands)
        return probability, hands, labels


def prepared_ahead(images: Iterable[ImageInput], load: Callable[[int, ImageInput], Loaded]) -> Iterator[Loaded]:
    """`load(index, image)` for each of `images` in order, the next ones on a worker thread while the caller
    segments this one: decoding and finding hands (mostly one core) overlap the network and the mask's way
    back to full size (about 1.2x the frames a second on 2 cores idle, less with one busy:
    `python benchmarks/throughput.py`).
    Loads run one at a time, in order (a video's hands are tracked from frame to frame), at most two ahead
    of the caller; a single image starts no thread."""
    items = enumerate(images)
    first = next(items, None)
    if first is None:
        return
    current = load(*first)
    with ThreadPoolExecutor(1, thread_name_prefix="handseg-load") as worker:
        for item in items:
            upcoming = worker.submit(load, *item)
            yield current
            current = upcoming.result()
        yield current


def small_probability(logit: torch.Tensor) -> np.ndarray:
    """One image's hand probability (h, w) at the working size, from its logits (C, h, w)."""
    return probability_from_logits(logit[None].float())[0].numpy()


def small_mask(logit: torch.Tensor, threshold: float) -> np.ndarray:
    """One image's mask at the working size, from its logits (C, h, w)."""
    return small_probability(logit) > threshold


def checked_batch_size(batch_size: int | None) -> int | None:
    """`batch_size` (None: the Segmenter's default) if it is at least 1; else a ValueError saying so."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size


def _segmenter(function: str, model: ModelInput, options: dict[str, Any]) -> Segmenter:
    """The Segmenter `options` describe (built, or reused from the cache); a misspelt keyword is named
    with the function it was given to."""
    for name in options:
        if name not in SegmenterOptions.__annotations__:
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}")
    return Segmenter(model, **options)


def segment(
    image: ImageInput,
    model: ModelInput = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    crf: bool = False,
    **options: Unpack[SegmenterOptions],
) -> Segmentation:
    """Segment the hands in one image: a path, encoded bytes, a binary file object, a PIL image or an array.

    `threshold`: hand probability above which a pixel is hand. `crf`: dense-CRF refinement (needs
    pydensecrf2). `model` and `options` (device, backend, threads, concurrent, compile, max_side,
    scale, max_pixels): see `Segmenter`, which this builds (or reuses: models and runners are cached).
    Raises ImageLoadError for unusable input, DeviceUnavailableError for a device this machine lacks."""
    return _segmenter("segment", model, options)(image, threshold=threshold, crf=crf)


def iter_segment(
    images: Iterable[ImageInput],
    model: ModelInput = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    crf: bool = False,
    batch_size: int | None = None,
    **options: Unpack[SegmenterOptions],
) -> Iterator[tuple[int, Segmentation | ImageLoadError]]:
    """`Segmenter.iter_segment`, with a Segmenter built from `model` and `options` as `segment` builds it."""
    segmenter = _segmenter("iter_segment", model, options)
    return segmenter.iter_segment(images, threshold=threshold, crf=crf, batch_size=batch_size)


def segment_batch(
    images: Iterable[ImageInput],
    model: ModelInput = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    crf: bool = False,
    batch_size: int | None = None,
    **options: Unpack[SegmenterOptions],
) -> list[Segmentation]:
    """`Segmenter.segment_batch`, with a Segmenter built from `model` and `options` as `segment` builds it."""
    segmenter = _segmenter("segment_batch", model, options)
    return segmenter.segment_batch(images, threshold=threshold, crf=crf, batch_size=batch_size)
