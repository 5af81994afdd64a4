"""Network architectures by name: config.json's "architecture" -> the class that builds it.

handseg's own networks are listed by module path and imported on first use (as transformers' auto
classes do), so this module imports nothing of them and any module may ask it; a network of your own
joins with `register_architecture`. Names and classes only: no built model is kept here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

#: handseg's own architectures: name -> (module, class).
_BUILT_IN = {
    "original_unet": ("handseg.networks.original_unet", "OriginalUNet"),
    "lite_unet": ("handseg.networks.lite_unet", "LiteUNet"),
}
_registered: dict[str, type] = {}


def register_architecture(name: str) -> Callable[[type], type]:
    """A class decorator: `@register_architecture("my_unet")` makes config.json's `"architecture":
    "my_unet"` build that class (a `handseg.HandUNet` subclass)."""

    def register(cls: type) -> type:
        if name in _BUILT_IN and _BUILT_IN[name] != (cls.__module__, cls.__name__):
            raise ValueError(f"architecture {name!r} is handseg's own; choose another name")
        _registered[name] = cls
        cls.architecture = name
        return cls

    return register


def architectures() -> list[str]:
    """Every architecture name a config.json may use."""
    return sorted({*_BUILT_IN, *_registered})


def architecture_class(name: str) -> type[Any]:
    """The class that builds architecture `name`; a ValueError naming the known ones otherwise."""
    if name not in _registered and name in _BUILT_IN:
        module, cls = _BUILT_IN[name]
        _registered[name] = getattr(importlib.import_module(module), cls)
    if name not in _registered:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(architectures())}")
    return _registered[name]
