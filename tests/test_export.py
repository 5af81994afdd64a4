"""ONNX export and the onnxruntime backend against the torch path, on real photos."""

from __future__ import annotations

import numpy as np
import pytest

import handseg
from handseg import LITE0_MEAN, LITE0_STD, export_onnx, load_mask
from tests.conftest import make_tiny_model, run_cli

pytest.importorskip("onnx", reason='needs the onnx extra: pip install "handseg[onnx]"')


@pytest.fixture(scope="module", params=["unet", "lite0"])
def model(request):
    if request.param == "unet":
        return make_tiny_model(max_side=320)
    return make_tiny_model(
        encoder="efficientnet_lite0",
        decoder_channels=[32, 24, 16, 16, 8],
        max_side=320,
        input_mean=LITE0_MEAN,
        input_std=LITE0_STD,
    )


@pytest.fixture(scope="module")
def onnx_model(model, tmp_path_factory):
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return handseg.Segmenter(path)


def test_metadata_carries_the_working_resolution(onnx_model):
    assert onnx_model.max_side == 320
    assert onnx_model.runner.config["max_side"] == 320
    assert onnx_model.backend == "onnx" and onnx_model.model is None


def test_parity_on_real_photos(model, onnx_model, sample_photos):
    """Dynamic height and width: every photo size runs, probabilities agree, masks agree to a few pixels."""
    for photo in sample_photos:
        for max_side in (None, 320, 97):
            ref = handseg.segment(photo, model, max_side=max_side, backend="torch")
            got = onnx_model.with_working_size(max_side=max_side)(photo)
            np.testing.assert_allclose(got.probability, ref.probability, atol=1e-4)
            assert (got.mask != ref.mask).sum() <= 5


def test_backend_option_and_onnx_file_as_model(model, onnx_model, sample_photos):
    ref = handseg.segment(sample_photos[1], model, backend="torch")
    via_backend = handseg.segment(sample_photos[1], model, backend="onnx")
    via_file = handseg.segment(sample_photos[1], str(onnx_model.runner.path))
    np.testing.assert_allclose(via_backend.probability, ref.probability, atol=1e-4)
    np.testing.assert_allclose(via_file.probability, ref.probability, atol=1e-4)
    with pytest.raises(ValueError, match="backend"):
        handseg.Segmenter(model, backend="tensorrt")


@pytest.mark.slow
def test_cli_export_and_onnx_backend(tmp_path, tiny_model_dir, sample_photos):
    done = run_cli("export", "--onnx", tmp_path / "m.onnx", "--model", tiny_model_dir)
    assert done.returncode == 0, done.stderr
    for args in (["--model", str(tmp_path / "m.onnx")], ["--model", str(tiny_model_dir), "--backend", "onnx"]):
        out = tmp_path / f"out{len(args)}"
        done = run_cli("segment", "-i", sample_photos[2], "-o", f"{out}/", *args)
        assert done.returncode == 0, done.stderr
        torch_mask = handseg.segment(sample_photos[2], tiny_model_dir).mask

        onnx_mask = load_mask(out / f"{sample_photos[2].stem}_mask.png")
        assert (onnx_mask != torch_mask).sum() <= 5
