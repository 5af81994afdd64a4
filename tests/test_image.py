"""Loading any image the way a user's files come: modes, bit depths, EXIF, sizes, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from handseg import ImageLoadError, load_image, load_mask
from handseg.image import resize_rgb
from handseg.processing import load_working_image, to_model_input, working_size


@pytest.fixture(scope="module")
def photo(sample_photos) -> np.ndarray:
    return np.array(Image.open(sample_photos[1]).convert("RGB"))  # an HGR photo, 400x604


def test_real_photos_load_as_rgb(sample_photos):
    for path in sample_photos:
        rgb = load_image(path)
        with Image.open(path) as img:
            assert rgb.shape == (img.height, img.width, 3)
        assert rgb.dtype == np.uint8 and rgb.flags.writeable


def test_same_pixels_from_path_bytes_pil_and_array(sample_photos):
    path = sample_photos[0]
    reference = load_image(path)
    assert np.array_equal(load_image(path.read_bytes()), reference)
    assert np.array_equal(load_image(Image.open(path)), reference)
    assert np.array_equal(load_image(reference), reference)
    assert np.array_equal(load_image(str(path)), reference)


def test_rgba_is_composited_on_black(tmp_path, photo):
    alpha = np.zeros(photo.shape[:2], np.uint8)
    alpha[:, : photo.shape[1] // 2] = 255
    Image.fromarray(np.dstack([photo, alpha])).save(tmp_path / "rgba.png")
    rgb = load_image(tmp_path / "rgba.png")
    half = photo.shape[1] // 2
    assert np.array_equal(rgb[:, :half], photo[:, :half])
    assert not rgb[:, half:].any()


def test_greyscale_and_palette(tmp_path, photo):
    Image.fromarray(photo).convert("L").save(tmp_path / "grey.png")
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == photo.shape and np.array_equal(grey[..., 0], grey[..., 2])
    Image.fromarray(photo).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    pal = load_image(tmp_path / "pal.png")
    assert pal.shape == photo.shape
    assert np.abs(pal.astype(int) - photo).mean() < 12  # a 256-colour palette is close to the photo


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_is_scaled_to_8_bit(tmp_path, photo, suffix):
    grey8 = np.array(Image.fromarray(photo).convert("L"))
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / f"deep{suffix}")
    with Image.open(tmp_path / f"deep{suffix}") as img:
        assert img.mode.startswith("I")  # really a 16-bit file
    rgb = load_image(tmp_path / f"deep{suffix}")
    assert np.array_equal(rgb[..., 0], grey8)


def test_16_bit_array():
    a = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    assert load_image(a)[..., 1].tolist() == [[0, 255], [100, 200]]


def test_cmyk_jpeg(tmp_path, photo):
    Image.fromarray(photo).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rgb = load_image(tmp_path / "cmyk.jpg")
    assert rgb.shape == photo.shape
    assert np.abs(rgb.astype(int) - photo).mean() < 6


def test_exif_rotation_gives_displayed_orientation(tmp_path, photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    stored = np.array(Image.open(tmp_path / "phone.jpg").convert("RGB"))
    shown = load_image(tmp_path / "phone.jpg")
    assert shown.shape == (photo.shape[1], photo.shape[0], 3)
    assert np.array_equal(shown, np.rot90(stored, k=-1))


def test_tiny_and_large(tmp_path, photo):
    assert load_image(photo[:16, :16]).shape == (16, 16, 3)
    big = Image.fromarray(photo).resize((8000, 6000))
    big.save(tmp_path / "big.jpg", quality=80)
    assert load_image(tmp_path / "big.jpg").shape == (6000, 8000, 3)


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("this is not a photo")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "notes.jpg")


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty"):
        load_image(tmp_path / "empty.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_truncated_file(tmp_path, sample_photos):
    data = sample_photos[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_decompression_bomb(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")  # 400 MP, a few kB on disk
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(tmp_path / "bomb.png")


def test_own_pixel_limit(sample_photos):
    with pytest.raises(ImageLoadError, match="megapixels"):
        load_image(sample_photos[0], max_pixels=1000)


@pytest.mark.parametrize("bad", [np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros(7)])
def test_bad_arrays(bad):
    with pytest.raises(ImageLoadError):
        load_image(bad)


def test_unsupported_type():
    with pytest.raises(ImageLoadError, match="unsupported"):
        load_image(12345)  # type: ignore[arg-type]


def test_load_mask_accepts_0_255_and_0_1(tmp_path, data_dir):
    mask_path = next((data_dir / "hgr" / "masks").iterdir())
    mask = load_mask(mask_path)
    raw = np.array(Image.open(mask_path))
    assert mask.dtype == bool and np.array_equal(mask, raw > 127)
    Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "zero_one.png")  # GTEA_gaze style 0/1
    assert np.array_equal(load_mask(tmp_path / "zero_one.png"), mask)


def test_working_size():
    assert working_size(1280, 1918, scale=0.5) == (640, 959)
    assert working_size(6000, 8000, max_side=1024) == (768, 1024)
    assert working_size(100, 50, max_side=1024) == (100, 50)  # never up-sampled
    assert working_size(3, 3000, max_side=100) == (1, 100)
    with pytest.raises(ValueError):
        working_size(10, 10, scale=0)


@pytest.fixture(scope="module")
def frame_jpeg(tmp_path_factory, sample_photos):
    """A real photo as a 1918x1280 JPEG, the original project's frame size."""
    path = tmp_path_factory.mktemp("frames") / "frame.jpg"
    Image.open(sample_photos[0]).convert("RGB").resize((1918, 1280), Image.BILINEAR).save(path, quality=90)
    return path


