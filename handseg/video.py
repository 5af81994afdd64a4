"""Video in, mask or overlay video out, frames streamed (never all in memory).

Uses PyAV (`pip install "handseg[video]"`), whose wheels carry FFmpeg.
Frames go through handseg.inference.iter_segment, the path every image takes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handseg.inference import ModelInput, iter_segment
from handseg.visualize import mask_to_image, overlay

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})


class VideoError(ValueError):
    """A video that cannot be read or written."""


@dataclass
class VideoStats:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _av():
    try:
        import av
    except ImportError:
        raise VideoError('video needs PyAV: pip install "handseg[video]"') from None
    return av


def segment_video(
    source: str | Path,
    target: str | Path,
    model: ModelInput = None,
    *,
    as_overlay: bool = False,
    batch_size: int | None = None,
    progress: bool = False,
    **options,
) -> VideoStats:
    """Write a video of masks (white hands on black) or overlays, at the source's frame rate."""
    av = _av()
    try:
        reader = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{source}: cannot open as a video ({exc})") from None
    if not reader.streams.video:
        reader.close()
        raise VideoError(f"{source}: has no video stream")
    stream = reader.streams.video[0]
    rate = stream.average_rate or 25

    def frames() -> Iterator[np.ndarray]:
        try:
            for frame in reader.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise VideoError(f"{source}: broken video data ({exc})") from None

    Path(target).parent.mkdir(parents=True, exist_ok=True)
    writer = av.open(str(target), mode="w")
    out_stream = None
    count = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stream.frames or None, unit="frame")
    started = time.perf_counter()
    try:
        for _, result in iter_segment(frames(), model, batch_size=batch_size, **options):
            if isinstance(result, Exception):
                raise VideoError(f"{source}: frame {count}: {result}")
            picture = overlay(result.image, result.mask) if as_overlay else _grey_to_rgb(mask_to_image(result.mask))
            if out_stream is None:
                out_stream = _open_output_stream(writer, rate, picture.shape[1], picture.shape[0])
            for packet in out_stream.encode(av.VideoFrame.from_ndarray(_even(picture), format="rgb24")):
                writer.mux(packet)
            count += 1
            if bar:
                bar.update()
        if out_stream is not None:
            for packet in out_stream.encode():
                writer.mux(packet)
    finally:
        writer.close()
        reader.close()
        if bar:
            bar.close()
    if count == 0:
        raise VideoError(f"{source}: no frames decoded")
    return VideoStats(frames=count, seconds=time.perf_counter() - started)


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2)


def _even(picture: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: drop a last odd row/column."""
    h, w = picture.shape[:2]
    return np.ascontiguousarray(picture[: h - h % 2, : w - w % 2])


def _open_output_stream(writer, rate, width: int, height: int):
    for codec in ("libx264", "h264", "mpeg4"):
        try:
            stream = writer.add_stream(codec, rate=rate)
            break
        except Exception:  # this FFmpeg build lacks the codec: try the next
            continue
    else:
        raise VideoError("no H.264 or MPEG-4 encoder in this FFmpeg build")
    stream.width, stream.height = width - width % 2, height - height % 2
    stream.pix_fmt = "yuv420p"
    if stream.codec_context.name in ("libx264", "h264"):
        stream.options = {"crf": "18"}  # masks need sharp edges
    return stream
