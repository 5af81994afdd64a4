"""ONNX export and an onnxruntime backend with the same interface as HandUNet inference.

`export_onnx(model, path)` writes a graph with dynamic batch, height and width;
the model's config (max_side, normalization) rides along as ONNX metadata.
`OnnxHandUNet(path)` runs it with onnxruntime (a core dependency; export needs `pip install "handseg[onnx]"`).
Pre- and post-processing stay in handseg.inference, shared with the torch path.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from handseg.model import HandUNet

#: ONNX metadata key: "float32" for `export_onnx`'s graphs, "int8" for `handseg.quantize`'s.
PRECISION_KEY = "handseg_precision"


class OnnxUnavailableError(ImportError):
    """onnxruntime (or onnx, for export) is not installed."""


def export_onnx(model: HandUNet, path: str | Path, opset: int = 17) -> Path:
    """Export `model` to ONNX with dynamic (batch, height, width)."""
    try:
        import onnx
    except ImportError:
        raise OnnxUnavailableError('ONNX export needs onnx: pip install "handseg[onnx]"') from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu")
    example = torch.rand(1, model.in_channels, 64, 96)
    with warnings.catch_warnings():
        # The TorchScript-based exporter keeps height and width symbolic through the
        # pad-to-multiple and crop; the dynamo exporter specializes them.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
        )  # fmt: skip
    proto = onnx.load(str(path))
    config = dict(getattr(model, "_hub_mixin_config", None) or {})
    metadata = {
        "handseg_config": json.dumps(config),
        "max_side": str(model.max_side or ""),
        PRECISION_KEY: "float32",
    }
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    return path


class OnnxHandUNet:
    """An exported HandUNet run by onnxruntime: (N, C, H, W) in [0, 1] -> logits (N, classes, H, W)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OnnxUnavailableError("the ONNX and int8 backends need onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Threads that spin while waiting steal the cores another busy process needs, and then
        # wait on it: off, as for torch (README, performance under load).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: a quantized graph's unused constants are not news
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata: dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        meta = self.metadata
        self.max_side = int(meta["max_side"]) if meta.get("max_side") else None
        self.config = json.loads(meta.get("handseg_config", "{}"))
        self.in_channels = self.config.get("in_channels", 3)
        self.backend = "int8" if meta.get(PRECISION_KEY) == "int8" else "onnx"  #: its name in inference.BACKENDS
        self.name_or_path: str = str(path)  #: how results name the model

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.session.run(None, {"image": batch.detach().cpu().numpy()})[0]
        return torch.from_numpy(logits)

    def eval(self) -> OnnxHandUNet:
        return self
