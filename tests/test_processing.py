"""Between a photo and the network (`handseg.processing`): the working size, the reduced JPEG decode, the
model's input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from handseg import load_image, load_working_image, resize_rgb, to_model_input, working_size


def test_working_size():
    assert working_size(1280, 1918, scale=0.5) == (640, 959)
    assert working_size(6000, 8000, max_side=1024) == (768, 1024)
    assert working_size(100, 50, max_side=1024) == (100, 50)  # never up-sampled
    assert working_size(3, 3000, max_side=100) == (1, 100)
    with pytest.raises(ValueError):
        working_size(10, 10, scale=0)


def test_large_jpeg_is_decoded_only_as_large_as_the_network_needs(gtea_frame):
    loaded = load_working_image(gtea_frame, max_side=512)
    assert loaded.full_size == (1280, 1918)
    assert loaded.full is None  # the reduced DCT decode was enough
    reference = resize_rgb(load_image(gtea_frame), working_size(1280, 1918, max_side=512))
    assert loaded.small.shape == reference.shape == (342, 512, 3)
    # A reduced decode is not bit-identical to decode-then-resize, but close (about 0.3 levels of 255).
    assert np.abs(loaded.small.astype(int) - reference).mean() < 1.0
    same_from_bytes = load_working_image(gtea_frame.read_bytes(), max_side=512)
    assert np.array_equal(same_from_bytes.small, loaded.small)


def test_phone_mpo_jpeg_is_decoded_reduced_too(tmp_path, gtea_frame):
    """Phone cameras write MPO (JPEG with extra pictures); Pillow opens it as its own format."""
    frame = Image.open(gtea_frame)
    frame.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[frame.resize((640, 427))])
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    loaded = load_working_image(tmp_path / "phone.jpg", max_side=512)
    assert loaded.full is None and loaded.full_size == (1280, 1918) and loaded.small.shape == (342, 512, 3)


def test_reduced_decode_respects_exif_rotation(tmp_path, gtea_frame):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": a phone held upright
    Image.open(gtea_frame).save(tmp_path / "phone.jpg", exif=exif, quality=90)
    loaded = load_working_image(tmp_path / "phone.jpg", max_side=512)
    full = load_image(tmp_path / "phone.jpg")
    assert full.shape[:2] == loaded.full_size == (1918, 1280)
    reference = resize_rgb(full, working_size(1918, 1280, max_side=512))
    assert loaded.small.shape == reference.shape == (512, 342, 3)
    assert np.abs(loaded.small.astype(int) - reference).mean() < 1.5


def test_working_image_of_non_jpeg_and_small_inputs_keeps_the_full_decode(tmp_path, gtea_frame, photo):
    Image.open(gtea_frame).save(tmp_path / "frame.png")
    png = load_working_image(tmp_path / "frame.png", max_side=512)
    assert png.full is not None and np.array_equal(png.full, load_image(tmp_path / "frame.png"))
    assert np.array_equal(png.small, resize_rgb(png.full, (342, 512)))
    at_own_size = load_working_image(gtea_frame, max_side=None)
    assert at_own_size.full is not None and at_own_size.small is at_own_size.full
    given = Image.open(gtea_frame)
    load_working_image(given, max_side=512)
    assert given.size == (1918, 1280)  # a caller's own PIL image is never switched to draft mode
    assert load_working_image(photo, max_side=512).full is photo


def test_model_input_scaling(photo):
    small = resize_rgb(photo, (30, 20))
    assert small.shape == (30, 20, 3)
    x = to_model_input(photo)
    assert x.shape == (3, *photo.shape[:2])
    assert float(x.max()) <= 1.0 and abs(float(x[0, 5, 7]) - photo[5, 7, 0] / 255) < 1e-6
