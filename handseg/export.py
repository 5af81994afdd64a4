"""Build time: a HandUNet exported to ONNX, and its int8 file (needs `pip install "handseg[onnx]"`).

`export_onnx(model, path)` writes a graph with dynamic batch, height and width; the model's config
(max_side, normalization) rides along as ONNX metadata.

`quantize_int8(model, path, photos)` exports the model and quantizes it with onnxruntime (QDQ format;
int8 weights, one scale per output channel; uint8 activations whose ranges are the minimum and
maximum seen on `photos`, run through the same loading and resizing as `segment`; the first
convolution stays float32). The file records a digest of the weights it was made from, so a stale
file is refused at run time (`handseg.backends`) instead of silently running other weights. A model
folder keeps it as `model_int8.onnx` beside `model.safetensors`, where `backend="int8"` looks.

Static quantization needs photos like the ones the model will see, hands and hand-free scenes both:
the activation ranges come from them. handseg ships none (the training data may not be
redistributed), so an int8 file is made once, by a command, for each model: `python -m
train.quantize` for the shipped ones, `handseg export --int8 --calibration PHOTOS` for any other.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from handseg.hands import HandLandmarker
from handseg.image import ImageInput, whole_file
from handseg.model import HandUNet
from handseg.packaging import CONFIG_KEY, DIGEST_KEY, PRECISION_KEY, OnnxUnavailableError, weights_digest
from handseg.processing import DEFAULT_MAX_SIDE, prepare


def _onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxUnavailableError('ONNX export and int8 quantization need onnx: pip install "handseg[onnx]"') from None
    return onnx


def export_onnx(model: HandUNet, path: str | Path, opset: int = 17) -> Path:
    """Export `model` to ONNX with dynamic (batch, height, width)."""
    onnx = _onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu")
    example = torch.rand(1, model.input_channels, 64, 96)
    with whole_file(path) as partial:  # written whole or not at all
        with warnings.catch_warnings():
            # The TorchScript-based exporter keeps height and width symbolic through the
            # pad-to-multiple and crop; the dynamo exporter specializes them.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(partial), dynamo=False, opset_version=opset,
                input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                              "logits": {0: "batch", 2: "height", 3: "width"}},
            )  # fmt: skip
        proto = onnx.load(str(partial))
        config = json.dumps(model.config)
        metadata = {CONFIG_KEY: config, "max_side": str(model.max_side or ""), PRECISION_KEY: "float32"}
        for key, value in metadata.items():
            _set_metadata(proto, key, value)
        onnx.save(proto, str(partial))
    return path


class CalibrationPhotos:
    """onnxruntime's CalibrationDataReader protocol over photos, preprocessed as `segment` does."""

    def __init__(self, photos: Iterable[ImageInput], max_side: int | None, hand_inputs: int = 0) -> None:
        self._photos = iter(photos)
        self._max_side = max_side
        self._hand_inputs = hand_inputs
        self._landmarker = HandLandmarker() if hand_inputs else None
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        photo = next(self._photos, None)
        if photo is None:
            return None
        self.count += 1
        prepared = prepare(photo, find_hands=self._landmarker, hand_inputs=self._hand_inputs, max_side=self._max_side)
        return {"image": prepared.tensor[None].numpy()}


#: Convolutions kept in float32, from the first, in the int8 file of a network that reads hand landmarks.
FLOAT_CONVS_WITH_LANDMARKS = 4


def quantize_int8(
    model: HandUNet,
    path: str | Path,
    photos: Iterable[ImageInput],
    *,
    first_conv_float: bool = True,
    preprocess: bool = False,
    reduce_range: bool = False,
    weight_type: str = "int8",
) -> Path:
    """Write an int8 onnxruntime model of `model` to `path`, calibrated on `photos` at the model's
    working resolution. The same model, photos and onnxruntime version give the same file.

    The switches exist for comparison (`python benchmarks/cpu_paths.py`, `python benchmarks/int8_cpus.py`):
    `first_conv_float=False` quantizes the first convolution (the first `FLOAT_CONVS_WITH_LANDMARKS` for a
    network that reads landmarks) too; `preprocess=True` runs onnxruntime's
    `quant_pre_process` first, as its warning suggests; `reduce_range=True` keeps weights to 7 bits;
    `weight_type="uint8"` stores weights as uint8 (onnxruntime's U8U8 kernels)."""
    onnx = _onnx()
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    reader = CalibrationPhotos(photos, model.max_side or DEFAULT_MAX_SIDE, model.hand_channels)
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
        # measurable cost (README, CPU paths). A network that reads landmarks keeps its first
        # FLOAT_CONVS_WITH_LANDMARKS in float32: its early activations, from sparse landmark drawings and
        # the image, lost 0.13 dice on the unseen egocentric scene in int8 (hands_v5's card).
        convs = [node.name for node in float_proto.graph.node if node.op_type == "Conv"]
        kept_float = convs[: FLOAT_CONVS_WITH_LANDMARKS if model.hand_channels else 1] if first_conv_float else []
        quantized = Path(folder) / "int8.onnx"
        quantize_static(
            str(float_path), str(quantized), reader,
            quant_format=QuantFormat.QDQ, per_channel=True,
            weight_type={"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[weight_type],
            activation_type=QuantType.QUInt8, reduce_range=reduce_range,
            nodes_to_exclude=kept_float,
        )  # fmt: skip
        if reader.count == 0:
            raise ValueError("no calibration photos: int8 quantization needs photos like the ones to segment")
        proto = shapes_read_before_dequantizing(onnx.load(str(quantized)))
    metadata = {
        **float_metadata,
        PRECISION_KEY: "int8",
        DIGEST_KEY: weights_digest(model),
        "calibration_photos": str(reader.count),
    }
    for key, value in metadata.items():
        _set_metadata(proto, key, value)
    with whole_file(path) as partial:
        onnx.save(proto, str(partial))
    return path


def shapes_read_before_dequantizing(proto):
    """`proto` (an int8 ONNX graph, QDQ format) with each Shape that reads a DequantizeLinear's output reading
    its quantized input instead, in place. The decoder reads its feature maps' shapes to size its up-sampling
    and crops; reading them after dequantizing made onnxruntime turn 17 whole feature maps of the shipped
    network back into float32 for their shapes alone. The same outputs to the bit (tests/test_backends.py);
    what it saves: docs/performance.md, handseg 0.8.1."""
    made_by = {output: node for node in proto.graph.node for output in node.output}
    for node in proto.graph.node:
        source = made_by.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
    return proto


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
