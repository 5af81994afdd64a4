"""HandUNet: the hub-facing base of handseg's networks.

Each network is a subclass in `handseg.networks`, holding only its architecture (`OriginalUNet`,
the 2018 network that `MODEL.pth` converts to; `LiteUNet`, the shipped models), registered under
the name its config.json gives as `"architecture"` (`handseg.registry`). What they share lives
here: the hub mixin (config.json + model.safetensors), the input normalization and working
resolution that travel in config.json, and padding any H x W to the network's stride.
`HandUNet.from_pretrained(...)`, `HandUNet.from_config(config)` and `handseg.create_model(name, ...)`
build the network a config names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from huggingface_hub import constants
from torch import nn

from handseg.hub import MODEL_CARD_TEMPLATE, HandsegHubMixin
from handseg.image import refuse_overwriting
from handseg.packaging import INT8_FILE, carry_int8_file
from handseg.processing import normalize
from handseg.registry import architecture_class

#: Keys that one network's config.json held for the other before each network had its own class
#: (handseg < 0.5 wrote every key for both); ignored when loading.
_LEGACY_KEYS = frozenset({"base_channels", "bilinear", "encoder", "decoder_channels"})


def architecture_of(config: dict[str, Any]) -> str:
    """The architecture a config.json names; configs written before handseg 0.6 name none, and their
    `encoder` said it (absent or None: the original U-Net, else an EfficientNet-Lite U-Net)."""
    if config.get("architecture"):
        return config["architecture"]
    return "original_unet" if config.get("encoder") is None else "lite_unet"


class HandUNet(
    nn.Module,
    HandsegHubMixin,
    library_name="handseg",
    tags=["image-segmentation", "hand-segmentation", "unet"],
    license="other",
    pipeline_tag="image-segmentation",
    model_card_template=MODEL_CARD_TEMPLATE,
):
    """U-Net hand segmenter: RGB in [0, 1], shape (N, C, H, W) -> logits (N, classes, H, W).

    The base class of handseg's networks: build one with `HandUNet.from_pretrained(...)` (a folder,
    a repo id or a shipped model's name), `HandUNet.from_config(config)`, `handseg.create_model(
    "lite_unet", ...)`, or a network class itself (`handseg.LiteUNet(...)`, `handseg.OriginalUNet(...)`).
    `model.config` holds what config.json holds, the architecture's name first.

    Any H and W work: the input is padded (edge-replicated) to a multiple of the network's total
    stride and the output cropped back.

    Two entries travel in config.json with the weights though they are not architecture:
    `input_mean`/`input_std`, the pixel normalization the weights expect (None: none, the
    original's plain [0, 1] input; applied by `handseg.processing.normalize`), and `max_side`, the
    longer image side the model was trained to see, which `handseg.Segmenter` uses as its working
    resolution unless told otherwise. `hand_channels` > 0 makes a network that reads hand landmarks
    as well: that many channels (`handseg.hands.HAND_CHANNELS`) follow the image's in its input.
    """

    #: The registered name of the architecture (`handseg.registry`), set by `register_architecture`.
    architecture: ClassVar[str]
    #: The network's total stride: inputs are padded to a multiple of it.
    size_multiple: ClassVar[int] = 1

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        max_side: int | None,
        input_mean: tuple[float, ...] | list[float] | None,
        input_std: tuple[float, ...] | list[float] | None,
        hand_channels: int = 0,
        **_: Any,
    ) -> None:
        # What every network shares; each subclass's own __init__ names its architecture's arguments.
        # (`**_` lets the hub mixin hand HandUNet.from_pretrained every key of config.json.)
        if type(self) is HandUNet:
            raise TypeError(
                "HandUNet is the base of handseg's networks: build one with HandUNet.from_pretrained(...), "
                "HandUNet.from_config(config) or handseg.create_model(architecture, ...)"
            )
        super().__init__()
        self.in_channels = in_channels
        #: Extra input channels after the image's: hand landmarks drawn by `handseg.hands.hand_channels`
        #: (0: a network that reads the image alone).
        self.hand_channels = hand_channels
        self.num_classes = num_classes
        self.max_side = max_side
        #: The folder this model's files were read from (a shipped model's, yours, or the Hub cache's
        #: copy of a repo); None for a network built in code. Its int8 file is looked for there.
        self.source_folder: Path | None = None
        if (input_mean is None) != (input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        if input_mean is not None:
            self.register_buffer("input_mean", torch.tensor(input_mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(input_std).view(1, -1, 1, 1), persistent=False)
        else:
            self.input_mean = self.input_std = None

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments, as config.json holds them, with the architecture's name."""
        arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in (self._hub_mixin_config or {}).items()}
        return {"architecture": self.architecture, **arguments}

    def save_pretrained(self, save_directory: str | Path, *, overwrite: bool = False, **kwargs: Any) -> str | None:
        """config.json (`self.config`), model.safetensors and README.md, as the hub mixin writes them,
        plus the model's int8 file (model_int8.onnx) when it was made from exactly these weights, so a
        saved model keeps handseg's fast CPU path; files get the user's normal permissions (umask). A
        folder that holds any of these files already is refused (FileExistsError) unless `overwrite`."""
        folder = Path(save_directory)
        names = (constants.CONFIG_NAME, constants.SAFETENSORS_SINGLE_FILE, "README.md", INT8_FILE)
        choice = "save_pretrained(..., overwrite=True) replaces it"
        refuse_overwriting([folder / name for name in names], overwrite=overwrite, choice=choice)
        kwargs.setdefault("config", self.config)
        pushed = super().save_pretrained(save_directory, **kwargs)
        carry_int8_file(self, self.source_folder, Path(save_directory))
        return pushed

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HandUNet:
        """The network a config.json describes, also one written by an earlier handseg."""
        network = architecture_class(architecture_of(config))
        if not issubclass(network, cls):
            raise ValueError(f"the config names {network.__name__}, which is not a {cls.__name__}")
        accepted = inspect.signature(network.__init__).parameters
        return network(**{k: v for k, v in config.items() if k in accepted or k not in {*_LEGACY_KEYS, "architecture"}})

    @property
    def input_channels(self) -> int:
        """Channels of the input tensor: the image's, then the hand channels."""
        return self.in_channels + self.hand_channels

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper, on a normalized input whose sides are multiples of `size_multiple`."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        m = self.size_multiple
        channels_last = x.is_contiguous(memory_format=torch.channels_last)
        # Unconditional (a zero pad is a no-op) so exported graphs keep dynamic sizes.
        x = F.pad(x, (0, -width % m, 0, -height % m), mode="replicate")
        if channels_last:  # padding returns a contiguous tensor; keep the faster layout the caller chose
            x = x.contiguous(memory_format=torch.channels_last)
        return self.logits(normalize(x, self.input_mean, self.input_std))[..., :height, :width]


def create_model(architecture: str, **config: Any) -> HandUNet:
    """A new network of a registered architecture ("lite_unet", "original_unet", or one of your own:
    `handseg.registry.register_architecture`), with random weights (a LiteUNet's encoder loads its
    ImageNet weights with `handseg.load_lite_imagenet`)."""
    return HandUNet.from_config({"architecture": architecture, **config})
