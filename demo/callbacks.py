"""What the app's buttons do. Plain functions over files and arrays, each running a
`handseg.Segmenter` it is given; the Gradio layout lives in demo/ui.py. Unusable input raises
gr.Error with the reason."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

import handseg
from handseg.metrics import score
from handseg.visualize import error_map, hand_color, mask_to_image, overlay

#: Images shown in the page are down-scaled to this; downloads stay full size.
DISPLAY_MAX_SIDE = 1600
#: Batch uploads: at most this many images, and this many bytes unpacked from zips.
BATCH_MAX_FILES = 500
BATCH_MAX_UNPACKED_BYTES = 1 << 30


def user_error(message: str) -> gr.Error:
    """An error for the person using the page: shown to them, and one line in the server log
    (a bad upload is the user's mistake, not the server's, so no traceback)."""
    print(f"handseg app: request refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)


def _display(rgb: np.ndarray) -> np.ndarray:
    return handseg.resize_rgb(rgb, handseg.working_size(*rgb.shape[:2], max_side=DISPLAY_MAX_SIDE))


def _segment(segmenter: handseg.Segmenter, image, **options) -> handseg.Segmentation:
    """Segment the uploaded file as the command line and `handseg.segment(path)` do: the same file gives
    the same mask everywhere (a JPEG is read through the same reduced decode; `result.image`, the full
    photo the page shows, is decoded on first use)."""
    if image is None:
        raise user_error("Upload a photo first (or paste one, or take a webcam snapshot).")
    try:
        return segmenter(image, **options)
    except handseg.ImageLoadError as exc:
        message = _without_temp_dir(str(exc), image)
        name = Path(image).name if isinstance(image, (str, Path)) else None
        if name and name not in message:
            message = f"{name}: {message}"
        raise user_error(f"Cannot use this file: {message}") from None
    except handseg.CRFUnavailableError as exc:
        raise user_error(str(exc)) from None


def _without_temp_dir(message: str, image) -> str:
    """Name an upload by its file name, not by the server's temporary path."""
    if isinstance(image, (str, Path)):
        return message.replace(str(image), Path(image).name)
    return message


#: Results are written here, one fresh folder per request, and served as they are (see
#: gr.set_static_paths in demo/ui.py). Gradio's own cache names files by their content, so two
#: requests with identical results rewrite one file while it is being sent (seen under load).
RESULTS_DIR = Path(tempfile.gettempdir()) / "handseg-app-results"
RESULTS_MAX_AGE_S = 3600


def _work_dir() -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    cutoff = time.time() - RESULTS_MAX_AGE_S
    for old in RESULTS_DIR.iterdir():
        with contextlib.suppress(FileNotFoundError):  # another request may be cleaning up too
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=RESULTS_DIR))


def _image_file(folder: Path, name: str, rgb: np.ndarray) -> str:
    """A display image as a file of this request's own (WebP: small and quick to encode)."""
    path = folder / f"{name}.webp"
    Image.fromarray(_display(rgb)).save(path, quality=90)
    return str(path)


def _name(image) -> str:
    return Path(image).name if isinstance(image, (str, Path)) else "photo.png"


def segment_photo(
    segmenter: handseg.Segmenter,
    image,
    threshold: float,
    crf: bool,
    max_side: int,
    color: str,
    opacity: float,
    verify: bool = True,
):
    """-> (before/after pair, overlay, mask PNG path, stats markdown, hands picture: each hand in its own
    colour with its skeleton and L or R). `verify`: confirmed hands only (the default), or the raw mask."""
    started = time.perf_counter()
    at_size = segmenter.with_working_size(max_side=int(max_side) or None)  # the slider's 0: full size
    at_size = at_size.with_verify(bool(verify))
    result = _segment(at_size, image, threshold=threshold, crf=crf)
    elapsed_ms = (time.perf_counter() - started) * 1000
    tinted = result.overlay(color=color or handseg.visualize.DEFAULT_OVERLAY_COLOR, opacity=opacity)
    folder = _work_dir()
    (mask_path,) = result.save(folder / handseg.output_names([_name(image)])[0])
    h, w = result.mask.shape
    stats = (
        f"**Hand area {100 * result.hand_fraction:.1f} %** · image {w}×{h} px · "
        f"{elapsed_ms:.0f} ms (decode to full-size mask{', CRF' if crf else ''}; {_how_it_ran(segmenter)})"
        f"\n\n{_hands_markdown(result)}"
    )
    before, after = _image_file(folder, "photo", result.image), _image_file(folder, "overlay", tinted)
    return (before, after), after, str(mask_path), stats, _image_file(folder, "hands", result.plot(opacity))


def _hands_markdown(result: handseg.Segmentation) -> str:
    """One line per hand, in the colour the hands picture gives it: its colour, left or right, how sure,
    how many pixels."""
    if result.detected is None:
        return ""
    lines = [] if result.hands else ["No hand found."]
    for number, hand in enumerate(result.hands, start=1):
        name, (r, g, b) = hand_color(number - 1, hand.handedness)
        swatch = f'<span style="color: rgb({r}, {g}, {b})">■</span> {name}'
        how = "confirmed on the mask" if hand.confirmed else "presence"
        lines.append(f"{number}. {swatch}: **{hand.handedness}** hand ({how} {hand.score:.2f}): {hand.pixels} px")
    if (unexplained := result.unexplained) is not None and unexplained.any():
        name, (r, g, b) = hand_color(len(result.hands), None)
        swatch = f'<span style="color: rgb({r}, {g}, {b})">■</span> {name}'
        lines.append(f"{swatch}: marked, but no hand found or confirmed there: {int(unexplained.sum())} px")
    return "\n".join(lines)


