"""Masks for whole datasets, through the engines built for them: Hugging Face `datasets` and Ray Data.

`HandSegmenter` adds a mask column to a batch of images. It is the same callable for both:

    import datasets, handseg
    ds = datasets.load_dataset("imagefolder", data_dir="photos")["train"]
    ds = ds.map(handseg.HandSegmenter(), batched=True, batch_size=16, num_proc=2)   # a "mask" column of PNGs

    import ray
    ray.data.read_images("s3://bucket/photos").map_batches(
        handseg.HandSegmenter, fn_constructor_kwargs={"mask_format": "array", "processes": 4},
        concurrency=4, num_cpus=0.5, batch_size=16,  # num_cpus below 1 leaves Ray's readers a core
    )

Its `Segmenter` is built once per process, on the first batch (each `num_proc` worker and each Ray actor
builds its own; in a forked worker PyTorch runs one thread, `handseg.hardware.torch_threads`), and never
pickled: what `datasets` fingerprints for its cache is the model and the
options, so a re-run of the same map is read from the cache instead of computed again. An image that
cannot be used gets no mask and its reason in `error_column`; the others go on. For folders of files,
resumable and written as PNG files beside a failures list, `python -m handseg.ray` runs the whole job
(`handseg.ray`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Unpack

import numpy as np
from PIL import Image

from handseg.image import ImageInput, ImageLoadError, png_bytes
from handseg.processing import DEFAULT_THRESHOLD
from handseg.segmenter import ModelInput, Segmenter, SegmenterOptions
from handseg.visualize import mask_to_image

#: How masks are returned: "image" (PIL images, stored by `datasets` as PNG), "array" (uint8 0/255
#: arrays, as Ray Data keeps tensors) or "png" (encoded PNG bytes).
MASK_FORMATS = ("image", "array", "png")


class HandSegmenter:
    """A callable over batches (a dict of columns), adding `mask_column` and `error_column`, and, where the
    Segmenter looks for hands (its default), `hands_column` (each image's hands as JSON text: left or right,
    score, landmarks, pixels; `Segmentation.to_dict()["hands"]`) and `hand_labels_column` (0 background,
    1..N by hand, in `mask_format`).

    Images may be PIL images, `datasets.Image(decode=False)` cells ({"bytes", "path"}), paths, encoded
    bytes or arrays. `model` and `options` are `handseg.Segmenter`'s, `processes` its `concurrent` (the
    workers or actors sharing the machine, among which the cores are shared when `threads` is not given);
    `threshold`, `crf` and `batch_size` are `Segmenter.run`'s."""

    def __init__(
        self,
        model: ModelInput = None,
        *,
        image_column: str = "image",
        mask_column: str = "mask",
        error_column: str = "handseg_error",
        hands_column: str = "hands",
        hand_labels_column: str = "hand_labels",
        mask_format: str = "image",
        threshold: float = DEFAULT_THRESHOLD,
        crf: bool = False,
        batch_size: int | None = None,
        processes: int = 1,
        **options: Unpack[SegmenterOptions],
    ) -> None:
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
        unknown = set(options) - set(SegmenterOptions.__annotations__)
        if unknown:
            raise TypeError(f"HandSegmenter() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        self.model = str(model) if isinstance(model, Path) else model  # a path pickles (and hashes) as text
        self.columns = (image_column, mask_column, error_column)
        self.hand_columns = (hands_column, hand_labels_column)
        self.mask_format = mask_format
        self.run_options = {"threshold": threshold, "crf": crf, "batch_size": batch_size}
        self.segmenter_options = {**options, "concurrent": processes}
        self._segmenter: Segmenter | None = None

    @property
    def segmenter(self) -> Segmenter:
        """Built on first use, once per process."""
        if self._segmenter is None:
            self._segmenter = Segmenter(self.model, **self.segmenter_options)
        return self._segmenter

    def __getstate__(self) -> dict[str, Any]:
        # A worker builds its own Segmenter; the cache's fingerprint is the model and options alone.
        return {**self.__dict__, "_segmenter": None}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        image_column, mask_column, error_column = self.columns
        cells = batch[image_column]
        masks: list[Any] = [None] * len(cells)
        labels: list[Any] = [None] * len(cells)
        hands = [""] * len(cells)
        errors = [""] * len(cells)
        for outcome in self.segmenter.run([_as_input(cell) for cell in cells], **self.run_options):
            if outcome.error is not None:
                errors[outcome.index] = _named(outcome.error, cells[outcome.index])
                continue
            result = outcome.result
            masks[outcome.index] = self._encode(mask_to_image(result.mask))
            if self.segmenter.hands:
                labels[outcome.index] = self._encode(result.hand_labels)
                hands[outcome.index] = json.dumps(result.to_dict()["hands"])
        if self.mask_format == "array":
            masks = [m if m is not None else np.zeros((0, 0), np.uint8) for m in masks]
            labels = [m if m is not None else np.zeros((0, 0), np.uint8) for m in labels]
        columns = {mask_column: masks, error_column: errors}
        if self.segmenter.hands:
            columns.update(zip(self.hand_columns, (hands, labels)))
        return {**batch, **columns}

    def _encode(self, mask: np.ndarray) -> Any:
        if self.mask_format == "array":
            return mask
        if self.mask_format == "image":
            return Image.fromarray(mask)
        return png_bytes(mask)


def _named(error: Exception, cell: Any) -> str:
    """An error naming the file it came from, where the cell knows it (bytes read from a dataset say "image")."""
    path = cell.get("path") if isinstance(cell, dict) else None
    if path and isinstance(error, ImageLoadError):
        return f"{path}: {error.reason}"
    return str(error)


def _as_input(image: Any) -> ImageInput:
    """A batch cell as something `Segmenter` reads: a datasets Image(decode=False) cell gives its bytes
    (or path); numpy object cells and the rest pass as they are."""
    if isinstance(image, dict):
        return image.get("bytes") or image.get("path")
    return image
