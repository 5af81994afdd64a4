"""handseg's networks, one module each; importing this package registers them with `HandUNet`,
which builds the one a config names (`encoder` absent or None: the original U-Net)."""

from handseg.networks.lite_unet import DEFAULT_DECODER_CHANNELS, LiteUNet
from handseg.networks.original_unet import OriginalUNet

__all__ = ["DEFAULT_DECODER_CHANNELS", "LiteUNet", "OriginalUNet"]
