"""The one inference path behind the CLI, the app, training validation and evaluation.

load -> working resolution -> HandUNet -> logits resized to the original size
-> sigmoid -> (optional CRF) -> threshold.
"""

from __future__ import annotations

import functools
import os
import tempfile
import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from handseg.crf import refine_with_crf
from handseg.hub import resolve_model_source
from handseg.image import (
    MAX_PIXELS,
    ImageInput,
    ImageLoadError,
    WorkingImage,
    load_image,
    load_working_image,
    to_model_input,
)
from handseg.model import HandUNet
from handseg.onnx_backend import OnnxHandUNet, export_onnx
from handseg.pretrained import pretrained_path
from handseg.quantize import int8_problem, load_int8

#: Cap on the longer side the network sees when neither the caller nor the
#: model's config says otherwise; larger images run down-scaled and the
#: probability map is resized back to full size.
DEFAULT_MAX_SIDE = 1024
#: `max_side="auto"`: the model's own `max_side` (what it was trained at), else DEFAULT_MAX_SIDE.
AUTO = "auto"

ModelInput = HandUNet | OnnxHandUNet | str | Path | None
#: "auto": the fastest path within the quality bar (int8 where the model has its int8 file; see
#: `resolve_backend`); "torch": PyTorch in float32 (bf16 autocast on CUDA); "bf16": PyTorch under bf16
#: autocast; "onnx": onnxruntime in float32; "int8": onnxruntime with the model's int8 file (`handseg.quantize`).
BACKENDS = ("auto", "torch", "bf16", "onnx", "int8")


