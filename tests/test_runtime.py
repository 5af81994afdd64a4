"""One runtime: a Segmenter decides device, backend and threads once, and every front end (Python, the
CLI, the app, video) runs exactly what it decided, on the shipped default model and a real gtea_frame."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import handseg
import handseg.backends
import handseg.segmenter
from handseg import load_mask
from tests.conftest import INT8_MODEL, run_cli, write_clip

pytestmark = pytest.mark.skipif(handseg.pretrained.DEFAULT_MODEL is None, reason="this build ships no default model")

#: The CPU backends this machine can run as asked (bf16 only where the CPU does bf16 arithmetic).
CPU_BACKENDS = ["torch", "onnx", "int8"] + (["bf16"] if handseg.cpu_has_native_bf16() else [])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_cli_runs_the_backend_asked_for(backend, gtea_frame, tmp_path):
    """`--backend torch` once ran int8 (the CLI decided "auto" again): now the CLI's mask is the one
    `handseg.segment(..., backend=B)` gives, pixel for pixel, and it says which backend ran."""
    expected = handseg.segment(gtea_frame, INT8_MODEL, backend=backend)
    assert expected.backend == backend
    out = str(tmp_path / "m.png")
    done = run_cli("segment", "-i", str(gtea_frame), "-o", out, "--model", INT8_MODEL, "--backend", backend)
    assert done.returncode == 0, done.stderr
    assert f": {backend} on cpu" in done.stderr
    assert np.array_equal(load_mask(tmp_path / "m.png"), expected.mask)


def test_backends_really_differ_on_this_frame(gtea_frame):
    """So the test above can tell one backend from another: int8's mask is not float32's."""
    assert not np.array_equal(
        handseg.segment(gtea_frame, INT8_MODEL, backend="int8").mask,
        handseg.segment(gtea_frame, INT8_MODEL, backend="torch").mask,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_the_app_runs_the_backend_asked_for(backend, gtea_frame):
    """`python app.py --backend B` builds its Segmenters with B; the Segment tab's mask download is
    `handseg.segment(..., backend=B)`'s mask, and its stats say B and the threads it ran with."""
    pytest.importorskip("gradio", reason='the app needs the demo extra: pip install "handseg[demo]"')
    from demo import callbacks, ui

    segmenters, notices = ui.load_segmenters(INT8_MODEL, threads=1, backend=backend)
    main = next(iter(segmenters.values()))
    assert main.backend == backend and notices == []
    _, _, mask_path, stats, _ = callbacks.segment_photo(
        main, str(gtea_frame), 0.5, False, main.max_side, "#ff3c8c", 0.5
    )
    assert np.array_equal(load_mask(Path(mask_path)), handseg.segment(gtea_frame, INT8_MODEL, backend=backend).mask)
    assert f"; {backend}, 1 thread)" in stats


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_video_frames_run_the_backend_asked_for(backend, gtea_frame, tmp_path):
    pytest.importorskip("av", reason='needs the video extra: pip install "handseg[video]"')
    from handseg.video import iter_video

    clip = write_clip(tmp_path / "clip.mp4", np.array(Image.open(gtea_frame).convert("RGB").resize((480, 320))), 3)
    results = list(iter_video(clip, handseg.Segmenter(INT8_MODEL, backend=backend)))
    assert len(results) == 3
    for result in results:
        assert result.backend == backend
        assert np.array_equal(result.mask, handseg.segment(result.image, INT8_MODEL, backend=backend).mask)


