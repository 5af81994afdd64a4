"""Video in, mask or overlay video out, on a short clip made from real photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import handseg
from tests.conftest import run_cli, write_clip

av = pytest.importorskip("av", reason='needs the video extra: pip install "handseg[video]"')
from handseg.video import VideoError, segment_video  # noqa: E402


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_photos):
    """12 frames (320x240, 10 frames/s) panning over a real photo."""
    photo = np.array(Image.open(sample_photos[3]).convert("RGB").resize((400, 300)))
    return write_clip(tmp_path_factory.mktemp("video") / "clip.mp4", photo, 12)


def read_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_mask_video(tmp_path, clip, tiny_model_dir):
    stats = segment_video(clip, tmp_path / "masks.mp4", tiny_model_dir)
    assert stats.frames == 12 and stats.fps > 0
    frames = read_frames(tmp_path / "masks.mp4")
    source = read_frames(clip)
    assert len(frames) == 12 and frames[0].shape == (240, 320, 3)
    # Each output frame is the mask of the matching input frame (up to video compression).
    expected = handseg.segment(source[5], tiny_model_dir).mask
    got = frames[5].mean(axis=2) > 127
    assert (got == expected).mean() > 0.97


@pytest.mark.slow
def test_overlay_video_via_cli(tmp_path, clip, tiny_model_dir):
    done = run_cli("video", "-i", clip, "-o", tmp_path / "o.mp4", "--overlay", "--model", tiny_model_dir)
    assert done.returncode == 0, done.stderr
    assert "12 frames" in done.stdout and "frames/s" in done.stdout
    assert len(read_frames(tmp_path / "o.mp4")) == 12
    # `handseg video` takes videos only (`handseg segment` takes both); the same flags as segment
    photo = tmp_path / "photo.png"
    Image.fromarray(read_frames(tmp_path / "o.mp4")[0]).save(photo)
    done = run_cli("video", "-i", clip, photo, "-o", tmp_path / "out", "--model", tiny_model_dir, "--max-side", "64")
    assert done.returncode == 2 and f"not a video: {photo}" in done.stderr
    assert not (tmp_path / "out").exists()


def test_broken_video(tmp_path, tiny_model_dir):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(VideoError, match="bad.mp4"):
        segment_video(tmp_path / "bad.mp4", tmp_path / "out.mp4", tiny_model_dir)
