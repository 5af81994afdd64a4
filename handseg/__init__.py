"""handseg: hand segmentation with a hub-ready U-Net.

import handseg
result = handseg.segment("photo.jpg")          # shipped default model
result.mask                                    # bool (H, W)
model = handseg.HandUNet.from_pretrained("path/or/repo-id")  # or a shipped name: handseg.available_models()
"""

from handseg.crf import CRFUnavailableError
from handseg.hub import HubUnreachableError, ModelNotFoundError
from handseg.image import ImageLoadError, load_image, load_mask
from handseg.inference import (
    DeviceUnavailableError,
    FastPathNotice,
    Segmentation,
    iter_segment,
    load_model,
    segment,
    segment_batch,
)
from handseg.model import HandUNet
from handseg.pretrained import NoDefaultModelError, available_models

__version__ = "0.4.0"

__all__ = [
    "CRFUnavailableError",
    "DeviceUnavailableError",
    "FastPathNotice",
    "HandUNet",
    "HubUnreachableError",
    "ImageLoadError",
    "ModelNotFoundError",
    "NoDefaultModelError",
    "Segmentation",
    "available_models",
    "iter_segment",
    "load_image",
    "load_mask",
    "load_model",
    "segment",
    "segment_batch",
    "__version__",
]
