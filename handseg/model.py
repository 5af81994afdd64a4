"""HandUNet: the hub-facing base of handseg's networks.

Each network is a subclass in `handseg.networks`, holding only its architecture (`OriginalUNet`,
the 2018 network that `MODEL.pth` converts to; `LiteUNet`, the shipped models). What they share
lives here: the hub mixin (config.json + model.safetensors), the input normalization and working
resolution that travel in config.json, and padding any H x W to the network's stride.
`HandUNet(**config)` and `HandUNet.from_pretrained(...)` build the network a config names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from handseg.backends import carry_int8_file
from handseg.hub import MODEL_CARD_TEMPLATE, HandsegHubMixin

#: Keys that one network's config.json held for the other before each network had its own class
#: (handseg < 0.5 wrote every key for both); ignored when loading.
_LEGACY_KEYS = frozenset({"base_channels", "bilinear", "encoder", "decoder_channels"})


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

    `HandUNet(**config)` returns the network the config names: `encoder=None` (the default) the
    original Hand-Segmentation U-Net (`handseg.OriginalUNet`), `encoder="efficientnet_lite0"` or
    `"efficientnet_lite2"` an EfficientNet-Lite encoder under a light U-Net decoder
    (`handseg.LiteUNet`). `model.config` holds the arguments, as config.json does.

    Any H and W work: the input is padded (edge-replicated) to a multiple of the network's total
    stride and the output cropped back.

    Two entries travel in config.json with the weights though they are not architecture:
    `input_mean`/`input_std`, the pixel normalization the weights expect (None: none, the
    original's plain [0, 1] input), and `max_side`, the longer image side the model was trained to
    see, which `handseg.Segmenter` uses as its working resolution unless told otherwise.
    """

    #: What each subclass builds, by config["encoder"]; filled as subclasses are defined.
    _networks: ClassVar[dict[str | None, type[HandUNet]]] = {}
    #: The config["encoder"] values a subclass builds (None: no encoder, the original U-Net).
    encoders: ClassVar[tuple[str | None, ...]] = ()
    #: The network's total stride: inputs are padded to a multiple of it.
    size_multiple: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for encoder in cls.encoders:
            HandUNet._networks[encoder] = cls

    @classmethod
    def network_class(cls, encoder: str | None) -> type[HandUNet]:
        """The subclass that builds `encoder` (None: the original U-Net)."""
        if encoder not in cls._networks:
            known = ", ".join(str(name) for name in cls._networks)
            raise ValueError(f"unknown encoder {encoder!r}; available: {known}")
        return cls._networks[encoder]

    def __new__(cls, *args: Any, **config: Any) -> HandUNet:
        if cls is HandUNet:  # build the network the config names
            cls = HandUNet.network_class(config.get("encoder"))
        instance = super().__new__(cls, *args, **config)
        arguments = inspect.signature(cls.__init__).bind(instance, *args, **config)
        arguments.apply_defaults()
        config = {k: v for k, v in arguments.arguments.items() if k != "self"}
        instance.__dict__["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
        return instance

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        max_side: int | None,
        input_mean: tuple[float, ...] | list[float] | None,
        input_std: tuple[float, ...] | list[float] | None,
        **_: Any,
    ) -> None:
        # What every network shares; each subclass's own __init__ names its architecture's arguments.
        # (`**_` lets the hub mixin hand HandUNet.from_pretrained every key of config.json.)
        super().__init__()
        self.config: dict[str, Any]  #: the constructor's arguments, as config.json holds them
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.max_side = max_side
        if (input_mean is None) != (input_std is None):
            raise ValueError("give both input_mean and input_std, or neither")
        if input_mean is not None:
            self.register_buffer("input_mean", torch.tensor(input_mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("input_std", torch.tensor(input_std).view(1, -1, 1, 1), persistent=False)
        else:
            self.input_mean = self.input_std = None

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> str | None:
        """config.json (`self.config`), model.safetensors and README.md, as the hub mixin writes them,
        plus the model's int8 file (model_int8.onnx) when it was made from exactly these weights, so a
        saved model keeps handseg's fast CPU path; files get the user's normal permissions (umask)."""
        kwargs.setdefault("config", self.config)
        pushed = super().save_pretrained(save_directory, **kwargs)
        carry_int8_file(self, self.name_or_path, Path(save_directory))
        return pushed

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> HandUNet:
        """The network a config.json describes, also one written by an earlier handseg."""
        network = cls.network_class(config.get("encoder")) if cls is HandUNet else cls
        accepted = inspect.signature(network.__init__).parameters
        return network(**{k: v for k, v in config.items() if k in accepted or k not in _LEGACY_KEYS})

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
        if self.input_mean is not None:
            x = (x - self.input_mean) / self.input_std
        return self.logits(x)[..., :height, :width]