class DeviceUnavailableError(ValueError):
    """The device asked for is not one torch knows, or not available on this machine (CUDA without a GPU)."""


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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device that this machine has (None: CUDA when available, else the CPU).

    Raises DeviceUnavailableError, in one line, for a name torch does not know ("cuda:x", "gpu") and for
    CUDA on a machine without it, instead of a traceback from deep inside loading."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceUnavailableError(
            f"device {str(device)!r} is not one torch knows; use cpu, cuda or cuda:N"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {str(device)!r}: CUDA is not available here (no NVIDIA GPU, or a CPU build of torch); "
                "use cpu, or leave the device out to use CUDA only where there is one"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceUnavailableError(f"device {str(device)!r}: Apple's MPS is not available here; use cpu")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        backend = getattr(torch, resolved.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise DeviceUnavailableError(f"device {str(device)!r} is not available here; use cpu or cuda")
    return resolved


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(concurrent: int = 1) -> int:
    """CPU threads for one segmentation when `concurrent` run at once: half the usable cores
    shared among them, at least 1.

    Why not all cores (torch's default): when another process keeps one core busy, a team of
    threads as large as the machine waits on its slowest member at every layer. On the 2-core
    development machine with a core busy, 1280x720 frames at 2 threads had a p90 of 493 ms against
    102 ms at 1 thread, while 1 thread costs 49 -> 68 ms idle (`python benchmarks/threads.py`, README)."""
    return max(1, usable_cores() // 2 // max(1, concurrent))


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16, AMX, ARM's BF16 extension).

    There oneDNN runs this model's convolutions in bf16 at about twice the float32 speed; elsewhere
    bf16 is emulated and slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_backend(
    backend: str,
    device: torch.device,
    compile: bool = False,
    model: HandUNet | None = None,
    threads: int | None = None,
) -> str:
    """The backend that runs: `backend` itself, or for "auto" the fastest one within the quality bar
    (at most 0.005 dice per source and 0.1 point of hand-free share from float32: `python
    benchmarks/targets.py --backends torch,bf16,int8`; speeds: `python benchmarks/cpu_paths.py`):

    - on a CPU, "int8" when `model` has its int8 file (`handseg.quantize`) and onnxruntime is
      installed: its network about 3x float32 PyTorch, 2x bf16;
    - else "bf16" on a CPU with bf16 arithmetic (1.6x float32), with a one-line notice saying why
      int8 is not used (once per model);
    - else "torch": float32 on a CPU, bf16 autocast on CUDA; also with `compile=True`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("onnx", "int8") and device.type != "cpu":
        raise ValueError(f"backend {backend!r} runs on the CPU (onnxruntime); use backend='torch' on {device.type}")
    if backend != "auto":
        return backend
    if device.type != "cpu" or compile:
        return "torch"
    fallback = "bf16" if cpu_has_native_bf16() else "torch"
    if model is not None:
        problem = int8_problem(model, threads or default_threads())
        if problem is None:
            return "int8"
        _notice_once(model, f"{problem}; running {fallback} instead (int8: about 2x bf16's speed, 3x float32's)")
    return fallback


_noticed: weakref.WeakSet[HandUNet] = weakref.WeakSet()


def _notice_once(model: HandUNet, message: str) -> None:
    if model not in _noticed:
        _noticed.add(model)
        warnings.warn(message, FastPathNotice, stacklevel=3)


class FastPathNotice(UserWarning):
    """The default CPU path could not use int8 for a model, and says why (once per model)."""


_threads_chosen = False


def set_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads: `threads`, or (None) `default_threads()` the first time
    and only when OMP_NUM_THREADS is not set, so a user's own choice wins. Returns the count in use."""
    global _threads_chosen
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    elif not _threads_chosen and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(default_threads())
    _threads_chosen = True
    return torch.get_num_threads()


@functools.lru_cache(maxsize=4)
def _load_cached(source: str, device: str, compiled: bool) -> HandUNet:
    net = HandUNet.from_pretrained(source, map_location=device).eval()
    if compiled:
        net.compile(dynamic=False)
    return net


@functools.lru_cache(maxsize=4)
def _load_onnx_cached(path: str, threads: int) -> OnnxHandUNet:
    return OnnxHandUNet(path, threads=threads)


#: One ONNX export per model object (weak keys: an export dies with its model, and a new model
#: can never be handed an old model's export). Change a model's weights and you must export anew.
_exported: weakref.WeakKeyDictionary[HandUNet, OnnxHandUNet] = weakref.WeakKeyDictionary()


def _as_onnx(model: HandUNet, threads: int) -> OnnxHandUNet:
    """Export once per model object to a temporary file and run that with onnxruntime."""
    if model not in _exported:
        folder = Path(tempfile.mkdtemp(prefix="handseg-onnx-"))
        _exported[model] = OnnxHandUNet(export_onnx(model, folder / "model.onnx"), threads=threads)
        _exported[model].name_or_path = model.name_or_path or _exported[model].name_or_path
    return _exported[model]


def load_model(
    model: ModelInput = None,
    device: str | torch.device | None = None,
    *,
    backend: str = "auto",
    compile: bool = False,
    threads: int | None = None,
) -> HandUNet | OnnxHandUNet:
    """A model ready for inference: the given module, a hub folder or repo id, the name of a model
    shipped in the package (`handseg.pretrained.available_models()`, e.g. "handunet_lite0.hands_v2"),
    an exported `.onnx` file, or (None) the shipped default model. Loaded models are cached and reused.

    `threads`: CPU threads per segmentation (torch's intra-op threads, or onnxruntime's).
    None: `default_threads()`, set for torch the first time a model is loaded on a CPU unless
    OMP_NUM_THREADS is set (see `set_cpu_threads`).

    `device`: "cpu", "cuda", "cuda:N" (None: CUDA when available); one this machine lacks raises
    DeviceUnavailableError.

    `backend`: see BACKENDS. "auto", "torch" and "bf16" return the PyTorch model: `segment` picks
    the path when it runs (`resolve_backend`; "auto" then uses the model's int8 file where it can);
    "onnx" runs it with onnxruntime on the CPU (exported on first use); "int8" loads the model's
    int8 file (`handseg.quantize.load_int8`).
    `compile=True` compiles the PyTorch model with `torch.compile` (a given module in place, like
    `nn.Module.compile`), for fixed shapes: torch 2.13's dynamic-shape compilation fails on this
    model's padding arithmetic. Each new input size costs a one-off compilation (on a 2-core CPU,
    29 s with a cold compiler cache, 3 s warm), after which every frame runs a little faster; it
    pays for videos and long batches of same-sized frames (`python benchmarks/stages.py`, README).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if compile and backend not in ("auto", "torch"):
        raise ValueError("compile=True applies to the torch backend only")
    if isinstance(model, OnnxHandUNet):
        return model
    onnx_threads = threads or default_threads()
    if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):
        if compile:
            raise ValueError("compile=True applies to PyTorch models, not to an .onnx file")
        return _load_onnx_cached(str(model), onnx_threads)
    if isinstance(model, HandUNet):
        net = model.eval() if device is None else model.to(resolve_device(device)).eval()
        if compile:
            net.compile(dynamic=False)
    else:
        device = resolve_device(device)
        # None: the default model; a shipped model's arch.tag name: its folder; else a folder or repo id.
        source = str(pretrained_path() if model is None else resolve_model_source(model))
        net = _load_cached(source, str(device), compile)
    if backend == "onnx":
        return _as_onnx(net, onnx_threads)
    if backend == "int8":
        return load_int8(net, onnx_threads)
    if next(net.parameters()).device.type == "cpu":
        set_cpu_threads(threads)
    return net


def default_batch_size(net: HandUNet | OnnxHandUNet) -> int:
    """8 on a GPU; 1 on a CPU, where batching measured slower per frame (benchmarks/stages.py)."""
    if isinstance(net, HandUNet) and next(net.parameters()).device.type == "cuda":
        return 8
    return 1


def _probability_from_logits(logits: torch.Tensor) -> torch.Tensor:
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    if logits.shape[1] == 2:
        return torch.softmax(logits, dim=1)[:, 1]
    raise ValueError(f"cannot read a hand probability from {logits.shape[1]} output classes")


@torch.inference_mode()
def predict_logits(model: HandUNet | OnnxHandUNet, batch: torch.Tensor, bf16: bool | None = None) -> torch.Tensor:
    """Raw float32 logits for a (N, 3, H, W) batch in [0, 1], on the model's device.

    `bf16`: run a PyTorch model under bf16 autocast (None: on CUDA only)."""
    if isinstance(model, OnnxHandUNet):
        return model(batch).float()
    device = next(model.parameters()).device
    # channels_last input: oneDNN's convolutions then run without layout conversions, twice as fast
    # on a CPU (`python benchmarks/stages.py`); the module's own weights are left as they are.
    batch = batch.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    # bf16 on GPUs and on CPUs that have it: about twice the throughput, and the masks stay the float
    # model's (README, CPU paths).
    if bf16 is None:
        bf16 = device.type == "cuda"
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(batch).float()


def iter_segment(
    images: Iterable[ImageInput],
    model: ModelInput = None,
    *,
    threshold: float = 0.5,
    crf: bool = False,
    scale: float | None = None,
    max_side: int | str | None = AUTO,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    backend: str = "auto",
    compile: bool = False,
    threads: int | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[tuple[int, Segmentation | ImageLoadError]]:
    """Segment images lazily, yielding `(index, Segmentation)` pairs in input order.

    An input that cannot be loaded yields `(index, ImageLoadError)` in its place, and the
    others go on; so does one larger than `max_pixels` (100 MP: a guard against decompression
    bombs; raise it for larger photos). Consecutive images whose working sizes match run as one batch of up
    to `batch_size` (default: 8 on a GPU, 1 on a CPU).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    net = load_model(model, device, backend=backend, compile=compile, threads=threads)
    name = net.name_or_path
    ran = net.backend if isinstance(net, OnnxHandUNet) else "torch"
    if isinstance(net, HandUNet):
        # int8 gets the threads torch was given (load_model set them: `threads`, or the default)
        cpu_threads = threads or torch.get_num_threads()
        # a module compiled by load_model(compile=True) earlier (the CLI's --compile) runs as compiled
        compiled = compile or getattr(net, "_compiled_call_impl", None) is not None
        ran = resolve_backend(backend, next(net.parameters()).device, compiled, net, cpu_threads)
        if ran == "int8":
            net = load_int8(net, cpu_threads)  # found and checked by resolve_backend: cached
    bf16 = True if ran == "bf16" else None  # None: predict_logits' own rule (bf16 on CUDA)
    if batch_size is None:
        batch_size = default_batch_size(net)
    if max_side == AUTO:
        max_side = net.max_side or DEFAULT_MAX_SIDE
    pending: list[tuple[int, ImageInput, WorkingImage]] = []

    def flush() -> Iterator[tuple[int, Segmentation]]:
        batch = torch.stack([to_model_input(loaded.small) for _, _, loaded in pending])
        logits = predict_logits(net, batch, bf16=bf16)
        for (index, source, loaded), logit in zip(pending, logits):
            result = _finish(source, loaded, logit[None], threshold, crf)
            result.model, result.backend, result._max_pixels = name, ran, max_pixels
            yield index, result
        pending.clear()

    for index, source in enumerate(images):
        try:
            loaded = load_working_image(source, scale=scale, max_side=max_side, max_pixels=max_pixels)
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


def _finish(
    source: ImageInput, loaded: WorkingImage, logits: torch.Tensor, threshold: float, crf: bool
) -> Segmentation:
    small = loaded.small
    height, width = loaded.full_size
    if crf:
        # CRF runs at the working resolution, with its kernels scaled to match: as good as
        # full-size CRF on the val split at a third of the time (README), and a 48 MP photo
        # would need many GB at full size.
        scale = small.shape[1] / width
        refined = refine_with_crf(small, _probability_from_logits(logits)[0].cpu().numpy(), pixel_scale=scale)
        prob = torch.from_numpy(refined)[None, None]
        if prob.shape[-2:] != (height, width):
            prob = F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=False)
        probability = prob[0, 0]
    else:
        if logits.shape[-2:] != (height, width):
            logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probability = _probability_from_logits(logits)[0]
    probability = probability.cpu().numpy().astype(np.float32, copy=False)
    keep_source = loaded.full is None  # the full image is decoded from it on first use
    return Segmentation(
        mask=probability > threshold,
        probability=probability,
        _image=loaded.full,
        _source=source if keep_source else None,
    )


def segment(image: ImageInput, model: ModelInput = None, **options) -> Segmentation:
    """Segment the hands in one image (path, bytes, PIL image or array).

    Options: `threshold` (0.5), `crf` (False), `scale` or `max_side` ("auto":
    the model's training resolution; None: full size), `batch_size`, `device`,
    `backend` ("auto", "torch", "bf16", "onnx" or "int8"; see `resolve_backend`), `compile`
    (torch.compile), `threads` (CPU threads; see `load_model`), `max_pixels` (larger images are refused; 100 MP).
    Raises ImageLoadError for unusable input, DeviceUnavailableError for a device this machine lacks.
    """
    ((_, result),) = iter_segment([image], model, **options)
    if isinstance(result, ImageLoadError):
        raise result
    return result


def segment_batch(images: Iterable[ImageInput], model: ModelInput = None, **options) -> list[Segmentation]:
    """Segment many images, batching those of the same working size. Raises on the first unusable input."""
    results = []
    for _, result in iter_segment(images, model, **options):
        if isinstance(result, ImageLoadError):
            raise result
        results.append(result)
    return results
