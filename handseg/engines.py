"""Masks for whole datasets, through the engines built for them: Hugging Face `datasets` and Ray Data.

`HandSegmenter` adds a mask column to a batch of images. It is the same callable for both:

    import datasets, handseg
    ds = datasets.load_dataset("imagefolder", data_dir="photos")["train"]
    ds = ds.map(handseg.HandSegmenter(), batched=True, batch_size=16, num_proc=2)   # a "mask" column of PNGs

    import ray
    ray.data.read_images("s3://bucket/photos").map_batches(
        handseg.HandSegmenter, fn_constructor_kwargs={"mask_format": "array"}, concurrency=4, batch_size=16
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

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from handseg.hardware import default_threads
from handseg.image import MAX_PIXELS, ImageInput, ImageLoadError
from handseg.segmenter import AUTO, MaxSide, ModelInput, Segmenter
from handseg.visualize import mask_to_image

#: How masks are returned: "image" (PIL images, stored by `datasets` as PNG), "array" (uint8 0/255
#: arrays, as Ray Data keeps tensors) or "png" (encoded PNG bytes).
MASK_FORMATS = ("image", "array", "png")


class HandSegmenter:
    """A callable over batches (a dict of columns), adding `mask_column` and `error_column`.

    Images may be PIL images, `datasets.Image(decode=False)` cells ({"bytes", "path"}), paths, encoded
    bytes or arrays. `model` and the keywords after it are `handseg.Segmenter`'s (`threads` None: half
    the usable cores divided among `processes`, the workers or actors sharing the machine)."""

    def __init__(
        self,
        model: ModelInput = None,
        *,
        image_column: str = "image",
        mask_column: str = "mask",
        error_column: str = "handseg_error",
        mask_format: str = "image",
        threshold: float = 0.5,
        crf: bool = False,
        device: str | None = None,
        backend: str = "auto",
        threads: int | None = None,
        processes: int = 1,
        max_side: MaxSide = AUTO,
        batch_size: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {', '.join(MASK_FORMATS)}, got {mask_format!r}")
        self.model = str(model) if isinstance(model, Path) else model  # a path pickles (and hashes) as text
        self.columns = (image_column, mask_column, error_column)
        self.mask_format = mask_format
        self.options = {"threshold": threshold, "crf": crf, "batch_size": batch_size, "max_pixels": max_pixels}
        self.segmenter_options = {"device": device, "backend": backend, "threads": threads, "max_side": max_side}
        self.processes = processes
        self._segmenter: Segmenter | None = None

    @property
    def segmenter(self) -> Segmenter:
        """Built on first use, once per process."""
        if self._segmenter is None:
            options = dict(self.segmenter_options)
            if options["threads"] is None:
                options["threads"] = default_threads(concurrent=self.processes)
            self._segmenter = Segmenter(self.model, **options)
        return self._segmenter

    def __getstate__(self) -> dict[str, Any]:
        # A worker builds its own Segmenter; the cache's fingerprint is the model and options alone.
        return {**self.__dict__, "_segmenter": None}

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        image_column, mask_column, error_column = self.columns
        images = [_as_input(image) for image in batch[image_column]]
        masks: list[Any] = [None] * len(images)
        errors = [""] * len(images)
        for index, result in self.segmenter.iter_segment(images, **self.options):
            if isinstance(result, ImageLoadError):
                errors[index] = _named(str(result), batch[image_column][index])
            else:
                masks[index] = self._encode(mask_to_image(result.mask))
        if self.mask_format == "array":
            masks = [m if m is not None else np.zeros((0, 0), np.uint8) for m in masks]
        return {**batch, mask_column: masks, error_column: errors}

    def _encode(self, mask: np.ndarray) -> Any:
        if self.mask_format == "array":
            return mask
        picture = Image.fromarray(mask)
        if self.mask_format == "image":
            return picture
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        return buffer.getvalue()


def _named(message: str, cell: Any) -> str:
    """An error naming the file it came from, where the cell knows it (bytes read from a dataset say "image")."""
    path = cell.get("path") if isinstance(cell, dict) else None
    if path and path not in message:
        return f"{path}: {message.removeprefix('image: ')}"
    return message


def _as_input(image: Any) -> ImageInput:
    """A batch cell as something `Segmenter` reads: a datasets Image(decode=False) cell gives its bytes
    (or path); numpy object cells and the rest pass as they are."""
    if isinstance(image, dict):
        return image.get("bytes") or image.get("path")
    return image
