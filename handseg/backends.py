"""What runs the network, and the one place it is chosen: PyTorch (float32 or bf16 autocast) or
onnxruntime (float32 or int8).

Every backend is a runner with one small protocol (`Runner`): it takes a batch, (N, C, H, W) float
in [0, 1], returns float32 logits, and says what it is. `build_runner` decides which one runs a
model ("auto" resolved, fallbacks noticed); `handseg.Segmenter` asks it once and feeds what it
gets, and nothing else in the pipeline cares which. An int8 file (`model_int8.onnx`, beside a
model's `model.safetensors`) is found and checked here: it records a digest of the weights it was
made from, and one made from other weights is refused, never run. Making one is build time:
`handseg.export.quantize_int8`.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from handseg.hardware import (
    ONNXRUNTIME_POOL,
    TORCH_POOL,
    cpu_has_native_bf16,
    cpu_multiplies_int8_exactly,
    cpu_threads,
    resolve_device,
    torch_threads,
)
from handseg.hub import ModelNotFoundError
from handseg.model import HandUNet
from handseg.packaging import (
    CONFIG_KEY,
    INT8_FILE,
    PRECISION_KEY,
    FastPathNotice,
    OnnxUnavailableError,
    how_to_make_int8,
    int8_digest,
    weights_digest,
)

#: "auto": the fastest path within the quality bar (int8 where the model has its int8 file; see
#: `build_runner`); "torch": PyTorch in float32 (bf16 autocast on CUDA); "bf16": PyTorch under bf16
#: autocast; "onnx": onnxruntime in float32; "int8": onnxruntime with the model's int8 file.
BACKENDS = ("auto", "torch", "bf16", "onnx", "int8")
AUTO: Literal["auto"] = "auto"

#: onnxruntime's session setting for exact int8 sums on x86 without VNNI (kOrtSessionOptionsAvx2PrecisionMode):
#: its int8 kernels there sum pairs of uint8 x int8 products into 16 bits with saturation; with it, the
#: weights are turned to uint8 at load and the U8U8 kernels widen before adding, so the masks equal a VNNI
#: CPU's (`python benchmarks/int8_cpus.py`). It costs 2.6x on a VNNI CPU, where the sums are exact anyway.
X64_EXACT_INT8 = {"session.x64quantprecision": "1"}

#: How much faster int8 and bf16 are than float32 PyTorch on a CPU (`python benchmarks/cpu_paths.py`).
_SPEED_NOTE = "int8: about 2x bf16's speed, 3x float32's"


class Int8UnavailableError(FileNotFoundError):
    """The model has no int8 file, or its int8 file was made from other weights."""


class Runner(Protocol):
    """A network ready to run: a batch in, float32 logits out (on the CPU for onnxruntime)."""

    backend: str  #: "torch", "bf16", "onnx" or "int8"
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...

    def threads(self) -> int | None:
        """CPU threads it runs with (None on a GPU)."""
        ...


class TorchRunner:
    """A HandUNet in PyTorch, in float32 or under bf16 autocast, with channels_last input.

    `threads` is the count it was built for; the Segmenter that runs it applies its torch pool's count (the
    same) around all of its torch work, this network included (`handseg.hardware.torch_threads_set`)."""

    def __init__(self, model: nn.Module, *, bf16: bool, threads: int | None, compiled: bool = False) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.backend = "bf16" if bf16 and self.device.type == "cpu" else "torch"
        self.bf16 = bf16
        self.compiled = compiled
        self._threads = threads if self.device.type == "cpu" else None

    def threads(self) -> int | None:
        return torch_threads(self._threads) if self._threads is not None else None

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        # channels_last input: oneDNN's convolutions then run without layout conversions, twice as fast
        # on a CPU (`python benchmarks/stages.py`); the module's own weights are left as they are.
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(batch).float()


def exact_int8_entries() -> dict[str, str]:
    """The onnxruntime session settings that make int8 sums exact on this CPU: X64_EXACT_INT8 where the
    CPU does not add int8 products exactly by itself (`handseg.cpu_multiplies_int8_exactly`), else none."""
    return {} if cpu_multiplies_int8_exactly() else dict(X64_EXACT_INT8)


class OnnxRunner:
    """An ONNX graph (float32 export or int8 file) run by onnxruntime on the CPU."""

    device = torch.device("cpu")

    def __init__(self, path: str | Path, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxUnavailableError("the onnx and int8 backends need onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # Threads that spin while waiting steal the cores another busy process needs, and then
        # wait on it: off, as for torch (`python benchmarks/threads.py`).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: a quantized graph's unused constants are not news
        for key, value in exact_int8_entries().items():
            options.add_session_config_entry(key, value)
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        self.backend = "int8" if self.metadata.get(PRECISION_KEY) == "int8" else "onnx"
        self.config: dict = json.loads(self.metadata.get(CONFIG_KEY, "{}"))
        self.max_side: int | None = int(self.metadata["max_side"]) if self.metadata.get("max_side") else None
        #: Hand landmark channels the graph takes after the image's (`handseg.hands.hand_channels`).
        self.hand_inputs: int = int(self.config.get("hand_channels") or 0)

    def threads(self) -> int | None:
        return self.session.get_session_options().intra_op_num_threads

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {"image": batch.detach().cpu().numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(logits)


class WeightsWatch:
    """Tells whether a model's weights changed in place since it was made (an optimizer step,
    load_state_dict): cheap enough to ask before every batch (35 us for the shipped model, where a walk
    over its modules took 0.6 ms and a digest of 15 MB of weights far longer)."""

    def __init__(self, model: nn.Module) -> None:
        self._tensors = tuple(itertools.chain(model.parameters(), model.buffers()))
        self._versions = self._now()

    def _now(self) -> tuple[int, ...]:
        # torch has no public counter of in-place changes; tests/test_runtime.py fails if `_version` goes away.
        return tuple(t._version for t in self._tensors)

    def changed(self) -> bool:
        return self._now() != self._versions


def int8_runner(model: HandUNet, threads: int) -> OnnxRunner:
    """The int8 onnxruntime runner made from exactly `model`'s weights, found in the folder it was loaded
    from. Raises Int8UnavailableError or OnnxUnavailableError with the reason."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxUnavailableError("int8 needs onnxruntime: pip install onnxruntime") from None
    folder = model.source_folder
    found = folder / INT8_FILE if folder is not None else None
    name = model.name_or_path or "this model"
    if found is None or not found.is_file():
        raise Int8UnavailableError(f"{name} has no {INT8_FILE}; {how_to_make_int8(folder)}")
    if int8_digest(found) != weights_digest(model):
        raise Int8UnavailableError(f"{found} was made from other weights than the model's; {how_to_make_int8(folder)}")
    return OnnxRunner(found, threads)