def _how_it_ran(segmenter: handseg.Segmenter) -> str:
    """The backend and the CPU threads it runs with, as read back from it."""
    threads = segmenter.runner_threads()
    return f"{segmenter.backend}, {threads} thread{'s' if threads != 1 else ''}" if threads else segmenter.backend


def _scores_markdown(title: str, result: handseg.Segmentation, truth: np.ndarray | None) -> str:
    text = f"**{title}** · hand area {100 * result.hand_fraction:.1f} %"
    if truth is None:
        return text + "\n\nUpload a ground-truth mask to see dice, IoU, precision and recall."
    s = score(result.mask, truth)
    return (
        text
        + "\n\n| dice | IoU | precision | recall |\n|---:|---:|---:|---:|\n"
        + f"| {s.dice:.3f} | {s.iou:.3f} | {s.precision:.3f} | {s.recall:.3f} |"
    )


def compare(
    models: dict[str, handseg.Segmenter],
    image,
    truth_image,
    threshold: float,
    model_a: str,
    crf_a: bool,
    model_b: str,
    crf_b: bool,
):
    """Two settings side by side, each with metrics and an error map when a truth mask is given.
    A model name left empty means the app's main model.

    -> (overlay A, error map A, markdown A, overlay B, error map B, markdown B)."""
    truth = None
    if truth_image is not None:
        try:
            truth = handseg.load_mask(truth_image)
        except handseg.ImageLoadError as exc:
            raise user_error(f"Cannot use the truth mask: {_without_temp_dir(str(exc), truth_image)}") from None
    outputs = []
    folder = _work_dir()
    photo = None  # the full photo, decoded once for both sides' pictures
    for label, name, crf in (("A", model_a, crf_a), ("B", model_b, crf_b)):
        name = name or next(iter(models))  # API callers may leave the model out: the app's main model
        if name not in models:
            raise user_error(f"Unknown model {name!r}; choose one of {', '.join(models)}")
        result = _segment(models[name], image, threshold=threshold, crf=crf)
        if truth is not None and truth.shape != result.mask.shape:
            raise user_error(
                f"The truth mask is {truth.shape[1]}×{truth.shape[0]} px but the photo is "
                f"{result.mask.shape[1]}×{result.mask.shape[0]} px; they must match."
            )
        title = f"{label}: {name}{' + CRF' if crf else ''}"
        photo = result.image if photo is None else photo
        errors = error_map(result.mask, truth, photo) if truth is not None else None
        outputs += [
            _image_file(folder, f"{label}_overlay", overlay(photo, result.mask)),  # the one photo decoded once
            _image_file(folder, f"{label}_errors", errors) if errors is not None else None,
            _scores_markdown(title, result, truth),
        ]
    return tuple(outputs)


def _batch_inputs(files: list) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """(name, image source) for every upload and every image inside uploaded zips; plus (name, problem)."""
    items: list[tuple[str, object]] = []
    problems: list[tuple[str, str]] = []
    for f in files or []:
        path = Path(f if isinstance(f, (str, Path)) else f.name)
        if path.suffix.lower() != ".zip":
            items.append((path.name, str(path)))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                unpacked = sum(m.file_size for m in members)
                if unpacked > BATCH_MAX_UNPACKED_BYTES:
                    problems.append((path.name, f"zip unpacks to {unpacked / 1e9:.1f} GB, over the 1 GB limit"))
                    continue
                for member in members:
                    name = Path(member.filename).name
                    if Path(name).suffix.lower() in handseg.IMAGE_FILE_SUFFIXES and not name.startswith("."):
                        items.append((name, archive.read(member)))
        except zipfile.BadZipFile:
            problems.append((path.name, "not a readable zip file"))
    if len(items) > BATCH_MAX_FILES:
        raise user_error(f"{len(items)} images is more than the {BATCH_MAX_FILES} a batch may hold; split it.")
    return items, problems


def batch(segmenter: handseg.Segmenter, files: list, threshold: float, crf: bool, progress=None):
    """Masks for many images (files and zips) -> (zip of masks, markdown report). Bad files are listed."""
    items, problems = _batch_inputs(files)
    if not items and not problems:
        raise user_error("Upload some images, or a zip of images.")
    out_zip = _work_dir() / "handseg_masks.zip"
    done = 0
    out_names = handseg.output_names([name for name, _ in items])  # as handseg segment -o FOLDER names them
    with zipfile.ZipFile(out_zip, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for outcome in segmenter.run((source for _, source in items), threshold=threshold, crf=crf):
            name = items[outcome.index][0]
            if progress is not None:
                progress((outcome.index + 1) / len(items), desc=f"{outcome.index + 1}/{len(items)}: {name}")
            if outcome.error is not None:
                problems.append((name, outcome.reason))
                continue
            archive.writestr(out_names[outcome.index], handseg.png_bytes(mask_to_image(outcome.result.mask)))
            done += 1
    report = f"**{done} of {len(items)} images segmented.**"
    if problems:
        report += "\n\n| file | problem |\n|---|---|\n" + "\n".join(
            f"| {name} | {why.replace('|', '/')} |" for name, why in problems
        )
    return str(out_zip), report


def live_frame(segmenter: handseg.Segmenter, frame: np.ndarray | None, last: float | None, max_side: int = 256):
    """One webcam frame -> (overlay, frames-per-second text, time of this frame)."""
    if frame is None:
        return None, "", last
    result = segmenter.with_working_size(max_side=max_side)(frame)
    now = time.perf_counter()
    fps = f"{1 / (now - last):.1f} frames/s" if last else "starting…"
    return result.overlay(), fps, now
