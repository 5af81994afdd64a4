"""Conversion of original Hand-Segmentation checkpoints (MODEL.pth) into hub folders."""

from __future__ import annotations

import hashlib
import pickle
import shutil

import pytest
import torch

from handseg import HandUNet
from handseg.convert import CheckpointError, convert_checkpoint, load_checkpoint
from tests.conftest import run_cli
from tests.original_format import original_forward, original_state_dict, save_torch03


@pytest.fixture(scope="module")
def original_64():
    """Full-width (64) random weights under the original key names."""
    return original_state_dict(base=64, seed=1)


def test_torch03_checkpoint_converts_losslessly(tmp_path, original_64):
    checkpoint = tmp_path / "MODEL.pth"
    save_torch03(original_64, checkpoint)
    model = convert_checkpoint(checkpoint, tmp_path / "hub")
    loaded = HandUNet.from_pretrained(tmp_path / "hub")
    assert loaded.inc[0].out_channels == 64
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = original_forward(original_64, x)
        torch.testing.assert_close(loaded(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
    # Non-trivial BatchNorm statistics really were carried over.
    assert torch.equal(loaded.downs[2][1][4].running_var, original_64["down3.mpconv.1.conv.4.running_var"])


def test_model_card_records_source_and_sha256(tmp_path):
    checkpoint = tmp_path / "MODEL.pth"
    save_torch03(original_state_dict(base=4), checkpoint)
    convert_checkpoint(checkpoint, tmp_path / "hub")
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "MODEL.pth" in card
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() in card


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: sd, id="plain-zip"),
        pytest.param(lambda sd: {f"module.{k}": v for k, v in sd.items()}, id="dataparallel"),
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="wrapped-state_dict"),
        pytest.param(lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}}, id="wrapped-model"),
    ],
)
def test_modern_and_wrapped_checkpoints(tmp_path, wrap):
    state = original_state_dict(base=4, seed=2)
    # torch >= 0.4 also stores num_batches_tracked; it must be accepted.
    state = state | {
        k.replace("running_mean", "num_batches_tracked"): torch.tensor(7) for k in state if k.endswith("running_mean")
    }
    torch.save(wrap(state), tmp_path / "m.pth")
    model = convert_checkpoint(tmp_path / "m.pth", tmp_path / "hub")
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original_forward(state, x), rtol=1e-5, atol=1e-5)


def test_legacy_non_zip_from_modern_torch(tmp_path):
    state = original_state_dict(base=4, seed=3)
    torch.save(state, tmp_path / "m.pth", _use_new_zipfile_serialization=False)
    assert load_checkpoint(tmp_path / "m.pth").keys() == state.keys()


def test_widths_and_channels_are_inferred(tmp_path):
    state = original_state_dict(base=8, in_ch=1, classes=2)
    save_torch03(state, tmp_path / "m.pth")
    model = convert_checkpoint(tmp_path / "m.pth", tmp_path / "hub")
    assert (model.in_channels, model.num_classes, model.inc[0].out_channels) == (1, 2, 8)


class _RunsCode:
    """Unpickling this calls builtins.exec, which would create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "executed.txt"
    checkpoint = tmp_path / "evil.pth"
    with open(checkpoint, "wb") as f:
        pickle.dump({"inc.conv.conv.0.weight": _RunsCode(marker)}, f)
    with pytest.raises(CheckpointError, match="refused"):
        convert_checkpoint(checkpoint, tmp_path / "hub")
    assert not marker.exists()
    assert not (tmp_path / "hub").exists()
    # Same for a zip-format checkpoint built by torch.save.
    torch.save({"x": _RunsCode(marker)}, checkpoint)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_missing_key_is_named(tmp_path):
    state = original_state_dict(base=4)
    del state["up3.conv.conv.4.running_var"]
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"ups\.2\.conv\.4\.running_var"):
        convert_checkpoint(tmp_path / "m.pth", tmp_path / "hub")


def test_unexpected_key_is_named(tmp_path):
    state = original_state_dict(base=4) | {"extra.head.weight": torch.zeros(3)}
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="extra.head.weight"):
        convert_checkpoint(tmp_path / "m.pth", tmp_path / "hub")


def test_misshaped_key_is_named(tmp_path):
    state = original_state_dict(base=4)
    state["down2.mpconv.1.conv.0.weight"] = torch.zeros(16, 8, 5, 5)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"down2\.mpconv\.1\.conv\.0\.weight.*\(16, 8, 5, 5\)"):
        convert_checkpoint(tmp_path / "m.pth", tmp_path / "hub")


def test_not_a_checkpoint(tmp_path, sample_photos):
    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint: it starts with bytes 68 65"):
        load_checkpoint(tmp_path / "notes.pth")
    # A photo renamed .pth is named as what it is, not as a pickle that asks to run code.
    jpeg = next(p for p in sample_photos if p.suffix == ".jpg")
    shutil.copy(jpeg, tmp_path / "MODEL.pth")
    with pytest.raises(CheckpointError, match="it is a JPEG image, not the zip archive or pickle"):
        load_checkpoint(tmp_path / "MODEL.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_checkpoint(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pth")


def test_cli_convert(tmp_path):
    save_torch03(original_state_dict(base=4), tmp_path / "MODEL.pth")
    done = run_cli("convert", tmp_path / "MODEL.pth", tmp_path / "hub")
    assert done.returncode == 0, done.stderr
    assert "converted" in done.stdout
    assert HandUNet.from_pretrained(tmp_path / "hub").inc[0].out_channels == 4

    (tmp_path / "bad.pth").write_bytes(b"\x00" * 10)
    done = run_cli("convert", tmp_path / "bad.pth", tmp_path / "hub2")
    assert done.returncode == 2
    assert "bad.pth" in done.stderr and "Traceback" not in done.stderr
