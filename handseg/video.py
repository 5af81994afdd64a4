"""Video in, mask or overlay video out, frames streamed (never all in memory).

Uses PyAV (`pip install "handseg[video]"`), whose wheels carry FFmpeg. Frames go through a
`handseg.Segmenter`, the path every image takes. The output is written to a temporary file beside
the target and renamed when complete, so a failed or interrupted run never leaves half a video
(nor touches a file already at the target).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handseg.image import whole_file
from handseg.jobs import VIDEO_SUFFIXES, refuse_writing_over_inputs
from handseg.processing import DEFAULT_THRESHOLD
from handseg.results import Segmentation
from handseg.segmenter import ModelInput, Segmenter
from handseg.visualize import mask_to_image

__all__ = ["VIDEO_SUFFIXES", "VideoError", "VideoStats", "iter_video", "segment_video"]


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


def iter_video(
    source: str | Path,
    segmenter: Segmenter,
    *,
    batch_size: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    crf: bool = False,
) -> Iterator[Segmentation]:
    """Each frame of `source`, segmented, in order (`result.image` is the frame)."""
    av = _av()
    try:
        reader = av.open(str(source))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{source}: cannot open as a video ({exc})") from None
    with contextlib.closing(reader):
        if not reader.streams.video:
            raise VideoError(f"{source}: has no video stream")
        stream = reader.streams.video[0]

        def frames() -> Iterator[np.ndarray]:
            try:
                for frame in reader.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
            except av.error.FFmpegError as exc:
                raise VideoError(f"{source}: broken video data ({exc})") from None

        # track: each frame's hands are looked for where the last frame's were (MediaPipe's video mode).
        results = segmenter.iter_segment(frames(), batch_size=batch_size, threshold=threshold, crf=crf, track=True)
        for index, result in results:
            if isinstance(result, Exception):
                raise VideoError(f"{source}: frame {index}: {result}")
            yield result


def segment_video(
    source: str | Path,
    target: str | Path,
    segmenter: Segmenter | ModelInput = None,
    *,
    as_overlay: bool = False,
    batch_size: int | None = None,
    progress: bool = False,
    threshold: float = DEFAULT_THRESHOLD,
    crf: bool = False,
) -> VideoStats:
    """Write a video of masks (white hands on black) or overlays, at the source's frame rate.
    `segmenter`: a Segmenter, or a model to build one with its defaults."""
    av = _av()
    if not isinstance(segmenter, Segmenter):
        segmenter = Segmenter(segmenter)
    source, target = Path(source), Path(target)
    try:
        refuse_writing_over_inputs([source], [target])
    except ValueError as exc:
        raise VideoError(str(exc)) from None
    try:
        with av.open(str(source)) as probe:
            rate = probe.streams.video[0].average_rate if probe.streams.video else None
            total = probe.streams.video[0].frames if probe.streams.video else 0
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"{source}: cannot open as a video ({exc})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total or None, unit="frame")
    count = 0
    started = time.perf_counter()
    try:
        with whole_file(target) as partial, av.open(str(partial), mode="w") as writer:
            out_stream = None
            for result in iter_video(source, segmenter, batch_size=batch_size, threshold=threshold, crf=crf):
                mask = mask_to_image(result.mask)
                picture = result.overlay() if as_overlay else np.repeat(mask[..., None], 3, axis=2)
                if out_stream is None:
                    out_stream = _open_output_stream(writer, rate or 25, picture.shape[1], picture.shape[0])
                for packet in out_stream.encode(av.VideoFrame.from_ndarray(_even(picture), format="rgb24")):
                    writer.mux(packet)
                count += 1
                if bar:
                    bar.update()
            if out_stream is not None:
                for packet in out_stream.encode():
                    writer.mux(packet)
            if count == 0:
                raise VideoError(f"{source}: no frames decoded")
    finally:
        if bar:
            bar.close()
    return VideoStats(frames=count, seconds=time.perf_counter() - started)


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