@dataclass(frozen=True)
class Built:
    """What runs a model: the runner, and why it is not the one asked for (None if it is). `watch` is set
    when the runner is an export of the model's weights (onnx, int8), so a change to them is seen."""

    runner: Runner
    notice: str | None = None
    watch: WeightsWatch | None = None


def is_onnx_file(model: object) -> bool:
    """Whether a model given by name is an exported `.onnx` graph (run by onnxruntime alone)."""
    return isinstance(model, str | Path) and str(model).endswith(".onnx")


def check_request(model: object, backend: str, compile: bool) -> None:
    """A ValueError, before anything loads, for a backend that cannot run as asked: an unknown one,
    compile on anything but torch, or an .onnx file asked to run other than on onnxruntime (a
    ModelNotFoundError for an .onnx file that is not there)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if compile and backend not in (AUTO, "torch"):
        raise ValueError("compile=True applies to the torch backend only")
    if is_onnx_file(model) and (backend not in (AUTO, "onnx", "int8") or compile):
        raise ValueError(f"{model} is an ONNX graph, run by onnxruntime: leave backend and compile as they are")
    if is_onnx_file(model) and not Path(model).is_file():
        raise ModelNotFoundError(f"{model}: no such file")


def runner_device(model: object, device: str | torch.device | None, backend: str) -> torch.device:
    """The device a model runs on: onnxruntime (an .onnx file, backend onnx or int8) runs on the CPU, and
    another device is a ValueError; a HandUNet given without a device stays where it is; otherwise the
    device asked for (None: CUDA when available)."""
    on_onnxruntime = is_onnx_file(model) or backend in ("onnx", "int8")
    if on_onnxruntime and device is not None and str(device).split(":")[0] not in ("cpu", ""):
        raise ValueError(f"backend {backend!r} runs on the CPU (onnxruntime); use backend='torch' on {device}")
    if isinstance(model, HandUNet) and device is None:
        target = next(model.parameters()).device
    else:
        target = resolve_device("cpu" if on_onnxruntime and device is None else device)
    if on_onnxruntime and target.type != "cpu":
        raise ValueError(f"onnxruntime runs on the CPU here, and the model is on {target}; use backend='torch'")
    return target


def onnx_file_runner(path: str | Path, threads: int | None, concurrent: int = 1) -> Built:
    """What runs an exported `.onnx` file: onnxruntime, as exported (float32 or int8), on `threads` (None: the
    default for onnxruntime's pool, `handseg.hardware.cpu_threads`)."""
    return Built(OnnxRunner(path, cpu_threads(threads, concurrent, ONNXRUNTIME_POOL)))


def build_runner(
    model: HandUNet, device: torch.device, backend: str, threads: int | None, compile: bool, concurrent: int = 1
) -> Built:
    """The only place a backend is chosen, and so where the CPU threads are: `threads`, or (None) the default
    for the pool that runs it, torch's or onnxruntime's, shared by `concurrent` segmentations
    (`handseg.hardware.cpu_threads`). "auto" is, on a CPU: int8 where the model has its int8 file
    and onnxruntime is installed (exact sums on every x86 CPU: `exact_int8_entries`), else bf16 on a CPU
    with bf16 arithmetic, else torch (float32); on CUDA, and with `compile`, torch. A fallback from the
    first choice is noticed once (a FastPathNotice warning, and `Built.notice`)."""
    check_request(model, backend, compile)
    onnx_threads = cpu_threads(threads, concurrent, ONNXRUNTIME_POOL)
    notice = None
    if backend == "auto":
        if device.type != "cpu" or compile:
            backend = "torch"
        else:
            try:
                return Built(int8_runner(model, onnx_threads), None, WeightsWatch(model))
            except (Int8UnavailableError, OnnxUnavailableError) as exc:
                backend = "bf16" if cpu_has_native_bf16() else "torch"
                notice = f"{exc}; running {backend} instead ({_SPEED_NOTE})"
    elif backend == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        # Emulated bf16 took 4.1 s a frame against 0.32 s in float32 on an AVX2-only AMD EPYC.
        notice = "this CPU has no bf16 arithmetic (AVX512-BF16 or AMX), so bf16 would be emulated and many times "
        notice += "slower than float32; running torch (float32) instead"
        backend = "torch"
    if notice:
        warnings.warn(notice, FastPathNotice, stacklevel=5)  # at the caller of Segmenter(...)
    if backend == "int8":
        return Built(int8_runner(model, onnx_threads), notice, WeightsWatch(model))
    if backend == "onnx":
        from handseg.export import export_onnx  # build time; needs the onnx extra

        path = export_onnx(model, Path(tempfile.mkdtemp(prefix="handseg-onnx-")) / "model.onnx")
        return Built(OnnxRunner(path, onnx_threads), notice, WeightsWatch(model))
    network = torch.compile(model, dynamic=False) if compile else model
    # bf16 autocast on GPUs, and on CPUs when asked: masks within 0.002 dice of float32 (benchmarks/targets.py).
    bf16 = backend == "bf16" or device.type == "cuda"
    cpu = cpu_threads(threads, concurrent, TORCH_POOL) if device.type == "cpu" else None
    return Built(TorchRunner(network, bf16=bf16, threads=cpu, compiled=compile), notice)
