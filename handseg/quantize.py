"""int8 models for onnxruntime: static quantization, the file beside a model's weights, and finding it.

`quantize_int8(model, path, photos)` exports the model to ONNX and quantizes it with onnxruntime
(QDQ format; int8 weights, one scale per output channel; uint8 activations whose ranges are the
minimum and maximum seen on `photos`, run through the same loading and resizing as `segment`; the
first convolution stays float32).
The file records a digest of the weights it was made from, so a stale file is refused instead of
silently running other weights. A model folder keeps it as `model_int8.onnx` beside
`model.safetensors`; `backend="int8"` looks for it there.

Static quantization needs photos like the ones the model will see, hands and hand-free scenes
both: the activation ranges come from them. handseg ships none (the training data may not be
redistributed), so an int8 file is made once, by a command, for each model: `python -m
train.quantize` for the shipped ones, `handseg export --int8 --calibration PHOTOS` for any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import tempfile
import weakref
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from handseg.hub import resolve_model_source
from handseg.image import ImageInput, load_working_image, to_model_input
from handseg.model import HandUNet
from handseg.onnx_backend import PRECISION_KEY, OnnxHandUNet, OnnxUnavailableError, export_onnx

#: The int8 file's name in a model folder, beside model.safetensors.
INT8_FILE = "model_int8.onnx"
#: ONNX metadata key: the digest of the weights an int8 file was made from.
DIGEST_KEY = "handseg_weights_sha256"


class Int8UnavailableError(FileNotFoundError):
    """The model has no int8 file, or its int8 file was made from other weights."""


#: model -> (tensor versions, digest): recomputed when a weight changes in place (an optimizer step,
#: load_state_dict), so a model fine-tuned in memory never runs an int8 file made before.
_digests: weakref.WeakKeyDictionary[HandUNet, tuple[tuple[int, ...], str]] = weakref.WeakKeyDictionary()


def _versions(model: HandUNet) -> tuple[int, ...]:
    # parameters() and buffers(), not state_dict(), which costs milliseconds to build
    return tuple(t._version for t in itertools.chain(model.parameters(), model.buffers()))


def weights_digest(model: HandUNet) -> str:
    """sha256 of the model's parameters and buffers (names and float32 bytes, in name order).
    The same weights give the same digest however they were loaded or saved."""
    versions = _versions(model)
    cached = _digests.get(model)
    if cached is None or cached[0] != versions:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        _digests[model] = (versions, digest.hexdigest())
    return _digests[model][1]


class CalibrationPhotos:
    """onnxruntime's CalibrationDataReader protocol over photos, preprocessed as `segment` does."""

    def __init__(self, photos: Iterable[ImageInput], max_side: int | None) -> None:
        self._photos = iter(photos)
        self._max_side = max_side
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        photo = next(self._photos, None)
        if photo is None:
            return None
        self.count += 1
        small = load_working_image(photo, max_side=self._max_side).small
        return {"image": to_model_input(small)[None].numpy()}


