"""Loading any image the way a user's files come: modes, bit depths, EXIF, sizes, bad files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from handseg import ImageLoadError, load_image, load_mask


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
