"""handseg's networks, one module each, each registered under its architecture's name
(`handseg.registry`): "original_unet" and "lite_unet"."""

from handseg.networks.lite_unet import DEFAULT_DECODER_CHANNELS, LiteUNet
from handseg.networks.original_unet import OriginalUNet

__all__ = ["DEFAULT_DECODER_CHANNELS", "LiteUNet", "OriginalUNet"]
