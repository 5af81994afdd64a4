"""Independent stand-ins for the original Hand-Segmentation code, for conversion tests.

- `original_state_dict`: random weights under the original key names, with
  non-trivial BatchNorm statistics.
- `original_forward`: the original network's forward pass written from its
  description with functional ops (not handseg's modules): double conv blocks,
  max-pool down, `nn.UpsamplingBilinear2d` (align_corners=True) up, skip first.
- `save_torch03`: writes a state dict the way torch 0.3.1 did (legacy non-zip
  format, tensors rebuilt by `torch._utils._rebuild_tensor`, no
  `num_batches_tracked`), so we can test reading such files without torch 0.3.
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv_keys(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for conv, bn, c_in in ((0, 1, cin), (3, 4, cout)):
        shapes[f"{prefix}.{conv}.weight"] = (cout, c_in, 3, 3)
        shapes[f"{prefix}.{conv}.bias"] = (cout,)
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{bn}.{name}"] = (cout,)
    return shapes


def original_shapes(base: int = 64, in_ch: int = 3, classes: int = 1) -> dict[str, tuple[int, ...]]:
    c = base
    shapes = _double_conv_keys("inc.conv.conv", in_ch, c)
    downs = [(c, 2 * c), (2 * c, 4 * c), (4 * c, 8 * c), (8 * c, 8 * c)]
    for i, (cin, cout) in enumerate(downs, 1):
        shapes |= _double_conv_keys(f"down{i}.mpconv.1.conv", cin, cout)
    ups = [(16 * c, 4 * c), (8 * c, 2 * c), (4 * c, c), (2 * c, c)]
    for i, (cin, cout) in enumerate(ups, 1):
        shapes |= _double_conv_keys(f"up{i}.conv.conv", cin, cout)
    shapes["outc.conv.weight"] = (classes, c, 1, 1)
    shapes["outc.conv.bias"] = (classes,)
    return shapes


def original_state_dict(base: int = 64, seed: int = 0, in_ch: int = 3, classes: int = 1) -> OrderedDict:
    gen = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in original_shapes(base, in_ch, classes).items():
        if key.endswith("running_var"):
            t = torch.rand(shape, generator=gen) * 1.5 + 0.25
        elif key.endswith("running_mean"):
            t = torch.randn(shape, generator=gen) * 0.2
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            t = torch.randn(shape, generator=gen) * 0.1 + (
                1.0 if key.endswith("1.weight") or key.endswith("4.weight") else 0.0
            )
        state[key] = t
    return state


def original_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def double_conv(prefix: str, t: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((0, 1), (3, 4)):
            t = F.conv2d(t, state[f"{prefix}.{conv}.weight"], state[f"{prefix}.{conv}.bias"], padding=1)
            t = F.batch_norm(
                t,
                state[f"{prefix}.{bn}.running_mean"],
                state[f"{prefix}.{bn}.running_var"],
                state[f"{prefix}.{bn}.weight"],
                state[f"{prefix}.{bn}.bias"],
                training=False,
                eps=1e-5,
            )
            t = F.relu(t)
        return t

    upsample = nn.UpsamplingBilinear2d(scale_factor=2)
    x1 = double_conv("inc.conv.conv", x)
    x2 = double_conv("down1.mpconv.1.conv", F.max_pool2d(x1, 2))
    x3 = double_conv("down2.mpconv.1.conv", F.max_pool2d(x2, 2))
    x4 = double_conv("down3.mpconv.1.conv", F.max_pool2d(x3, 2))
    x5 = double_conv("down4.mpconv.1.conv", F.max_pool2d(x4, 2))
    y = double_conv("up1.conv.conv", torch.cat([x4, upsample(x5)], 1))
    y = double_conv("up2.conv.conv", torch.cat([x3, upsample(y)], 1))
    y = double_conv("up3.conv.conv", torch.cat([x2, upsample(y)], 1))
    y = double_conv("up4.conv.conv", torch.cat([x1, upsample(y)], 1))
    return F.conv2d(y, state["outc.conv.weight"], state["outc.conv.bias"])


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _StorageRef:
    def __init__(self, key: str, tensor: torch.Tensor) -> None:
        self.key, self.tensor = key, tensor


def save_torch03(state: dict[str, torch.Tensor], path: Path) -> None:
    """Write `state` in torch 0.3.1's legacy serialization format."""
    storages: dict[str, torch.Tensor] = {}

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, torch.Tensor):
                key = str(len(storages))
                storages[key] = obj.detach().contiguous().float()
                # torch 0.3's Tensor.__reduce__: _rebuild_tensor(storage, offset, size, stride)
                return torch._utils._rebuild_tensor, (_StorageRef(key, obj), 0, tuple(obj.size()), obj.stride())
            return NotImplemented

        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", torch.FloatStorage, obj.key, "cpu", obj.tensor.numel(), None)
            return None

    with open(path, "wb") as f:
        pickle.dump(_LEGACY_MAGIC, f, protocol=2)
        pickle.dump(_LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump(
            {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
            f,
            protocol=2,
        )
        Pickler(f, protocol=2).dump(OrderedDict(state))
        keys = sorted(storages, key=int)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = storages[key]
            f.write(struct.pack("<q", data.numel()))
            f.write(data.numpy().astype("<f4").tobytes())
