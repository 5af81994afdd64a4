"""handseg: hand segmentation with a hub-ready U-Net.

import handseg
result = handseg.segment("photo.jpg")          # shipped default model
result.mask                                    # bool (H, W)
model = handseg.HandUNet.from_pretrained("path/or/repo-id")
"""

from handseg.crf import CRFUnavailableError
from handseg.image import ImageLoadError, load_image, load_mask
from handseg.inference import Segmentation, iter_segment, load_model, segment, segment_batch
from handseg.model import HandUNet
from handseg.pretrained import NoDefaultModelError

__version__ = "0.2.0"

__all__ = [
    "CRFUnavailableError",
    "HandUNet",
    "ImageLoadError",
    "NoDefaultModelError",
    "Segmentation",
    "iter_segment",
    "load_image",
    "load_mask",
    "load_model",
    "segment",
    "segment_batch",
    "__version__",
]