def test_large_jpeg_is_decoded_only_as_large_as_the_network_needs(frame_jpeg):
    loaded = load_working_image(frame_jpeg, max_side=512)
    assert loaded.full_size == (1280, 1918)
    assert loaded.full is None  # the reduced DCT decode was enough
    reference = resize_rgb(load_image(frame_jpeg), working_size(1280, 1918, max_side=512))
    assert loaded.small.shape == reference.shape == (342, 512, 3)
    # A reduced decode is not bit-identical to decode-then-resize, but close (about 0.3 levels of 255).
    assert np.abs(loaded.small.astype(int) - reference).mean() < 1.0
    same_from_bytes = load_working_image(frame_jpeg.read_bytes(), max_side=512)
    assert np.array_equal(same_from_bytes.small, loaded.small)


def test_phone_mpo_jpeg_is_decoded_reduced_too(tmp_path, frame_jpeg):
    """Phone cameras write MPO (JPEG with extra pictures); Pillow opens it as its own format."""
    frame = Image.open(frame_jpeg)
    frame.save(tmp_path / "phone.jpg", format="MPO", save_all=True, append_images=[frame.resize((640, 427))])
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    loaded = load_working_image(tmp_path / "phone.jpg", max_side=512)
    assert loaded.full is None and loaded.full_size == (1280, 1918) and loaded.small.shape == (342, 512, 3)


def test_reduced_decode_respects_exif_rotation(tmp_path, frame_jpeg):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": a phone held upright
    Image.open(frame_jpeg).save(tmp_path / "phone.jpg", exif=exif, quality=90)
    loaded = load_working_image(tmp_path / "phone.jpg", max_side=512)
    full = load_image(tmp_path / "phone.jpg")
    assert full.shape[:2] == loaded.full_size == (1918, 1280)
    reference = resize_rgb(full, working_size(1918, 1280, max_side=512))
    assert loaded.small.shape == reference.shape == (512, 342, 3)
    assert np.abs(loaded.small.astype(int) - reference).mean() < 1.5


def test_working_image_of_non_jpeg_and_small_inputs_keeps_the_full_decode(tmp_path, frame_jpeg, photo):
    Image.open(frame_jpeg).save(tmp_path / "frame.png")
    png = load_working_image(tmp_path / "frame.png", max_side=512)
    assert png.full is not None and np.array_equal(png.full, load_image(tmp_path / "frame.png"))
    assert np.array_equal(png.small, resize_rgb(png.full, (342, 512)))
    at_own_size = load_working_image(frame_jpeg, max_side=None)
    assert at_own_size.full is not None and at_own_size.small is at_own_size.full
    given = Image.open(frame_jpeg)
    load_working_image(given, max_side=512)
    assert given.size == (1918, 1280)  # a caller's own PIL image is never switched to draft mode
    assert load_working_image(photo, max_side=512).full is photo


def test_model_input_scaling(photo):
    small = resize_rgb(photo, (30, 20))
    assert small.shape == (30, 20, 3)
    x = to_model_input(photo)
    assert x.shape == (3, *photo.shape[:2])
    assert float(x.max()) <= 1.0 and abs(float(x[0, 5, 7]) - photo[5, 7, 0] / 255) < 1e-6
