"""The CPU backends: which one runs by default (int8 where the model has its int8 file, on every CPU; else
bf16 or float32, with a notice), how far the faster ones move the float model's masks on real val photos, and
how a converted or fine-tuned model gets its own int8 file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import handseg
import handseg.backends
from handseg.metrics import score
from handseg.pretrained import DEFAULT_MODEL, pretrained_path
from tests.conftest import INT8_MODEL, REPO_ROOT, make_tiny_model, run_cli
from tests.original_format import original_state_dict, save_torch03

CPU = torch.device("cpu")

#: bf16 against float32, the shipped model on the first 4 val photos of each source (12; measured: mean
#: equal pixels 99.91%, worst photo 99.53%; mean dice between the two masks 0.997); floors with margin.
BF16_EQUAL_FLOOR, BF16_WORST_FLOOR, BF16_DICE_FLOOR = 0.998, 0.99, 0.99
#: int8 (the shipped model_int8.onnx) against float32 on the same photos: measured 99.77%, worst 98.77%,
#: dice 0.990 on a CPU with VNNI, and the same masks on an AVX2-only one (QEMU's EPYC-Rome), where handseg
#: asks onnxruntime for exact int8 sums (`python benchmarks/int8_cpus.py`). Floors with margin.
INT8_EQUAL_FLOOR, INT8_WORST_FLOOR, INT8_DICE_FLOOR = 0.995, 0.975, 0.98


def _val_photos(val_pairs) -> list:
    return [image for pairs in val_pairs.values() for image, _ in pairs[:4]]


def _agreement(photos, backend: str | handseg.Segmenter) -> tuple[float, float, float]:
    """(mean share of equal pixels, the worst photo's, mean dice) of the masks of `backend` (a backend of
    INT8_MODEL, or a Segmenter of it) against its float32 masks."""
    run = backend if isinstance(backend, handseg.Segmenter) else handseg.Segmenter(INT8_MODEL, backend=backend)
    equal, dice = [], []
    for photo in photos:
        reference = handseg.segment(photo, INT8_MODEL, backend="torch").mask
        mask = run(photo).mask
        equal.append(float((mask == reference).mean()))
        if reference.any():
            dice.append(score(mask, reference).dice)
    return float(np.mean(equal)), min(equal), float(np.mean(dice))


def _session_entry(segmenter: handseg.Segmenter, key: str) -> str | None:
    """A setting of the onnxruntime session a Segmenter runs (None where it is not set)."""
    try:
        return segmenter.runner.session.get_session_options().get_session_config_entry(key)
    except RuntimeError:  # onnxruntime's answer for a key that was never set
        return None


def _int8_model(folder, photos, seed: int = 1) -> handseg.HandUNet:
    """A tiny model saved in `folder` with an int8 file made by the command, loaded from there."""
    make_tiny_model(seed=seed).save_pretrained(folder)
    done = _export_int8(folder, photos, folder / "model_int8.onnx")
    assert done.returncode == 0, done.stderr
    return handseg.HandUNet.from_pretrained(folder)


@pytest.mark.slow
def test_auto_runs_int8_where_the_model_has_its_int8_file(tmp_path, sample_photos):
    with_int8 = _int8_model(tmp_path / "with_int8", sample_photos[:2])
    assert handseg.Segmenter(with_int8).backend == "int8"
    assert handseg.segment(sample_photos[0], with_int8).backend == "int8"
    assert handseg.segment(sample_photos[0], tmp_path / "with_int8").backend == "int8"  # by folder, too
    assert handseg.Segmenter(with_int8, compile=True).backend == "torch"
    # what the user asks for is what runs
    for backend in ("torch", "bf16") if handseg.cpu_has_native_bf16() else ("torch",):
        assert handseg.segment(sample_photos[0], with_int8, backend=backend).backend == backend
    with pytest.raises(ValueError, match="unknown backend"):
        handseg.Segmenter(with_int8, backend="fp8")
    with pytest.raises(ValueError, match="runs on the CPU"):
        handseg.Segmenter(with_int8, backend="int8", device="cuda")


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_without_an_int8_file_auto_says_so_once_and_runs_bf16_or_float(bf16_cpu, monkeypatch, sample_photos):
    monkeypatch.setattr(handseg.backends, "cpu_has_native_bf16", lambda: bf16_cpu)
    model = make_tiny_model()
    with pytest.warns(handseg.FastPathNotice, match="has no model_int8.onnx.*handseg export"):
        result = handseg.segment(sample_photos[0], model)
    assert result.backend == ("bf16" if bf16_cpu else "torch")
    assert f"backend={result.backend!r}" in repr(result)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model: a second image says nothing
        assert handseg.segment(sample_photos[1], model).backend == result.backend


@pytest.mark.skipif(DEFAULT_MODEL is None, reason="this build ships no default model")
@pytest.mark.parametrize("vnni", [True, False], ids=["cpu-with-vnni", "cpu-without-vnni"])
def test_the_default_runs_int8_on_every_cpu_with_exact_sums(vnni, sample_photos, val_pairs, monkeypatch):
    """onnxruntime's x86 int8 kernels saturate without VNNI unless told to add exactly: handseg tells them
    so there (and only there: it costs 2.5x where VNNI adds exactly anyway), so "auto" runs int8 on every
    CPU, says nothing, and keeps the float model's masks. Both branches run on every machine; on a CPU with
    VNNI the exact setting changes nothing, on one without it is what keeps the masks."""
    monkeypatch.setattr(handseg.backends, "cpu_multiplies_int8_exactly", lambda: vnni)
    model = handseg.HandUNet.from_pretrained(pretrained_path(INT8_MODEL))  # a fresh object: nothing cached
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice
        segmenter = handseg.Segmenter(model)
    assert segmenter.backend == "int8" and segmenter.notice is None
    assert _session_entry(segmenter, "session.x64quantprecision") == (None if vnni else "1")
    if vnni and not handseg.cpu_multiplies_int8_exactly():
        return  # this CPU really lacks VNNI: without the setting its sums saturate (what the setting is for)
    photos = _val_photos(val_pairs)
    equal, worst, dice = _agreement(photos, segmenter)
    assert equal >= INT8_EQUAL_FLOOR and worst >= INT8_WORST_FLOOR and dice >= INT8_DICE_FLOOR, (equal, worst, dice)


@pytest.mark.skipif(DEFAULT_MODEL is None, reason="this build ships no default model")
def test_the_shipped_default_runs_int8(sample_photos):
    result = handseg.segment(sample_photos[0])
    assert result.backend == "int8" and result.model == DEFAULT_MODEL


@pytest.mark.skipif(not handseg.cpu_has_native_bf16(), reason="this CPU has no bf16 arithmetic")
def test_bf16_keeps_the_float_models_masks_on_val_photos(val_pairs):
    """bf16 is the default for models without an int8 file (and where onnxruntime is missing)."""
    equal, worst, dice = _agreement(_val_photos(val_pairs), "bf16")
    assert equal >= BF16_EQUAL_FLOOR and worst >= BF16_WORST_FLOOR and dice >= BF16_DICE_FLOOR, (equal, worst, dice)


@pytest.mark.slow
@pytest.mark.skipif(DEFAULT_MODEL is None, reason="this build ships no default model")
def test_the_shipped_int8_file_is_what_the_command_makes(data_dir, tmp_path, val_pairs):
    """`python -m train.quantize` remakes the shipped file from train photos: the same masks."""
    pytest.importorskip("onnx", reason='making an int8 file needs the onnx extra: pip install "handseg[onnx]"')
    folder = tmp_path / "model"
    shutil.copytree(pretrained_path(INT8_MODEL), folder, ignore=shutil.ignore_patterns("*.jpg", "*.onnx"))
    done = subprocess.run(
        [sys.executable, "-m", "train.quantize", "--model", str(folder), "--data", str(data_dir)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "calibrated on 36 train photos" in done.stdout
    for photo in _val_photos(val_pairs)[::3]:
        remade = handseg.segment(photo, folder, backend="int8")
        shipped = handseg.segment(photo, INT8_MODEL, backend="int8")
        assert remade.backend == "int8"
        assert (remade.mask == shipped.mask).mean() >= 0.999, photo.name


def _export_int8(model_dir, photos, out):
    return run_cli("export", "--model", model_dir, "--int8", "--onnx", out, "--calibration", *photos)


@pytest.mark.slow
def test_a_converted_model_gets_int8_from_the_command(tmp_path, sample_photos):
    """An original MODEL.pth, converted, then quantized by `handseg export --int8`: the CLI runs it
    with --backend int8 and its masks agree with the float model's."""
    pytest.importorskip("onnx", reason='making an int8 file needs the onnx extra: pip install "handseg[onnx]"')
    checkpoint = tmp_path / "MODEL.pth"
    save_torch03(original_state_dict(base=8), checkpoint)
    folder = tmp_path / "converted"
    done = run_cli("convert", checkpoint, folder)
    assert done.returncode == 0, done.stderr
    missing = run_cli(
        "segment", "-i", sample_photos[0], "-o", tmp_path / "a.png", "--model", folder, "--backend", "int8"
    )
    assert missing.returncode == 2
    assert "has no model_int8.onnx" in missing.stderr and "handseg export" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    done = _export_int8(folder, sample_photos, folder / "model_int8.onnx")
    assert done.returncode == 0, done.stderr
    assert "int8, calibrated on 4 photos" in done.stdout
    for photo in sample_photos:
        fast = handseg.segment(photo, folder, backend="int8", max_side=256)
        reference = handseg.segment(photo, folder, backend="torch", max_side=256)
        assert fast.backend == "int8"
        assert (fast.mask == reference.mask).mean() > 0.97, photo.name


