"""handseg: hand segmentation with a hub-ready U-Net.

import handseg
result = handseg.segment("photo.jpg")          # shipped default model
result.mask                                    # bool (H, W)
result.save("photo_mask.png", overlay=True)    # the mask, and the overlay beside it
segmenter = handseg.Segmenter("handunet_lite0.hands_v5", threads=2)   # decide once, run many
model = handseg.HandUNet.from_pretrained("path/or/repo-id")  # or a shipped name: handseg.available_models()

The names below are the public API; the app, training and benchmarks use nothing else. The
submodules `metrics`, `visualize`, `crf`, `hands`, `processing`, `registry` and `pretrained` are public
as namespaces. Names load on first use (PEP 562), so `import handseg` is quick and a command can be
interrupted while torch loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.8.3"

#: Public name -> the module that defines it.
_NAMES = {
    "backends": ("AUTO", "BACKENDS", "Int8UnavailableError", "X64_EXACT_INT8"),
    "cli.flags": ("model_flag",),
    "crf": ("CRFUnavailableError",),
    "engines": ("HandSegmenter",),
    "export": ("export_onnx", "quantize_int8"),
    "hands": ("Hand", "HandLandmarker"),
    "hardware": (
        "DeviceUnavailableError",
        "cpu_has_native_bf16",
        "cpu_multiplies_int8_exactly",
        "default_threads",
        "usable_cores",
    ),
    "hub": ("HubUnreachableError", "ModelNotFoundError", "hub_reachable", "resolve_model_source"),
    "jobs": ("output_names",),
    "image": (
        "IMAGE_FILE_SUFFIXES",
        "MAX_PIXELS",
        "ImageLoadError",
        "load_image",
        "load_mask",
        "png_bytes",
        "resize_rgb",
        "save_image",
    ),
    "model": ("HandUNet", "create_model"),
    "networks": ("DEFAULT_DECODER_CHANNELS", "LiteUNet", "OriginalUNet"),
    "networks.encoders": (
        "LITE0_MEAN",
        "LITE0_STD",
        "LITE_VARIANTS",
        "EfficientNetLiteEncoder",
        "load_lite_imagenet",
    ),
    "packaging": ("INT8_FILE", "FastPathNotice", "OnnxUnavailableError"),
    "pretrained": ("NoDefaultModelError", "available_models", "pretrained_path"),
    "processing": ("DEFAULT_MAX_SIDE", "DEFAULT_THRESHOLD", "load_working_image", "to_model_input", "working_size"),
    "registry": ("architectures", "register_architecture"),
    "results": ("SegmentedHand", "Segmentation", "label_hands"),
    "segmenter": (
        "Outcome",
        "Segmenter",
        "SegmenterOptions",
        "iter_segment",
        "load_model",
        "segment",
        "segment_batch",
    ),
}
_MODULE_OF = {name: module for module, names in _NAMES.items() for name in names}
_NAMESPACES = ("crf", "hands", "metrics", "pretrained", "processing", "registry", "visualize")

__all__ = sorted([*_MODULE_OF, *_NAMESPACES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"handseg.{_MODULE_OF[name]}"), name)
    elif name in _NAMESPACES:
        value = importlib.import_module(f"handseg.{name}")
    else:
        raise AttributeError(f"module 'handseg' has no attribute {name!r}")
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from handseg import crf, hands, metrics, pretrained, processing, registry, visualize
    from handseg.backends import AUTO, BACKENDS, X64_EXACT_INT8, Int8UnavailableError
    from handseg.cli.flags import model_flag
    from handseg.crf import CRFUnavailableError
    from handseg.engines import HandSegmenter
    from handseg.export import export_onnx, quantize_int8
    from handseg.hands import Hand, HandLandmarker
    from handseg.hardware import (
        DeviceUnavailableError,
        cpu_has_native_bf16,
        cpu_multiplies_int8_exactly,
        default_threads,
        usable_cores,
    )
    from handseg.hub import HubUnreachableError, ModelNotFoundError, hub_reachable, resolve_model_source
    from handseg.image import (
        IMAGE_FILE_SUFFIXES,
        MAX_PIXELS,
        ImageLoadError,
        load_image,
        load_mask,
        png_bytes,
        resize_rgb,
        save_image,
    )
    from handseg.jobs import output_names
    from handseg.model import HandUNet, create_model
    from handseg.networks import DEFAULT_DECODER_CHANNELS, LiteUNet, OriginalUNet
    from handseg.networks.encoders import (
        LITE0_MEAN,
        LITE0_STD,
        LITE_VARIANTS,
        EfficientNetLiteEncoder,
        load_lite_imagenet,
    )
    from handseg.packaging import INT8_FILE, FastPathNotice, OnnxUnavailableError
    from handseg.pretrained import NoDefaultModelError, available_models, pretrained_path
    from handseg.processing import (
        DEFAULT_MAX_SIDE,
        DEFAULT_THRESHOLD,
        load_working_image,
        to_model_input,
        working_size,
    )
    from handseg.registry import architectures, register_architecture
    from handseg.results import Segmentation, SegmentedHand, label_hands
    from handseg.segmenter import (
        Outcome,
        Segmenter,
        SegmenterOptions,
        iter_segment,
        load_model,
        segment,
        segment_batch,
    )