def quantize_int8(
    model: HandUNet,
    path: str | Path,
    photos: Iterable[ImageInput],
    *,
    first_conv_float: bool = True,
    preprocess: bool = False,
) -> Path:
    """Write an int8 onnxruntime model of `model` to `path`, calibrated on `photos` at the model's
    working resolution. The same model, photos and onnxruntime version give the same file.

    The two switches exist for comparison (`python benchmarks/cpu_paths.py`): `first_conv_float=False`
    quantizes the first convolution too; `preprocess=True` runs onnxruntime's `quant_pre_process`
    first, as its warning suggests."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise OnnxUnavailableError('int8 quantization needs onnx: pip install "handseg[onnx]"') from None
    from handseg.inference import DEFAULT_MAX_SIDE

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = CalibrationPhotos(photos, model.max_side or DEFAULT_MAX_SIDE)
    CalibrationDataReader.register(type(reader))  # onnxruntime.quantization needs onnx: imported only here
    with tempfile.TemporaryDirectory(prefix="handseg-int8-") as folder, _quiet_root_logger():
        float_path = export_onnx(model, Path(folder) / "float.onnx")
        float_metadata = {entry.key: entry.value for entry in onnx.load(str(float_path)).metadata_props}
        if preprocess:
            quant_pre_process(str(float_path), str(Path(folder) / "pre.onnx"))
            float_path = Path(folder) / "pre.onnx"
        float_proto = onnx.load(str(float_path))
        # The first convolution, which reads the normalized image, stays float32: quantizing its input
        # to 8 bits caused a quarter of the int8 masks' disagreement with float on val photos, at no
        # measurable cost (README, CPU paths).
        first_conv = next(node.name for node in float_proto.graph.node if node.op_type == "Conv")
        quantize_static(
            str(float_path), str(path), reader,
            quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
            nodes_to_exclude=[first_conv] if first_conv_float else [],
        )  # fmt: skip
    if reader.count == 0:
        path.unlink(missing_ok=True)
        raise ValueError("no calibration photos: int8 quantization needs photos like the ones to segment")
    proto = onnx.load(str(path))
    metadata = {
        **float_metadata,
        PRECISION_KEY: "int8",
        DIGEST_KEY: weights_digest(model),
        "calibration_photos": str(reader.count),
    }
    for key, value in metadata.items():
        _set_metadata(proto, key, value)
    onnx.save(proto, str(path))
    return path


@contextlib.contextmanager
def _quiet_root_logger():
    """quantize_static logs a warning to run onnxruntime's pre-processing first; on this model it
    made no difference to speed or masks (`python benchmarks/cpu_paths.py`), so the warning is noise."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _set_metadata(proto, key: str, value: str) -> None:
    for entry in proto.metadata_props:
        if entry.key == key:
            entry.value = value
            return
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value


def int8_file(source: str | Path | None) -> Path | None:
    """The int8 file of a model folder, a shipped model's name or a Hub repo id (None if it has none)."""
    if source is None:
        return None
    folder = Path(resolve_model_source(source)).expanduser()
    if folder.is_dir():
        found = folder / INT8_FILE
        return found if found.is_file() else None
    if str(source) not in _hub_files:  # asked once per process: segment() must not wait on the network
        try:
            from huggingface_hub import hf_hub_download

            _hub_files[str(source)] = Path(hf_hub_download(str(source), INT8_FILE))
        except Exception:  # not a repo id, no such file in it, or the Hub unreachable: no int8 file
            _hub_files[str(source)] = None
    return _hub_files[str(source)]


_hub_files: dict[str, Path | None] = {}


def int8_problem(model: HandUNet, threads: int) -> str | None:
    """Why `model` cannot run in int8 here (None: it can): no onnxruntime, no int8 file, a stale one."""
    try:
        load_int8(model, threads)
    except (Int8UnavailableError, OnnxUnavailableError) as exc:
        return str(exc)
    return None


def load_int8(model: HandUNet, threads: int) -> OnnxHandUNet:
    """The int8 onnxruntime model made from exactly `model`'s weights, found beside them."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise OnnxUnavailableError("int8 needs onnxruntime: pip install onnxruntime") from None
    found = int8_file(model.name_or_path)
    if found is None:
        raise Int8UnavailableError(f"{model.name_or_path or 'this model'} has no {INT8_FILE}; {_how_to_make(model)}")
    net = _load_session(str(found), threads)
    if net.metadata.get(DIGEST_KEY) != weights_digest(model):
        raise Int8UnavailableError(f"{found} was made from other weights than the model's; {_how_to_make(model)}")
    net.name_or_path = model.name_or_path or str(found)
    return net


def _how_to_make(model: HandUNet) -> str:
    name = model.name_or_path or "FOLDER"
    folder = Path(resolve_model_source(name))
    target = folder / INT8_FILE if folder.is_dir() else INT8_FILE
    return (
        f"make one with: handseg export --model {name} --int8 --calibration PHOTOS --onnx {target} "
        "(PHOTOS: a folder of photos like yours, with and without hands)"
    )


#: (file, its modification time, threads) -> session: a file written anew is loaded anew.
_sessions: dict[tuple[str, int, int], OnnxHandUNet] = {}


def _load_session(path: str, threads: int) -> OnnxHandUNet:
    key = (path, Path(path).stat().st_mtime_ns, threads)
    if key not in _sessions:
        _sessions[key] = OnnxHandUNet(path, threads=threads)
    return _sessions[key]