@pytest.mark.slow
def test_an_int8_file_from_other_weights_is_never_run(tmp_path, sample_photos):
    """Fine-tune a model, in memory or saved over its folder: the old int8 file no longer matches its
    weights, so int8 is refused and the default runs the new weights in PyTorch."""
    pytest.importorskip("onnx", reason='making an int8 file needs the onnx extra: pip install "handseg[onnx]"')
    folder = tmp_path / "finetuned"
    model = _int8_model(folder, sample_photos[:2])
    assert handseg.segment(sample_photos[0], model).backend == "int8"
    with torch.no_grad():
        model.outc.weight.mul_(-1)  # a step of fine-tuning, in place
    with pytest.warns(handseg.FastPathNotice, match="made from other weights"):
        assert handseg.segment(sample_photos[0], model).backend in ("bf16", "torch")
    make_tiny_model(seed=2).save_pretrained(folder, overwrite=True)  # saved over the folder, the int8 file left
    fresh = handseg.HandUNet.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="made from other weights"):
        handseg.segment(sample_photos[0], fresh, backend="int8")


@pytest.mark.slow
def test_an_int8_file_reads_its_shapes_before_dequantizing(tmp_path, sample_photos):
    """The int8 file's decoder reads its feature maps' shapes from the quantized maps (onnxruntime would
    otherwise dequantize whole maps only for their shapes), with the same logits to the bit as the graph that
    reads them dequantized, at the sizes real photos give."""
    onnx = pytest.importorskip("onnx", reason='making an int8 file needs the onnx extra: pip install "handseg[onnx]"')
    folder = tmp_path / "with_int8"
    _int8_model(folder, sample_photos[:2])
    made = onnx.load(str(folder / "model_int8.onnx"))
    made_by = {output: node for node in made.graph.node for output in node.output}
    shapes = [node for node in made.graph.node if node.op_type == "Shape"]
    assert shapes and all(made_by[node.input[0]].op_type != "DequantizeLinear" for node in shapes)
    # The graph as onnxruntime's quantizer wrote it: each of those Shapes reads its map dequantized.
    dequantized = {node.input[0]: node.output[0] for node in made.graph.node if node.op_type == "DequantizeLinear"}
    rewired = 0
    for node in shapes:
        if node.input[0] in dequantized:
            node.input[0], rewired = dequantized[node.input[0]], rewired + 1
    assert rewired
    onnx.save(made, str(tmp_path / "as_quantized.onnx"))
    as_quantized = handseg.backends.OnnxRunner(tmp_path / "as_quantized.onnx", threads=1)
    made_file = handseg.backends.OnnxRunner(folder / "model_int8.onnx", threads=1)
    for photo in sample_photos:
        small = handseg.load_working_image(photo, max_side=made_file.max_side).small
        batch = handseg.to_model_input(small)[None]
        np.testing.assert_array_equal(made_file(batch).numpy(), as_quantized(batch).numpy())


