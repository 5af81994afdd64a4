"""The shared inference path on real photos from ../shared/data."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import handseg
from handseg import ImageLoadError, NoDefaultModelError, Segmentation
from handseg.crf import crf_available


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return handseg.load_model(tiny_model_dir, device="cpu")


def test_real_photos_give_full_size_masks(sample_photos, model):
    for path in sample_photos:
        result = handseg.segment(path, model)
        height, width = Image.open(path).size[::-1]
        assert isinstance(result, Segmentation)
        assert result.mask.shape == result.probability.shape == (height, width)
        assert result.mask.dtype == bool and result.probability.dtype == np.float32
        assert 0.0 <= result.probability.min() <= result.probability.max() <= 1.0
        assert np.array_equal(result.mask, result.probability > 0.5)
        assert result.image.shape == (height, width, 3)


def test_threshold_controls_the_mask(sample_photos, model):
    low = handseg.segment(sample_photos[1], model, threshold=0.2)
    high = handseg.segment(sample_photos[1], model, threshold=0.8)
    assert np.array_equal(low.probability, high.probability)
    assert np.array_equal(high.mask, high.probability > 0.8)
    assert low.mask.sum() >= high.mask.sum()
    with pytest.raises(ValueError, match="threshold"):
        handseg.segment(sample_photos[1], model, threshold=1.5)


def test_batch_equals_one_by_one(sample_photos, model):
    inputs = [sample_photos[0], sample_photos[2], sample_photos[2], sample_photos[3], sample_photos[1]]
    batched = handseg.segment_batch(inputs, model, batch_size=3)
    assert len(batched) == len(inputs)
    for path, result in zip(inputs, batched):
        single = handseg.segment(path, model)
        np.testing.assert_allclose(result.probability, single.probability, atol=1e-5)


def test_bad_input_in_a_stream_does_not_stop_the_others(tmp_path, sample_photos, model):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    inputs = [sample_photos[0], tmp_path / "bad.jpg", sample_photos[1]]
    pairs = list(handseg.iter_segment(inputs, model))
    assert [index for index, _ in pairs] == [0, 1, 2]  # input order, the error in its place
    results = dict(pairs)
    assert isinstance(results[1], ImageLoadError) and "bad.jpg" in str(results[1])
    assert isinstance(results[0], Segmentation) and isinstance(results[2], Segmentation)
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        handseg.segment_batch(inputs, model)


def test_a_stream_is_answered_in_order_reading_at_most_two_images_ahead(sample_photos, model):
    """iter_segment prepares the next images on a worker thread while it segments one, so a stream (a
    video's frames, a camera) is read ahead, but by two images at most: a long stream never piles up."""
    pulled = []

    def stream():
        for number in range(6):
            pulled.append(number)
            yield sample_photos[number % len(sample_photos)]

    answered = 0
    for index, result in handseg.iter_segment(stream(), model):
        assert index == answered and isinstance(result, Segmentation)
        assert len(pulled) <= index + 3
        answered += 1
    assert answered == 6


def test_working_resolution(sample_photos, model):
    path = sample_photos[0]  # egohands, 1280x720
    full = handseg.segment(path, model, max_side=None)
    half = handseg.segment(path, model, scale=0.5)
    capped = handseg.segment(path, model, max_side=320)
    assert full.mask.shape == half.mask.shape == capped.mask.shape == (720, 1280)
    assert not np.array_equal(full.probability, half.probability)
    # A photo smaller than max_side runs at its own size.
    small = sample_photos[2]
    np.testing.assert_array_equal(
        handseg.segment(small, model, max_side=4096).probability,
        handseg.segment(small, model, max_side=None).probability,
    )


def test_model_config_sets_the_default_working_resolution(tmp_path, sample_photos):
    from tests.conftest import make_tiny_model

    make_tiny_model(max_side=200).save_pretrained(tmp_path)
    model = handseg.HandUNet.from_pretrained(tmp_path)
    assert model.max_side == 200
    auto = handseg.segment(sample_photos[0], model)
    np.testing.assert_array_equal(auto.probability, handseg.segment(sample_photos[0], model, max_side=200).probability)
    assert not np.array_equal(auto.probability, handseg.segment(sample_photos[0], model, max_side=None).probability)


def test_large_photo_is_bounded(tmp_path, sample_photos, model):
    Image.open(sample_photos[0]).resize((8000, 6000)).save(tmp_path / "big.jpg", quality=80)
    result = handseg.segment(tmp_path / "big.jpg", model, max_side=1024)
    assert result.mask.shape == (6000, 8000)


def test_tiny_image(model):
    result = handseg.segment(np.full((16, 16, 3), 128, np.uint8), model)
    assert result.mask.shape == (16, 16)


def test_image_variants_segment_at_their_size(tmp_path, sample_photos, model):
    photo = Image.open(sample_photos[3]).convert("RGB")
    photo.convert("RGBA").save(tmp_path / "rgba.png")
    photo.convert("L").save(tmp_path / "grey.png")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("rgba.png", "grey.png", "cmyk.jpg"):
        assert handseg.segment(tmp_path / name, model).mask.shape == (photo.height, photo.width)


def test_exif_rotated_photo_gives_mask_in_displayed_orientation(tmp_path, sample_photos, model):
    photo = np.array(Image.open(sample_photos[3]).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees counter-clockwise to display"
    Image.fromarray(photo).save(tmp_path / "phone.png", exif=exif)
    result = handseg.segment(tmp_path / "phone.png", model)
    expected = handseg.segment(np.rot90(photo, k=1), model)
    assert result.mask.shape == (photo.shape[1], photo.shape[0])
    np.testing.assert_allclose(result.probability, expected.probability, atol=1e-5)


def test_reduced_jpeg_decode_gives_the_same_masks_and_the_full_image(gtea_frame, model):
    from_file = handseg.segment(gtea_frame, model, max_side=512)  # decoded at half size
    decoded = handseg.load_image(gtea_frame)
    from_array = handseg.segment(decoded, model, max_side=512)  # decoded in full, then resized
    assert from_file.mask.shape == (1280, 1918)
    assert np.abs(from_file.probability - from_array.probability).max() < 0.05
    assert (from_file.mask != from_array.mask).mean() < 0.002
    # The overlay's image is still the full photo, decoded when first asked for.
    assert np.array_equal(from_file.image, decoded)


@pytest.mark.slow
def test_compiled_model_gives_the_same_probabilities(sample_photos, tiny_model_dir, model):
    eager = handseg.segment(sample_photos[1], tiny_model_dir, device="cpu", backend="torch")
    compiled = handseg.Segmenter(tiny_model_dir, device="cpu", compile=True)
    assert isinstance(compiled.model, handseg.HandUNet)  # still the model: config, max_side, saving
    assert compiled.backend == "torch"
    result = compiled(sample_photos[1])
    np.testing.assert_allclose(result.probability, eager.probability, atol=1e-4)
    # A photo of another size compiles anew (a dynamic-shape recompile used to fail here).
    other = compiled(sample_photos[2])
    reference = handseg.segment(sample_photos[2], model, backend="torch")
    np.testing.assert_allclose(other.probability, reference.probability, atol=1e-4)
    with pytest.raises(ValueError, match="torch backend"):
        handseg.Segmenter(tiny_model_dir, device="cpu", backend="onnx", compile=True)


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 is not installed (pip install 'handseg[crf]')")
def test_crf_refines(sample_photos, model):
    plain = handseg.segment(sample_photos[2], model)
    refined = handseg.segment(sample_photos[2], model, crf=True)
    assert refined.mask.shape == plain.mask.shape
    assert not np.allclose(refined.probability, plain.probability)
    assert np.array_equal(refined.mask, refined.probability > 0.5)


def test_crf_without_pydensecrf_says_how_to_install(monkeypatch, sample_photos, model):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # import now fails, as when it is not installed
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(handseg.CRFUnavailableError, match="pip install"):
        handseg.segment(sample_photos[2], model, crf=True)


def test_models_are_loaded_once(tiny_model_dir):
    assert handseg.load_model(tiny_model_dir, "cpu") is handseg.load_model(str(tiny_model_dir), "cpu")
    module = handseg.load_model(tiny_model_dir, "cpu")
    assert handseg.load_model(module) is module


def test_without_default_weights_the_error_is_clear(monkeypatch, sample_photos):
    monkeypatch.setattr(handseg.pretrained, "DEFAULT_MODEL", None)  # as a build that ships no weights
    with pytest.raises(NoDefaultModelError, match="ships no default weights"):
        handseg.segment(sample_photos[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(sample_photos, tiny_model_dir):
    cpu = handseg.segment(sample_photos[0], tiny_model_dir, device="cpu")
    gpu = handseg.segment(sample_photos[0], tiny_model_dir, device="cuda")
    np.testing.assert_allclose(cpu.probability, gpu.probability, atol=1e-3)


def test_order_is_kept_when_batching_around_a_bad_file(tmp_path, sample_photos, model):
    """With batches, the good images before a bad one are still yielded before its error."""
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    same = [sample_photos[1]] * 3  # one size: they would batch together
    inputs = [*same[:2], tmp_path / "bad.jpg", same[2]]
    pairs = list(handseg.iter_segment(inputs, model, batch_size=8))
    assert [index for index, _ in pairs] == [0, 1, 2, 3]
    assert [type(r).__name__ for _, r in pairs] == ["Segmentation", "Segmentation", "ImageLoadError", "Segmentation"]


def test_cpu_threads_default_per_thread_pool_and_can_be_chosen(monkeypatch, tiny_model_dir, sample_photos):
    """torch gets half the cores, onnxruntime (the int8 default, the landmark models) every core: the counts
    that held up with a core busy (benchmarks/threads.py); segmentations running at once share them."""
    from handseg import hardware

    onnxruntime = hardware.ONNXRUNTIME_POOL
    monkeypatch.setattr(hardware, "usable_cores", lambda: 2)
    assert hardware.default_threads() == 1 and hardware.default_threads(concurrent=2) == 1
    assert hardware.default_threads(pool=onnxruntime) == 2 and hardware.default_threads(2, onnxruntime) == 1
    default = handseg.Segmenter()  # the shipped default: int8 on onnxruntime, landmark models on onnxruntime
    assert default.backend == "int8" and default.runner_threads() == 2
    assert default.landmarker.read_hand.session.get_session_options().intra_op_num_threads == 2
    assert handseg.Segmenter(concurrent=2).runner_threads() == 1  # the app's two requests share the cores
    assert "int8 on cpu, 2 threads" in default.describe()
    monkeypatch.setattr(hardware, "usable_cores", lambda: 16)
    assert hardware.default_threads() == 8 and hardware.default_threads(concurrent=2) == 4
    assert hardware.default_threads(pool=onnxruntime) == 16 and hardware.default_threads(2, onnxruntime) == 8
    assert handseg.Segmenter().runner_threads() == 16  # resolved per machine, not taken from the cache
    with pytest.raises(ValueError, match="thread pool"):
        hardware.default_threads(pool="openmp")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        segmenter = handseg.Segmenter(tiny_model_dir, device="cpu", backend="torch", threads=1)
        segmenter(sample_photos[0])
        assert segmenter.runner_threads() == 1 and torch.get_num_threads() == 2  # the caller's count kept
        with pytest.raises(ValueError, match="at least 1"):
            handseg.Segmenter(tiny_model_dir, device="cpu", threads=0)
    finally:
        torch.set_num_threads(before)


def test_missing_model_folder_fails_at_once_with_its_name(tmp_path):
    from handseg.hub import ModelNotFoundError

    for name, expected in [
        (str(tmp_path / "converted") + "/", "no such model folder"),
        ("mymodel", "form owner/name"),
        (str(tmp_path), "no config.json"),
    ]:
        started = time.perf_counter()
        with pytest.raises(ModelNotFoundError, match=expected):
            handseg.load_model(name)
        assert time.perf_counter() - started < 2  # no Hub retries for a path


def test_unreachable_hub_is_said_in_one_line(monkeypatch):
    """A repo id not in the cache: with HF_HUB_OFFLINE the Hub is not asked, and a push says what it needs."""
    from huggingface_hub import constants

    from handseg.hub import HubUnreachableError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE"):
        handseg.HandUNet.from_pretrained("someone/no-such-hand-model")
    with pytest.raises(HubUnreachableError, match="login"):
        handseg.OriginalUNet(base_channels=4).push_to_hub("someone/no-such-hand-model")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_a_device_this_machine_lacks_is_one_clear_error(sample_photos, tiny_model_dir):
    for device in ("cuda", "cuda:0", "foo", "gpu"):
        with pytest.raises(handseg.DeviceUnavailableError) as caught:
            handseg.segment(sample_photos[0], tiny_model_dir, device=device)
        assert repr(device) in str(caught.value)
    assert handseg.segment(sample_photos[0], tiny_model_dir, device="cpu").mask.ndim == 2


@pytest.mark.slow
def test_a_phone_photo_over_the_pixel_guard_is_segmented_with_max_pixels(tmp_path, model):
    """12000x9000 (108 MP), as some phone cameras take: refused at the default 100 MP, with the way out
    named; accepted when max_pixels is raised, and its mask is full size."""
    Image.new("RGB", (12000, 9000), (90, 120, 80)).save(tmp_path / "phone.jpg", quality=70)
    with pytest.raises(ImageLoadError, match="max_pixels="):
        handseg.segment(tmp_path / "phone.jpg", model)
    result = handseg.segment(tmp_path / "phone.jpg", model, max_pixels=120_000_000)
    assert result.mask.shape == (9000, 12000)
    assert result.image.shape == (9000, 12000, 3)  # the full decode obeys the raised limit too


def test_file_objects_are_images_too(sample_photos, model):
    """open(path, "rb") and io.BytesIO (an upload's stream) work like the path and the bytes, and the
    full image is still there afterwards (the stream is read once)."""
    import io

    data = sample_photos[0].read_bytes()
    reference = handseg.segment(data, model)
    with open(sample_photos[0], "rb") as f:
        from_file = handseg.segment(f, model)
    from_buffer = handseg.segment(io.BytesIO(data), model)
    assert np.array_equal(from_file.mask, reference.mask) and np.array_equal(from_buffer.mask, reference.mask)
    assert from_buffer.image.shape == (*reference.mask.shape, 3)
    with open(sample_photos[0]) as text, pytest.raises(ImageLoadError):
        handseg.segment(text, model)
