"""The one inference path behind the CLI, the app, video, training validation and evaluation.

A `Segmenter` is built once from a model and how to run it (device, backend, threads, compile,
working resolution): the only place where "auto" is decided. It then segments images:

    load -> working resolution -> runner (handseg.backends) -> logits resized to the original size
    -> sigmoid -> (optional CRF) -> threshold.

`handseg.segment(image, ...)` is the one-line convenience: it builds (or reuses) a Segmenter and
runs it. Loaded models and runners live in one cache, keyed on what they depend on.
"""

from __future__ import annotations

import copy
import io
import numbers
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from handseg.backends import (
    FastPathNotice,
    Int8UnavailableError,
    OnnxRunner,
    OnnxUnavailableError,
    Runner,
    TorchRunner,
    int8_runner,
    weights_version,
)
from handseg.crf import refine_with_crf
from handseg.hardware import cpu_has_native_bf16, cpu_threads, resolve_device
from handseg.hub import ModelNotFoundError, resolve_model_source
from handseg.image import (
    DEFAULT_MAX_SIDE,
    MAX_PIXELS,
    ImageInput,
    ImageLoadError,
    WorkingImage,
    load_image,
    load_working_image,
    read_file_object,
    to_model_input,
)
from handseg.model import HandUNet
from handseg.pretrained import pretrained_path

#: A model: a HandUNet, a hub folder or repo id, a shipped model's name, an exported `.onnx` file,
#: or None for the shipped default model.
ModelInput = HandUNet | str | Path | None
#: The working resolution: "auto" (the model's own, from its config; else DEFAULT_MAX_SIDE), a cap on
#: the longer side in pixels, or None (full size).
MaxSide = int | Literal["auto"] | None
AUTO: Literal["auto"] = "auto"

#: "auto": the fastest path within the quality bar (int8 where the model has its int8 file; see
#: `Segmenter`); "torch": PyTorch in float32 (bf16 autocast on CUDA); "bf16": PyTorch under bf16
#: autocast; "onnx": onnxruntime in float32; "int8": onnxruntime with the model's int8 file.
BACKENDS = ("auto", "torch", "bf16", "onnx", "int8")


@dataclass(repr=False)
class Segmentation:
    """The result for one image, at the image's original (displayed) size."""

    mask: np.ndarray  #: bool (H, W): True where a hand is
    probability: np.ndarray  #: float32 (H, W): hand probability in [0, 1]
    model: str | None = None  #: the model that made it: a shipped model's name, a folder or a repo id
    backend: str | None = None  #: how it ran: "torch", "bf16", "onnx" or "int8" (see BACKENDS)
    _image: np.ndarray | None = None
    _source: ImageInput | None = None
    _max_pixels: int = MAX_PIXELS

    def __repr__(self) -> str:
        height, width = self.mask.shape
        return (
            f"Segmentation({width}x{height}, hand {100 * self.hand_fraction:.1f}%, model={self.model!r}, "
            f"backend={self.backend!r})"
        )

    @property
    def image(self) -> np.ndarray:
        """uint8 (H, W, 3): the RGB image as segmented, at full size.

        A JPEG the network saw through a reduced decode is decoded in full here, on first use,
        so callers that only want the mask never pay for it."""
        if self._image is None:
            self._image = load_image(self._source, max_pixels=self._max_pixels)
        return self._image

    @property
    def hand_fraction(self) -> float:
        """Share of the image's pixels marked as hand."""
        return float(self.mask.mean())