@pytest.mark.slow
def test_export_int8_needs_calibration_photos(tmp_path, tiny_model_dir):
    out = tmp_path / "m.onnx"
    base = ["export", "--model", tiny_model_dir, "--onnx", out]
    done = run_cli(*base, "--int8")
    assert done.returncode == 2 and "--calibration" in done.stderr
    done = run_cli(*base, "--int8", "--calibration", tmp_path)
    assert done.returncode == 2 and "no image files" in done.stderr
    assert not out.exists()


@pytest.mark.slow
def test_without_onnxruntime_the_default_falls_back_with_one_line(sample_photos, tmp_path):
    """onnxruntime missing (uninstalled): the CLI still writes the mask, in PyTorch and without hand
    landmarks, and says why in one line; asking for int8 is one clear error."""
    hide = tmp_path / "hide" / "onnxruntime"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('onnxruntime is not installed (hidden by the test)')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide.parent), str(REPO_ROOT)])}
    command = ["segment", "-i", sample_photos[0]]
    done = run_cli(*command, "-o", tmp_path / "m.png", env=env)  # a process of its own: onnxruntime hidden
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.png").is_file()
    notes = [line for line in done.stderr.splitlines() if line.startswith("handseg: note:")]
    assert len(notes) == 1 and "pip install onnxruntime" in notes[0], done.stderr
    assert "hand landmarks" in notes[0], done.stderr  # the hands stage runs on onnxruntime too: off, said once
    done = run_cli(*command, "-o", tmp_path / "n.png", "--backend", "int8", env=env)
    assert done.returncode == 2
    assert "pip install onnxruntime" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    # --hands asks for each hand's files, which cannot be made without the landmark stage: refused, nothing written
    done = run_cli(*command, "-o", tmp_path / "h.png", "--hands", env=env)
    assert done.returncode == 2 and "--hands" in done.stderr and "pip install onnxruntime" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "h.png").exists()
