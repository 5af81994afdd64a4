"""handseg: hand segmentation with a hub-ready U-Net.

import handseg
result = handseg.segment("photo.jpg")          # shipped default model
result.mask                                    # bool (H, W)
segmenter = handseg.Segmenter("handunet_lite0.hands_v4", threads=2)   # decide once, run many
model = handseg.HandUNet.from_pretrained("path/or/repo-id")  # or a shipped name: handseg.available_models()

The names below are the public API; the app, training and benchmarks use nothing else. The
submodules `metrics`, `visualize`, `crf` and `pretrained` are public as namespaces.
"""

from handseg import crf, metrics, pretrained, visualize
from handseg.backends import INT8_FILE, Int8UnavailableError, OnnxUnavailableError
from handseg.crf import CRFUnavailableError
from handseg.engines import HandSegmenter
from handseg.export import export_onnx, quantize_int8
from handseg.hardware import (
    DeviceUnavailableError,
    cpu_has_native_bf16,
    cpu_multiplies_int8_exactly,
    default_threads,
    usable_cores,
)
from handseg.hub import HubUnreachableError, ModelNotFoundError, hub_reachable, resolve_model_source
from handseg.image import (
    DEFAULT_MAX_SIDE,
    IMAGE_FILE_SUFFIXES,
    MAX_PIXELS,
    ImageLoadError,
    load_image,
    load_mask,
    load_working_image,
    resize_rgb,
    save_image,
    to_model_input,
    working_size,
)
from handseg.model import HandUNet
from handseg.networks import DEFAULT_DECODER_CHANNELS, LiteUNet, OriginalUNet
from handseg.networks.encoders import LITE0_MEAN, LITE0_STD, LITE_VARIANTS, EfficientNetLiteEncoder, load_lite_imagenet
from handseg.pretrained import NoDefaultModelError, available_models, pretrained_path
from handseg.segmenter import (
    AUTO,
    BACKENDS,
    FastPathNotice,
    Segmentation,
    Segmenter,
    iter_segment,
    load_model,
    segment,
    segment_batch,
)

__version__ = "0.5.0"

__all__ = [
    "AUTO",
    "BACKENDS",
    "CRFUnavailableError",
    "DEFAULT_DECODER_CHANNELS",
    "DEFAULT_MAX_SIDE",
    "DeviceUnavailableError",
    "EfficientNetLiteEncoder",
    "FastPathNotice",
    "HandSegmenter",
    "HandUNet",
    "HubUnreachableError",
    "IMAGE_FILE_SUFFIXES",
    "INT8_FILE",
    "ImageLoadError",
    "Int8UnavailableError",
    "LITE0_MEAN",
    "LITE0_STD",
    "LITE_VARIANTS",
    "LiteUNet",
    "MAX_PIXELS",
    "ModelNotFoundError",
    "NoDefaultModelError",
    "OnnxUnavailableError",
    "OriginalUNet",
    "Segmentation",
    "Segmenter",
    "available_models",
    "cpu_has_native_bf16",
    "cpu_multiplies_int8_exactly",
    "crf",
    "default_threads",
    "export_onnx",
    "hub_reachable",
    "iter_segment",
    "load_image",
    "load_lite_imagenet",
    "load_mask",
    "load_model",
    "load_working_image",
    "metrics",
    "pretrained",
    "pretrained_path",
    "quantize_int8",
    "resize_rgb",
    "resolve_model_source",
    "save_image",
    "segment",
    "segment_batch",
    "to_model_input",
    "usable_cores",
    "visualize",
    "working_size",
    "__version__",
]