class _Cache:
    """Loaded models and built runners, least recently used first out. Entries hold their model, so a
    model object's id stays its own while its entry lives."""

    def __init__(self, size: int = 8) -> None:
        self._entries: OrderedDict[tuple, Any] = OrderedDict()
        self._size = size
        self._lock = threading.RLock()

    def get(self, key: tuple, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
            value = self._entries[key] = build()
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
            return value

    def drop(self, key: tuple) -> None:
        with self._lock:
            self._entries.pop(key, None)


_cache = _Cache()


def _source_key(model: str | Path | None) -> tuple:
    """What a model given by name depends on: its folder (or repo id) and, for a folder, when its
    weights were written, so a model saved anew is loaded anew."""
    source = str(pretrained_path() if model is None else resolve_model_source(model))
    weights = Path(source) / "model.safetensors"
    return (source, weights.stat().st_mtime_ns if weights.is_file() else None)


def load_model(model: ModelInput = None, device: str | torch.device | None = None) -> HandUNet:
    """The float network, ready for inference (eval mode): the given module (moved to `device` when
    given), a hub folder or repo id, the name of a model shipped in the package
    (`handseg.available_models()`, e.g. "handunet_lite0.hands_v2"), or (None) the shipped default
    model. Models loaded by name are cached and reused.

    `device`: "cpu", "cuda", "cuda:N" (None: CUDA when available); one this machine lacks raises
    DeviceUnavailableError. To choose how it runs (int8, bf16, threads, ...), build a `Segmenter`."""
    if isinstance(model, HandUNet):
        return model.eval() if device is None else model.to(resolve_device(device)).eval()
    if model is not None and str(model).endswith(".onnx"):
        raise ValueError(f"{model}: an .onnx file runs with onnxruntime only; use handseg.Segmenter({str(model)!r})")
    target = resolve_device(device)
    key = ("model", *_source_key(model), str(target))
    source = key[1]
    return _cache.get(key, lambda: HandUNet.from_pretrained(source, map_location=str(target)).eval())


@dataclass(frozen=True)
class _Built:
    """What a Segmenter runs: the runner, the float model it came from (None for an .onnx file), and
    the model's weights version when the runner is an export of them (onnx, int8)."""

    runner: Runner
    model: HandUNet | None
    name: str | None
    notice: str | None
    exported_from: tuple[int, ...] | None
    own_side: int | None  #: the working resolution the model was trained at (its config, or an .onnx's metadata)


class Segmenter:
    """Segments images with one model, run one way, decided once.

    segmenter = handseg.Segmenter("handunet_lite0.hands_v4", threads=2)
    segmenter("photo.jpg").mask                      # bool (H, W)
    for index, result in segmenter.iter_segment(paths): ...

    `model`: a HandUNet, a hub folder or repo id, a shipped model's name, an exported `.onnx` file,
    or None (the shipped default model).
    `device`: "cpu", "cuda" or "cuda:N" (None: CUDA when available; a given HandUNet's own device).
    `backend`: one of BACKENDS. "auto" is, on a CPU: "int8" where the model has its int8 file and
    onnxruntime is installed (its network about 3x float32 PyTorch, 2x bf16; on x86 CPUs without VNNI
    onnxruntime is told to add int8 products exactly, `handseg.backends.exact_int8_entries`), else
    "bf16" on a CPU with bf16 arithmetic (1.6x float32), else "torch"; on CUDA, and with
    `compile=True`, "torch".
    Speeds: `python benchmarks/cpu_paths.py`; the quality bar every CPU path meets (0.005 dice per
    source, 0.1 point of hand-free share from float32): `python benchmarks/targets.py`.
    When the first choice cannot run, `notice` says why, and a FastPathNotice warning says it once.
    `threads`: CPU threads (torch's, or onnxruntime's); None: OMP_NUM_THREADS where set, else half
    the usable cores (`handseg.hardware.default_threads`), which holds up when the machine is busy.
    `compile`: torch.compile the float model (a one-off compilation per input size; see README).
    `max_side`: the working resolution (see MaxSide); `scale`, instead, multiplies both sides.
    """

    def __init__(
        self,
        model: ModelInput = None,
        *,
        device: str | torch.device | None = None,
        backend: str = "auto",
        threads: int | None = None,
        compile: bool = False,
        max_side: MaxSide = AUTO,
        scale: float | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if compile and backend not in ("auto", "torch"):
            raise ValueError("compile=True applies to the torch backend only")
        onnx_file = isinstance(model, (str, Path)) and str(model).endswith(".onnx")
        if backend in ("onnx", "int8") and device is not None and str(device).split(":")[0] not in ("cpu", ""):
            raise ValueError(f"backend {backend!r} runs on the CPU (onnxruntime); use backend='torch' on {device}")
        if isinstance(model, HandUNet) and device is None:
            self.device = next(model.parameters()).device
        else:
            self.device = resolve_device(
                "cpu" if (onnx_file or backend in ("onnx", "int8")) and device is None else device
            )
        if (onnx_file or backend in ("onnx", "int8")) and self.device.type != "cpu":
            raise ValueError(
                f"onnxruntime runs on the CPU here, and the model is on {self.device}; use backend='torch'"
            )
        self.threads: int | None = cpu_threads(threads) if self.device.type == "cpu" else None
        self._request = (backend, compile)
        if onnx_file:
            if not Path(model).is_file():
                raise ModelNotFoundError(f"{model}: no such file")
            if backend not in ("auto", "onnx", "int8") or compile:
                raise ValueError(f"{model} is an ONNX graph, run by onnxruntime: leave backend and compile as they are")
            self._key = ("onnx file", str(model), Path(model).stat().st_mtime_ns, self.threads)
            self._built = _cache.get(self._key, lambda: _onnx_file(model, self.threads))
        else:
            net = load_model(model, None if isinstance(model, HandUNet) and device is None else self.device)
            name = net.name_or_path
            self._key = ("runner", id(net), str(self.device), backend, self.threads, compile)
            self._built = _cache.get(self._key, lambda: _build(net, name, self.device, backend, self.threads, compile))
        #: The longer side the network sees (None: full size), unless `scale` is given.
        self.max_side: int | None = _working_side(max_side, self._own_side())
        self.scale: float | None = _positive_scale(scale)

    @property
    def model(self) -> HandUNet | None:
        """The float network (None when running an .onnx file)."""
        return self._built.model

    @property
    def name(self) -> str | None:
        """The model's name as results report it: a shipped model's name, a folder or a repo id."""
        return self._built.name

    @property
    def backend(self) -> str:
        """What runs: "torch", "bf16", "onnx" or "int8"."""
        return self._built.runner.backend

    @property
    def notice(self) -> str | None:
        """Why the backend asked for (or auto's first choice) is not the one that runs; None if it is."""
        return self._built.notice

    @property
    def runner(self) -> Runner:
        """What runs the network (`handseg.backends.Runner`): batch in [0, 1] -> float32 logits."""
        return self._runner()

    def runner_threads(self) -> int | None:
        """CPU threads the runner is set to use, read back from it (torch's setting, onnxruntime's session)."""
        return self._built.runner.threads()

    def with_working_size(self, *, max_side: MaxSide = AUTO, scale: float | None = None) -> Segmenter:
        """The same model, run the same way, at another working resolution (cheap: nothing is rebuilt)."""
        other = copy.copy(self)
        other.max_side, other.scale = _working_side(max_side, self._own_side()), _positive_scale(scale)
        return other

    def _own_side(self) -> int:
        return self._built.own_side or DEFAULT_MAX_SIDE

    def describe(self) -> str:
        """One line: model, backend, device and threads, e.g. for a log."""
        threads = self.runner_threads()
        where = f"{self.device}, {threads} thread{'s' if threads != 1 else ''}" if threads else str(self.device)
        size = f"scale {self.scale}" if self.scale else f"working side {self.max_side or 'full size'}"
        return f"{self.name or 'model'}: {self.backend} on {where}, {size}"

    def _runner(self) -> Runner:
        """The built runner, rebuilt first if it is an export of weights that have since changed in place
        (a model fine-tuned in memory never runs an int8 file or ONNX export made before)."""
        built = self._built
        if built.exported_from is not None and weights_version(built.model) != built.exported_from:
            _cache.drop(self._key)
            backend, compile = self._request
            self._built = _cache.get(
                self._key, lambda: _build(built.model, built.name, self.device, backend, self.threads, compile)
            )
        return self._built.runner

    def default_batch_size(self) -> int:
        """8 on a GPU; 1 on a CPU, where batching measured slower per frame (benchmarks/stages.py)."""
        return 8 if self.device.type == "cuda" else 1

    def __call__(
        self, image: ImageInput, *, threshold: float = 0.5, crf: bool = False, max_pixels: int = MAX_PIXELS
    ) -> Segmentation:
        """Segment one image (a path, bytes, a binary file object, a PIL image or an array).
        Raises ImageLoadError for unusable input."""
        ((_, result),) = self.iter_segment([image], threshold=threshold, crf=crf, max_pixels=max_pixels)
        if isinstance(result, ImageLoadError):
            raise result
        return result

    def segment_batch(
        self,
        images: Iterable[ImageInput],
        *,
        threshold: float = 0.5,
        crf: bool = False,
        batch_size: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> list[Segmentation]:
        """Segment many images, batching those of the same working size. Raises on the first unusable input."""
        results = []
        for _, result in self.iter_segment(
            images, threshold=threshold, crf=crf, batch_size=batch_size, max_pixels=max_pixels
        ):
            if isinstance(result, ImageLoadError):
                raise result
            results.append(result)
        return results

    def iter_segment(
        self,
        images: Iterable[ImageInput],
        *,
        threshold: float = 0.5,
        crf: bool = False,
        batch_size: int | None = None,
        max_pixels: int = MAX_PIXELS,
    ) -> Iterator[tuple[int, Segmentation | ImageLoadError]]:
        """Segment images lazily, yielding `(index, Segmentation)` pairs in input order.

        An input that cannot be loaded yields `(index, ImageLoadError)` in its place, and the others
        go on; so does one larger than `max_pixels` (100 MP: a guard against decompression bombs;
        raise it for larger photos). Consecutive images whose working sizes match run as one batch
        of up to `batch_size` (default: `default_batch_size()`)."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        batch_size = batch_size or self.default_batch_size()
        pending: list[tuple[int, ImageInput, WorkingImage]] = []

        def flush() -> Iterator[tuple[int, Segmentation]]:
            runner = self._runner()
            logits = runner(torch.stack([to_model_input(loaded.small) for _, _, loaded in pending]))
            for (index, source, loaded), logit in zip(pending, logits):
                result = _finish(source, loaded, logit[None], threshold, crf)
                result.model, result.backend, result._max_pixels = self.name, runner.backend, max_pixels
                yield index, result
            pending.clear()

        for index, source in enumerate(images):
            try:
                if isinstance(source, io.IOBase):  # read once: the full image may be decoded again later
                    source = read_file_object(source)
                loaded = load_working_image(source, scale=self.scale, max_side=self.max_side, max_pixels=max_pixels)
            except ImageLoadError as exc:
                if pending:  # the images before it first, so results stay in input order
                    yield from flush()
                yield index, exc
                continue
            if pending and (len(pending) >= batch_size or pending[0][2].small.shape != loaded.small.shape):
                yield from flush()
            pending.append((index, source, loaded))
        if pending:
            yield from flush()


def _working_side(max_side: MaxSide, own_side: int) -> int | None:
    if max_side == AUTO:
        return own_side
    if max_side is None:
        return None
    if not isinstance(max_side, numbers.Integral) or max_side < 1:
        raise ValueError(f"max_side must be 'auto', None (full size) or a side of at least 1 pixel, got {max_side!r}")
    return int(max_side)


def _positive_scale(scale: float | None) -> float | None:
    if scale is not None and scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return scale


#: How much faster int8 and bf16 are than float32 PyTorch on a CPU (`python benchmarks/cpu_paths.py`).
_SPEED_NOTE = "int8: about 2x bf16's speed, 3x float32's"


def _onnx_file(path: str | Path, threads: int) -> _Built:
    runner = OnnxRunner(path, threads)
    return _Built(runner, None, str(path), None, None, runner.max_side)


def _build(
    model: HandUNet, name: str | None, device: torch.device, backend: str, threads: int | None, compile: bool
) -> _Built:
    """The only place a backend is chosen: "auto" resolved, and any fallback noticed (once, as the
    result is cached)."""
    notice, side = None, model.max_side
    if backend == "auto":
        if device.type != "cpu" or compile:
            backend = "torch"
        else:
            fallback = "bf16" if cpu_has_native_bf16() else "torch"
            try:
                return _Built(int8_runner(model, name, threads), model, name, None, weights_version(model), side)
            except (Int8UnavailableError, OnnxUnavailableError) as exc:
                notice = f"{exc}; running {fallback} instead ({_SPEED_NOTE})"
                backend = fallback
    elif backend == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        # Emulated bf16 took 4.1 s a frame against 0.32 s in float32 on an AVX2-only AMD EPYC.
        notice = "this CPU has no bf16 arithmetic (AVX512-BF16 or AMX), so bf16 would be emulated and many times "
        notice += "slower than float32; running torch (float32) instead"
        backend = "torch"
    if notice:
        warnings.warn(notice, FastPathNotice, stacklevel=5)  # at the caller of Segmenter(...)
    if backend == "int8":
        return _Built(int8_runner(model, name, threads), model, name, notice, weights_version(model), side)
    if backend == "onnx":
        from handseg.export import export_onnx  # build time; needs the onnx extra

        path = export_onnx(model, Path(tempfile.mkdtemp(prefix="handseg-onnx-")) / "model.onnx")
        return _Built(OnnxRunner(path, threads), model, name, notice, weights_version(model), side)
    network = torch.compile(model, dynamic=False) if compile else model
    # bf16 autocast on GPUs, and on CPUs when asked: masks within 0.002 dice of float32 (README).
    bf16 = backend == "bf16" or device.type == "cuda"
    return _Built(TorchRunner(network, bf16=bf16, threads=threads, compiled=compile), model, name, notice, None, side)


def _probability_from_logits(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ValueError(f"cannot read a hand probability from {logits.shape[1]} output classes")


def _finish(
    source: ImageInput, loaded: WorkingImage, logits: torch.Tensor, threshold: float, crf: bool
) -> Segmentation:
    small = loaded.small
    height, width = loaded.full_size
    logits = logits.float().cpu()
    if crf:
        # CRF runs at the working resolution, with its kernels scaled to match: as good as
        # full-size CRF on the val split at a third of the time (README), and a 48 MP photo
        # would need many GB at full size.
        scale = small.shape[1] / width
        refined = refine_with_crf(small, _probability_from_logits(logits)[0].numpy(), pixel_scale=scale)
        prob = torch.from_numpy(refined)[None, None]
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=False)
        probability = prob[0, 0]
    else:
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probability = _probability_from_logits(logits)[0]
    probability = probability.numpy().astype(np.float32, copy=False)
    keep_source = loaded.full is None  # the full image is decoded from it on first use
    return Segmentation(
        mask=probability > threshold,
        probability=probability,
        _image=loaded.full,
        _source=source if keep_source else None,
    )


def segment(
    image: ImageInput,
    model: ModelInput = None,
    *,
    threshold: float = 0.5,
    crf: bool = False,
    max_side: MaxSide = AUTO,
    scale: float | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
    threads: int | None = None,
    compile: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Segmentation:
    """Segment the hands in one image: a path, encoded bytes, a binary file object, a PIL image or an array.

    `threshold`: hand probability above which a pixel is hand. `crf`: dense-CRF refinement (needs
    pydensecrf2). `max_pixels`: larger images are refused (100 MP, a guard against decompression bombs).
    `model`, `device`, `backend`, `threads`, `compile`, `max_side` and `scale`: see `Segmenter`, which
    this builds (or reuses: models and runners are cached) and runs.
    Raises ImageLoadError for unusable input, DeviceUnavailableError for a device this machine lacks."""
    segmenter = Segmenter(
        model, device=device, backend=backend, threads=threads, compile=compile, max_side=max_side, scale=scale
    )
    return segmenter(image, threshold=threshold, crf=crf, max_pixels=max_pixels)


def iter_segment(
    images: Iterable[ImageInput],
    model: ModelInput = None,
    *,
    threshold: float = 0.5,
    crf: bool = False,
    max_side: MaxSide = AUTO,
    scale: float | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
    threads: int | None = None,
    compile: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[tuple[int, Segmentation | ImageLoadError]]:
    """`Segmenter.iter_segment` with a Segmenter built from the same keywords as `segment`."""
    segmenter = Segmenter(
        model, device=device, backend=backend, threads=threads, compile=compile, max_side=max_side, scale=scale
    )
    return segmenter.iter_segment(images, threshold=threshold, crf=crf, batch_size=batch_size, max_pixels=max_pixels)


def segment_batch(
    images: Iterable[ImageInput],
    model: ModelInput = None,
    *,
    threshold: float = 0.5,
    crf: bool = False,
    max_side: MaxSide = AUTO,
    scale: float | None = None,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
    threads: int | None = None,
    compile: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> list[Segmentation]:
    """`Segmenter.segment_batch` with a Segmenter built from the same keywords as `segment`."""
    segmenter = Segmenter(
        model, device=device, backend=backend, threads=threads, compile=compile, max_side=max_side, scale=scale
    )
    return segmenter.segment_batch(images, threshold=threshold, crf=crf, batch_size=batch_size, max_pixels=max_pixels)
