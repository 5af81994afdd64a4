"""Image files in and out: any file, bytes, PIL image or array -> RGB uint8 in displayed orientation
(`load_image`, `decode`), masks read (`load_mask`) and pictures written losslessly (`save_image`).

How large the network sees an image, and everything else between a photo and the network, is
`handseg.processing`'s.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

#: Decompression-bomb guard: larger images are refused before their pixels are
#: decoded. 100 MP admits 8000x6000 photos (48 MP) with room to spare.
MAX_PIXELS = 100_000_000

#: File name endings treated as images when scanning folders and archives.
IMAGE_FILE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})

#: Endings a mask cannot be saved with: JPEG is lossy, and blurs a 0/255 mask's edges into grey levels.
LOSSY_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg"})
#: The PNG "Software" text that marks images handseg wrote, so a re-run on a folder can tell them from photos.
WRITTEN_BY = "handseg"

#: A path, encoded bytes, a binary file object (open(..., "rb"), io.BytesIO), a PIL image or an array.
ImageInput = str | Path | bytes | io.IOBase | Image.Image | np.ndarray


class ImageLoadError(ValueError):
    """The input is not a usable image: unreadable, truncated, empty, too large or of an odd type.

    `str(error)` is "<source>: <reason>" (the file's name, or "image" for bytes); `reason` alone is for
    lists that name the file already (a failures CSV, a batch report)."""

    def __init__(self, reason: str, source: str | None = None) -> None:
        self.reason, self.source = reason, source
        super().__init__(f"{source}: {reason}" if source else reason)

    def __reduce__(self):  # pickled whole (worker processes), not from str(self) alone
        return type(self), (self.reason, self.source)


def load_image(source: ImageInput, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return `source` as an RGB uint8 array (H, W, 3) in its displayed orientation.

    Accepts a path, encoded bytes, a binary file object, a PIL image or an array. EXIF orientation is
    applied; greyscale, palette, CMYK and 16-bit images are converted; alpha is
    composited onto black. Raises ImageLoadError for anything else.
    """
    rgb, _ = decode(source, max_pixels=max_pixels)
    return rgb


def decode(
    source: ImageInput, *, max_pixels: int, shrink_to: Callable[[int, int], tuple[int, int]] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB array, full displayed (height, width)). With `shrink_to`, a JPEG file or bytes may be
    decoded smaller, but never below shrink_to(full height, full width); one decoded smaller comes back
    resized to that size (`resize_rgb`'s filter), before it becomes an array."""
    if isinstance(source, np.ndarray):
        rgb = _array_to_rgb(source)
        return rgb, rgb.shape[:2]
    name = "image"
    if isinstance(source, (str, Path)):
        name = str(source)
        if not Path(source).is_file():
            raise ImageLoadError("no such file", name)
        if Path(source).stat().st_size == 0:
            raise ImageLoadError("the file is empty (0 bytes)", name)
        opener = lambda: Image.open(source)  # noqa: E731
    elif isinstance(source, bytes):
        if not source:
            raise ImageLoadError("no bytes given", "image")
        opener = lambda: Image.open(io.BytesIO(source))  # noqa: E731
    elif isinstance(source, io.IOBase):
        data = read_file_object(source)
        opener = lambda: Image.open(io.BytesIO(data))  # noqa: E731
    elif isinstance(source, Image.Image):
        opener = lambda: source  # noqa: E731
        shrink_to = None  # draft mode would change the caller's own image object
    else:
        raise ImageLoadError(f"unsupported image input of type {type(source).__name__}")

    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = opener()
            width, height = img.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    f"{width}x{height} is {width * height / 1e6:.0f} megapixels, more than the "
                    f"{max_pixels / 1e6:.0f} MP limit, a guard against decompression bombs; for a larger photo "
                    "raise it with max_pixels= (Python) or --max-pixels (handseg segment)",
                    name,
                )
            if width == 0 or height == 0:
                raise ImageLoadError(f"image has no pixels ({width}x{height})", name)
            # EXIF orientations 5-8 turn the stored image by 90 degrees.
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
            turned = orientation in (5, 6, 7, 8)
            full_size = (width, height) if turned else (height, width)
            if shrink_to is not None and isinstance(img, JpegImagePlugin.JpegImageFile):  # also MPO (phones)
                target_h, target_w = shrink_to(*full_size)
                img.draft(img.mode, (target_h, target_w) if turned else (target_w, target_h))
            if orientation != 1:  # exif_transpose copies even an upright image: a copy per photo saved
                img = ImageOps.exif_transpose(img)
            img.load()
            if shrink_to is not None and img.mode == "RGB" and img.size[::-1] != full_size:
                # Decoded smaller: resized here, not as an array, saves two copies of the decoded image.
                img = _resized(img, shrink_to(*full_size))
            return _pil_to_rgb(img), full_size
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"refused as a possible decompression bomb ({exc})", name) from None
    except UnidentifiedImageError:
        raise ImageLoadError("not an image file in any format Pillow can read", name) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"the image data is broken or truncated ({exc})", name) from None


