"""One shared set of checks for every HandUNet configuration: forward and backward at
odd sizes, hub save/load round trips, strict loading and export."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from torch import nn

import handseg
from handseg import HandUNet
from tests.conftest import INT8_MODEL, make_tiny_model

CONFIGS = [
    pytest.param({"base_channels": 4}, id="tiny-bilinear"),
    pytest.param({"base_channels": 4, "bilinear": False}, id="tiny-transposed"),
    pytest.param({"base_channels": 8, "in_channels": 1, "num_classes": 2}, id="grey-2class"),
    pytest.param(
        {
            "encoder": "efficientnet_lite0",
            "decoder_channels": [32, 24, 16, 16, 8],
            "input_mean": [0.5, 0.4, 0.3],
            "input_std": [0.2, 0.2, 0.2],
        },
        id="lite0",
    ),
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("size", [(16, 16), (37, 53), (1, 1), (95, 17)])
def test_forward_backward_any_size(config, size):
    model = make_tiny_model(**config).train()
    x = torch.rand(2, model.in_channels, *size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, model.num_classes, *size)
    out.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("config", CONFIGS)
def test_channels_last_input_gives_the_same_output(config):
    """Inference and training feed channels_last batches (faster on CPUs); the result must not change."""
    model = make_tiny_model(**config)
    x = torch.rand(2, model.in_channels, 37, 53)
    with torch.no_grad():
        plain_out = model(x)
        cl_out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(cl_out, plain_out, rtol=1e-4, atol=1e-5)


def test_padding_does_not_shift_content():
    """A crop of a multiple-of-16 input lines up with the same region of the full output."""
    model = make_tiny_model()
    x = torch.rand(1, 3, 64, 64)
    full = model(x)
    # Padding replicates edges at the bottom/right only, so the top-left interior must agree
    # closely; a misaligned (shifted) output would differ everywhere.
    part = model(x[..., :60, :61])
    assert part.shape[-2:] == (60, 61)
    assert torch.allclose(full[..., :40, :40], part[..., :40, :40], atol=1e-2)


@pytest.mark.parametrize("config", CONFIGS)
def test_save_pretrained_round_trip(tmp_path, config):
    model = make_tiny_model(**config)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    saved = json.loads((tmp_path / "config.json").read_text())
    common = {"in_channels": 3, "num_classes": 1, "max_side": None, "input_mean": None, "input_std": None}
    if "encoder" in config:  # each network's config.json names it and holds its own arguments, defaults filled in
        defaults = common | {"architecture": "lite_unet", "encoder": "efficientnet_lite0",
                             "decoder_channels": [96, 64, 40, 24, 16], "hand_channels": 0}  # fmt: skip
    else:
        defaults = common | {"architecture": "original_unet", "base_channels": 4, "bilinear": True}
    assert saved == defaults | config
    assert saved == model.config
    loaded = HandUNet.from_pretrained(tmp_path)
    assert type(loaded) is type(model) and not loaded.training
    x = torch.rand(1, model.in_channels, 40, 24)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    card = (tmp_path / "README.md").read_text()
    assert "library_name: handseg" in card and "image-segmentation" in card
    # `license: other` says what the other is: the weights take the training data's non-commercial terms
    assert "license: other" in card and "non-commercial research use" in card


def test_loading_is_strict(tmp_path):
    """Weights that do not match the config are an error, not a half-random model."""
    make_tiny_model(base_channels=4).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"bilinear": False}))
    with pytest.raises(RuntimeError, match="up"):
        HandUNet.from_pretrained(tmp_path)


def test_loading_never_unpickles(tmp_path):
    """A folder with only a pickled pytorch_model.bin is refused: only safetensors are read."""
    model = make_tiny_model()
    (tmp_path / "config.json").write_text(json.dumps({"base_channels": 4}))
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        HandUNet.from_pretrained(tmp_path)


def test_default_config_is_the_original_width():
    model = handseg.OriginalUNet()
    widths = [model.inc[0].out_channels] + [d[1][0].out_channels for d in model.downs]
    assert widths == [64, 128, 256, 512, 512]
    assert [u.conv[0].out_channels for u in model.ups] == [256, 128, 64, 64]
    assert sum(p.numel() for p in model.parameters()) == 13_395_329


def test_export_round_trip(tmp_path):
    """torch.export captures the whole model (padding and crop included) and reloads it."""
    model = make_tiny_model()
    x = torch.rand(1, 3, 37, 53)
    exported = torch.export.export(model, (x,))
    torch.export.save(exported, tmp_path / "model.pt2")
    reloaded = torch.export.load(tmp_path / "model.pt2").module()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), model(x), atol=1e-6)


def test_saved_files_get_the_users_permissions(tmp_path):
    """save_pretrained writes as any new file is written (safetensors' own writer makes model.safetensors
    readable to its owner only): a shared model folder is readable by the others it is shared with."""
    old = os.umask(0o002)
    try:
        make_tiny_model().save_pretrained(tmp_path / "model")
    finally:
        os.umask(old)
    for path in (tmp_path / "model").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path.name


def test_a_saved_shipped_model_keeps_its_int8_file(tmp_path):
    """Saving the shipped model elsewhere keeps handseg's fast CPU path: its int8 file goes along (made
    from exactly these weights); a model fine-tuned since does not take it, and says why."""
    model = HandUNet.from_pretrained(handseg.pretrained_path(INT8_MODEL))
    model.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "model_int8.onnx").is_file()
    assert handseg.Segmenter(tmp_path / "copy").backend == "int8"
    with torch.no_grad():
        model.head.bias.add_(0.1)  # a step of fine-tuning
    with pytest.warns(handseg.FastPathNotice, match="not copied.*other weights"):
        model.save_pretrained(tmp_path / "tuned")
    assert not (tmp_path / "tuned" / "model_int8.onnx").exists()


@pytest.mark.parametrize(
    ("old_config", "network"),
    [
        pytest.param({"base_channels": 4, "bilinear": True}, handseg.OriginalUNet, id="0.1-original"),
        pytest.param(
            {"encoder": None, "base_channels": 4, "decoder_channels": [96, 64, 40, 24, 16]},
            handseg.OriginalUNet,
            id="0.4-original-with-every-key",
        ),  # fmt: skip
        pytest.param(
            {
                "encoder": "efficientnet_lite0",
                "decoder_channels": [16, 8, 8, 8, 8],
                "base_channels": 64,
                "bilinear": True,
            },
            handseg.LiteUNet,
            id="0.4-lite",
        ),  # fmt: skip
    ],
)
def test_config_files_written_before_architectures_had_names_still_load(tmp_path, old_config, network):
    """handseg < 0.6 named no architecture in config.json (and < 0.5 wrote every key for both networks):
    such folders load as the network their `encoder` meant, with the same weights and outputs."""
    model = HandUNet.from_config(old_config).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(old_config))  # as the older version wrote it
    loaded = HandUNet.from_pretrained(tmp_path)
    assert type(loaded) is network and loaded.config["architecture"] == network.architecture
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_architectures_come_from_the_registry_by_name(tmp_path):
    """config.json names the architecture; a network of one's own joins by name, saves and loads like
    handseg's own; the base class builds nothing by itself."""
    assert {"lite_unet", "original_unet"} <= set(handseg.architectures())
    with pytest.raises(TypeError, match="base of handseg's networks"):
        HandUNet(in_channels=3, num_classes=1, max_side=None, input_mean=None, input_std=None)
    with pytest.raises(ValueError, match="unknown architecture 'no_such_net'; known: .*lite_unet"):
        handseg.create_model("no_such_net")

    @handseg.register_architecture("one_conv_test_net")
    class OneConv(HandUNet):
        def __init__(self, in_channels: int = 3, num_classes: int = 1, max_side: int | None = None,
                     input_mean=None, input_std=None) -> None:  # fmt: skip
            super().__init__(in_channels=in_channels, num_classes=num_classes, max_side=max_side,
                             input_mean=input_mean, input_std=input_std)  # fmt: skip
            self.conv = nn.Conv2d(in_channels, num_classes, 3, padding=1)

        def logits(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    model = handseg.create_model("one_conv_test_net", max_side=64)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == "one_conv_test_net"
    loaded = HandUNet.from_pretrained(tmp_path)
    assert type(loaded) is OneConv and handseg.Segmenter(loaded).max_side == 64
    with pytest.raises(ValueError, match="handseg's own"):
        handseg.register_architecture("lite_unet")(OneConv)
