"""What runs the network: PyTorch (float32 or bf16 autocast) or onnxruntime (float32 or int8).

Every backend is a runner with one small protocol (`Runner`): it takes a batch, (N, 3, H, W) float
in [0, 1], returns float32 logits, and says what it is. `handseg.segmenter` picks one and feeds it;
nothing else in the pipeline cares which. An int8 file (`model_int8.onnx`, beside a model's
`model.safetensors`) is found and checked here: it records a digest of the weights it was made
from, and one made from other weights is refused, never run. Making one is build time:
`handseg.export.quantize_int8`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from handseg.hardware import cpu_multiplies_int8_exactly, torch_threads
from handseg.hub import resolve_model_source

#: The int8 file's name in a model folder, beside model.safetensors.
INT8_FILE = "model_int8.onnx"
#: ONNX metadata keys: the precision of the graph ("float32" or "int8"), the digest of the weights an
#: int8 file was made from, and the model's config (max_side, normalization).
PRECISION_KEY = "handseg_precision"
DIGEST_KEY = "handseg_weights_sha256"
CONFIG_KEY = "handseg_config"


class OnnxUnavailableError(ImportError):
    """onnxruntime (or onnx, for export) is not installed."""


class Int8UnavailableError(FileNotFoundError):
    """The model has no int8 file, or its int8 file was made from other weights."""


class FastPathNotice(UserWarning):
    """A faster path cannot be used (no int8 file, one made from other weights, no bf16 arithmetic),
    and what happens instead; said once."""


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

    `threads` is applied to torch (a per-process setting) before each batch where it differs, so the
    count a Segmenter was built with is the count it runs with."""

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
        threads = self.threads()
        if threads is not None and torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        # channels_last input: oneDNN's convolutions then run without layout conversions, twice as fast
        # on a CPU (`python benchmarks/stages.py`); the module's own weights are left as they are.
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(batch).float()


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
        # wait on it: off, as for torch (README, performance under load).
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

    def threads(self) -> int | None:
        return self.session.get_session_options().intra_op_num_threads

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {"image": batch.detach().cpu().numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(logits)


#: onnxruntime's session setting for exact int8 sums on x86 without VNNI (kOrtSessionOptionsAvx2PrecisionMode):
#: its int8 kernels there sum pairs of uint8 x int8 products into 16 bits with saturation; with it, the
#: weights are turned to uint8 at load and the U8U8 kernels widen before adding, so the masks equal a VNNI
#: CPU's (`python benchmarks/int8_cpus.py`). It costs 2.5x on a VNNI CPU, where the sums are exact anyway.
X64_EXACT_INT8 = {"session.x64quantprecision": "1"}


def exact_int8_entries() -> dict[str, str]:
    """The onnxruntime session settings that make int8 sums exact on this CPU: X64_EXACT_INT8 where the
    CPU does not add int8 products exactly by itself (`handseg.cpu_multiplies_int8_exactly`), else none."""
    return {} if cpu_multiplies_int8_exactly() else dict(X64_EXACT_INT8)


def weights_version(model: nn.Module) -> tuple[int, ...]:
    """Changes whenever a weight of `model` changes in place (an optimizer step, load_state_dict):
    cheap enough to ask before every batch, where a digest of 15 MB of weights is not."""
    # torch has no public counter of in-place changes; tests/test_backends.py fails if `_version` goes away.
    return tuple(t._version for t in itertools.chain(model.parameters(), model.buffers()))


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's parameters and buffers (names and float32 bytes, in name order).
    The same weights give the same digest however they were loaded or saved."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def int8_file(source: str | Path | None, *, local_only: bool = False) -> Path | None:
    """The int8 file of a model folder, a shipped model's name or a Hub repo id (None if it has none).
    A repo id asks the Hub (or its local cache) once; `local_only` never asks the network."""
    if source is None:
        return None
    folder = Path(resolve_model_source(source)).expanduser()
    if folder.is_dir():
        found = folder / INT8_FILE
        return found if found.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(str(source), INT8_FILE, local_files_only=local_only))
    except Exception:  # not a repo id, no such file in it, or the Hub unreachable: no int8 file
        return None


def int8_runner(model: nn.Module, name: str | None, threads: int) -> OnnxRunner:
    """The int8 onnxruntime runner made from exactly `model`'s weights, found beside them (`name`:
    where the model came from). Raises Int8UnavailableError or OnnxUnavailableError with the reason."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxUnavailableError("int8 needs onnxruntime: pip install onnxruntime") from None
    found = int8_file(name)
    if found is None:
        raise Int8UnavailableError(f"{name or 'this model'} has no {INT8_FILE}; {how_to_make_int8(name)}")
    runner = OnnxRunner(found, threads)
    if runner.metadata.get(DIGEST_KEY) != weights_digest(model):
        raise Int8UnavailableError(f"{found} was made from other weights than the model's; {how_to_make_int8(name)}")
    return runner


def int8_digest(path: str | Path) -> str | None:
    """The weights digest an int8 file records (None if it records none)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise OnnxUnavailableError("reading an int8 file needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)


def carry_int8_file(model: nn.Module, name: str | None, folder: Path) -> None:
    """Copy the int8 file found beside `model`'s weights (`name`: where it was loaded from) into `folder`
    when it was made from exactly these weights; when it was not (the model was fine-tuned since), a
    FastPathNotice says so and the file is not copied."""
    source = int8_file(name, local_only=True)
    if source is None:
        return
    target = folder / INT8_FILE
    fresh = int8_digest(source) == weights_digest(model)
    if source.resolve() == target.resolve():
        if not fresh:
            warnings.warn(f"{target} was made from the weights saved here before; {how_to_make_int8(str(folder))}",
                          FastPathNotice, stacklevel=3)  # fmt: skip
        return
    if not fresh:
        warnings.warn(
            f"{source} not copied to {folder}: it was made from other weights than these (fine-tuned since?); "
            f"{how_to_make_int8(str(folder))}",
            FastPathNotice,
            stacklevel=3,
        )
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        shutil.copyfile(source, partial)  # a new file: the user's umask applies
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def how_to_make_int8(name: str | None) -> str:
    name = name or "FOLDER"
    folder = Path(resolve_model_source(name))
    target = folder / INT8_FILE if folder.is_dir() else INT8_FILE
    return (
        f"make one with: handseg export --model {name} --int8 --calibration PHOTOS --onnx {target} "
        "(PHOTOS: a folder of photos like yours, with and without hands)"
    )