def read_file_object(source: io.IOBase) -> bytes:
    """All bytes of a binary file object (open(..., "rb"), io.BytesIO, an upload's stream)."""
    name = getattr(source, "name", None)
    name = name if isinstance(name, str) else "image"
    try:
        data = source.read()
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"cannot read the file object ({exc})", name) from None
    if not isinstance(data, bytes):
        raise ImageLoadError("a file object opened in text mode; open it with 'rb'", name)
    if not data:
        raise ImageLoadError("no bytes to read (empty, or already read to its end)", name)
    return data


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(img))
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info):
        return _array_to_rgb(np.asarray(img.convert("RGBA")))
    return np.array(img.convert("RGB"))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """Arrays: (H, W), (H, W, 1|3|4); uint8, uint16, bool or float in [0, 1] (or [0, 255])."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageLoadError(f"array of shape {a.shape} is not an image: expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageLoadError(f"array of shape {a.shape} has no pixels")
    a = _to_uint8(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[..., 3:].astype(np.uint16)
        a = (a[..., :3] * alpha // 255).astype(np.uint8)
    if not a.flags.writeable or not a.flags.c_contiguous:
        a = np.array(a)  # torch and pydensecrf need writable, contiguous memory
    return a


def _to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageLoadError("float image contains NaN or infinity")
        scale = 255.0 if a.max() <= 1.0 else 1.0
        return np.clip(a * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        # 16-bit data (uint16, or Pillow's 32-bit "I" mode holding 16-bit values)
        if (a.dtype.kind == "u" and a.dtype.itemsize == 2) or a.max() > 255:
            return np.clip(a.astype(np.float32) / 257.0, 0, 255).round().astype(np.uint8)
        return np.clip(a, 0, 255).astype(np.uint8)
    raise ImageLoadError(f"unsupported array dtype {a.dtype}")


def load_mask(source: ImageInput) -> np.ndarray:
    """Read a binary mask (0/255 or 0/1 greyscale, or any image) as a bool array (H, W)."""
    if isinstance(source, np.ndarray) and source.dtype == bool:
        return source
    grey = load_image(source).max(axis=2)
    return grey > (0 if grey.max() <= 1 else 127)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize RGB uint8 (H, W, 3) to `size` = (h, w); area-aware bilinear, a no-op at the same size."""
    if size == rgb.shape[:2]:
        return rgb
    return np.array(_resized(Image.fromarray(rgb), size))