@pytest.mark.slow
def test_bf16_on_a_cpu_without_bf16_falls_back_and_says_so(gtea_frame, tmp_path, monkeypatch):
    """Emulated bf16 took 4.1 s a gtea_frame against 0.32 s in float32 on an AVX2-only CPU: never silently.
    ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN (and so handseg) see such a CPU."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = str(tmp_path / "m.png")
    done = run_cli("segment", "-i", str(gtea_frame), "-o", out, "--model", INT8_MODEL, "--backend", "bf16", env=env)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("handseg: note:")]
    assert len(notes) == 1 and "no bf16 arithmetic" in notes[0], done.stderr
    assert ": torch on cpu" in done.stderr
    assert np.array_equal(load_mask(tmp_path / "m.png"), handseg.segment(gtea_frame, INT8_MODEL, backend="torch").mask)
    monkeypatch.setattr(handseg.backends, "cpu_has_native_bf16", lambda: False)
    model = handseg.HandUNet.from_pretrained(handseg.pretrained_path(INT8_MODEL))  # a fresh object: nothing cached
    with pytest.warns(handseg.FastPathNotice, match="no bf16 arithmetic"):
        assert handseg.segment(gtea_frame, model, backend="bf16").backend == "torch"


@pytest.mark.parametrize("backend", ["torch", "int8"])
def test_the_threads_asked_for_are_the_threads_it_runs_with(backend, gtea_frame, tmp_path, monkeypatch):
    """torch's thread count is one per process, and anything may change it between two batches: a
    Segmenter runs its own torch work (the network on the torch backends, the mask back to full size on
    every backend) at its own count, and leaves the caller's count as it was. The CLI, the app and the Ray
    job say what they run with."""
    seen = []
    to_full_size = handseg.segmenter.to_full_size

    def recording(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return to_full_size(*args, **kwargs)

    monkeypatch.setattr(handseg.segmenter, "to_full_size", recording)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            segmenter = handseg.Segmenter(INT8_MODEL, backend=backend, threads=threads)
            torch.set_num_threads(3)  # someone else's setting, between two batches
            segmenter(gtea_frame)
            assert seen[-1] == threads and torch.get_num_threads() == 3
            assert segmenter.runner_threads() == threads  # torch's, or the onnxruntime session's
    finally:
        torch.set_num_threads(before)
    flags = ("--model", INT8_MODEL, "--backend", backend, "--threads", "2")
    done = run_cli("segment", "-i", gtea_frame, "-o", tmp_path / "m.png", *flags)
    assert done.returncode == 0, done.stderr
    assert f": {backend} on cpu, 2 threads" in done.stderr


def test_the_private_names_handseg_relies_on_still_exist():
    """torch has no public query for bf16 arithmetic or VNNI, nor a public counter of in-place weight
    changes; handseg uses these private names (handseg.hardware, handseg.backends). If a torch release drops
    one, this fails loudly instead of handseg quietly choosing a slow path or a stale int8 file."""
    assert isinstance(torch.ops.mkldnn._is_mkldnn_bf16_supported(), bool)
    assert isinstance(torch.cpu._is_vnni_supported(), bool)  # handseg.hardware.cpu_multiplies_int8_exactly
    weight = torch.nn.Parameter(torch.zeros(2))
    version = weight._version
    with torch.no_grad():
        weight.add_(1)
    assert weight._version > version


def test_segment_takes_the_segmenters_keywords_and_names_itself_in_a_typo(gtea_frame):
    """segment, iter_segment and segment_batch take `Segmenter`'s keywords (one list: SegmenterOptions);
    a misspelt one is named with the function it was given to, before any model loads."""
    assert set(handseg.SegmenterOptions.__annotations__) == {
        "device", "backend", "threads", "concurrent", "compile", "max_side", "scale", "max_pixels", "hands", "verify"
    }  # fmt: skip
    for function in (handseg.segment, handseg.iter_segment, handseg.segment_batch):
        with pytest.raises(
            TypeError, match=f"^{function.__name__}\\(\\) got an unexpected keyword argument 'treshold'"
        ):
            function([gtea_frame] if function is not handseg.segment else gtea_frame, treshold=0.3)
    assert handseg.segment(gtea_frame, max_side=256, threads=1).mask.shape == (1280, 1918)


def test_a_segmenter_decides_once(gtea_frame):
    """Building the same Segmenter again reuses the loaded model and runner, and says nothing twice."""
    first = handseg.Segmenter(INT8_MODEL, backend="int8", threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = handseg.Segmenter(INT8_MODEL, backend="int8", threads=1)
    assert again.runner is first.runner and again.model is first.model is handseg.load_model(INT8_MODEL)
    assert again(gtea_frame).backend == "int8"