def _resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` resized to `size` = (h, w) with Pillow's bilinear filter: the one resize of the working image,
    which the shipped models were trained and measured with."""
    return img.resize((size[1], size[0]), Image.BILINEAR)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask (H, W), or a float32 map, to `size` = (h, w), nearest neighbour; a no-op at the
    same size."""
    if size == mask.shape[:2]:
        return mask
    return np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST))


def lossy_suffix_problem(path: str | Path) -> str | None:
    """Why a mask cannot be saved at `path` (a lossy format), or None when it can."""
    if Path(path).suffix.lower() in LOSSY_IMAGE_SUFFIXES:
        return "JPEG is lossy and would blur the mask's 0/255 edges into grey levels"
    return None


def save_image(picture: np.ndarray, path: str | Path, *, into: str | Path | None = None) -> Path:
    """Save a mask (uint8 (H, W)) or picture (uint8 (H, W, 3)) losslessly, marked as written by handseg.

    The format follows the extension; JPEG is refused (ValueError) because it is lossy, WebP is written
    in its lossless mode, and PNGs carry `Software: handseg` (see `written_by_handseg`). The file is
    written under a temporary name beside `path` and renamed when complete, so an interrupted run
    never leaves half a file (nor harms one already at `path`). `into`: write exactly there instead (a
    temporary name of `whole_files`, which renames several files together); the format is still `path`'s."""
    path = Path(path)
    suffix = path.suffix.lower()
    if problem := lossy_suffix_problem(path):
        raise ValueError(f"{path.name}: {problem}; use .png")
    image = Image.fromarray(picture)
    options: dict = {"format": Image.registered_extensions().get(suffix)}
    if options["format"] is None:
        raise ValueError(f"{path.name}: {suffix or 'no extension'} is not an image format Pillow writes; use .png")
    if suffix == ".png":
        options["pnginfo"] = PngInfo()
        options["pnginfo"].add_text("Software", WRITTEN_BY)
    elif suffix == ".webp":
        options["lossless"] = True
    if into is not None:
        image.save(into, **options)
        return path
    with whole_file(path) as partial:
        image.save(partial, **options)
    return path


def png_bytes(picture: np.ndarray) -> bytes:
    """A mask (uint8 (H, W)) or picture (uint8 (H, W, 3)) encoded as PNG, in memory (for a dataset
    column, a zip member or a web response; `save_image` writes files)."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def refuse_overwriting(paths: Iterable[str | Path], *, overwrite: bool, choice: str = "overwrite=True") -> None:
    """Nothing a user owns is replaced without asking: a FileExistsError naming the first of `paths` that
    exists (its `filename`), and the `choice` that replaces it, unless `overwrite`."""
    if overwrite:
        return
    for path in paths:
        if Path(path).exists() or Path(path).is_symlink():
            raise OutputExistsError(path, choice)


class OutputExistsError(FileExistsError):
    """An output that exists already, refused; `path` is it (a front end may say the choice its own way)."""

    def __init__(self, path: str | Path, choice: str) -> None:
        super().__init__(exists_message(path, choice))
        self.path = Path(path)


def exists_message(path: str | Path, choice: str) -> str:
    """The one line that refuses to write over `path`, and what replaces it (`choice`)."""
    return f"{path} exists already; handseg does not overwrite without asking: {choice}"


@contextlib.contextmanager
def whole_file(path: str | Path) -> Iterator[Path]:
    """A temporary name beside `path` to write to, renamed to `path` when the block ends (removed if it
    fails): an interrupted run never leaves half a file, nor harms one already at `path`. The file is new
    like any other, so the user's umask applies."""
    with whole_files([path]) as (partial,):
        yield partial


@contextlib.contextmanager
def whole_files(paths: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Temporary names beside `paths` to write to, all renamed to `paths` together when the block ends,
    with Ctrl-C held back during the renames (all removed if the block fails): files that belong
    together, such as a photo's mask, overlay and hands, are all there or none is."""
    finals = [Path(p) for p in paths]
    # Hidden, marked as unfinished, and with the final extension, which some writers read (FFmpeg's container).
    partials = [p.with_name(f".{p.stem}.{os.getpid()}.partial{p.suffix}") for p in finals]
    try:
        yield partials
        with interrupts_held_back():
            for partial, final in zip(partials, finals):
                os.replace(partial, final)
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


@contextlib.contextmanager
def interrupts_held_back() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block takes effect when it ends, so a few quick steps that belong
    together are all done. Only the main thread receives signals; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        signal.raise_signal(signal.SIGINT)  # to the handler that was there before


def written_by_handseg(path: str | Path) -> bool:
    """Whether `path` is a PNG that handseg saved (its `Software` text, read from the header only)."""
    if Path(path).suffix.lower() != ".png":
        return False
    try:
        with Image.open(path) as image:
            return image.info.get("Software") == WRITTEN_BY
    except (OSError, SyntaxError, ValueError):
        return False
