"""Nothing a user owns is overwritten without asking, and runs say what happened: `handseg segment` in a
subprocess, as a user runs it, on real photos and a real video."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli, write_clip


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photos(tmp_path, sample_photos) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_photos:
        shutil.copy(path, folder / path.name)
    return folder


def test_an_output_that_is_the_input_is_refused_before_any_work(tmp_path, sample_photos, tiny_model_dir):
    photo = tmp_path / "photo.png"
    Image.open(sample_photos[1]).save(photo)
    before = digest(photo)
    for output in (str(photo), str(tmp_path / "." / "photo.png")):
        done = run_cli("segment", "-i", str(photo), "-o", output, "--model", str(tiny_model_dir), "--overwrite")
        assert done.returncode == 2 and "never writes over its inputs" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    link = tmp_path / "link.png"
    link.symlink_to(photo)
    done = run_cli("segment", "-i", str(photo), "-o", str(link), "--model", str(tiny_model_dir), "--overwrite")
    assert done.returncode == 2 and "never writes over its inputs" in done.stderr
    hard_link = tmp_path / "hard.png"  # the same file under another name
    hard_link.hardlink_to(photo)
    done = run_cli("segment", "-i", str(photo), "-o", str(hard_link), "--model", str(tiny_model_dir), "--overwrite")
    assert done.returncode == 2 and "never writes over its inputs" in done.stderr
    # two inputs, each the other's output
    other = tmp_path / "other.png"
    Image.open(sample_photos[2]).save(other)
    done = run_cli("segment", "-i", str(photo), str(other), "-o", str(other), str(photo), "--model",
                   str(tiny_model_dir), "--overwrite")  # fmt: skip
    assert done.returncode == 2 and "never writes over its inputs" in done.stderr
    assert digest(photo) == before


def test_a_video_output_that_is_the_input_is_refused_and_the_video_kept(tmp_path, sample_photos, tiny_model_dir):
    pytest.importorskip("av", reason='needs the video extra: pip install "handseg[video]"')
    photo = np.array(Image.open(sample_photos[3]).convert("RGB").resize((400, 300)))
    clip = write_clip(tmp_path / "c.mp4", photo, 6)
    before = digest(clip)
    done = run_cli("segment", "-i", str(clip), "-o", str(clip), "--model", str(tiny_model_dir), "--overwrite")
    assert done.returncode == 2 and "never writes over its inputs" in done.stderr
    assert digest(clip) == before
    # Written to a temporary file and renamed when complete: a failed run leaves no partial video.
    done = run_cli("segment", "-i", str(clip), "-o", str(tmp_path / "out.mp4"), "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mp4", "out.mp4"]


def test_two_inputs_with_one_name_get_two_outputs(tmp_path, sample_photos, tiny_model_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.open(sample_photos[1]).convert("RGB").save(folder / "a.jpg")
    Image.open(sample_photos[2]).convert("RGB").save(folder / "a.png")
    done = run_cli("segment", "-i", str(folder), "-o", str(tmp_path / "masks"), "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert "<stem>_<extension>_mask.png" in done.stderr
    masks = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert masks == ["a_jpg_mask.png", "a_png_mask.png"]
    assert Image.open(tmp_path / "masks" / "a_jpg_mask.png").size == Image.open(folder / "a.jpg").size
    assert Image.open(tmp_path / "masks" / "a_png_mask.png").size == Image.open(folder / "a.png").size
    # one name in two folders, and two names one case-blind file system would take as one: four masks
    for i, name in enumerate(("d1/y.jpg", "d2/y.jpg", "d3/b.jpg", "d3/b.JPG")):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.open(sample_photos[i]).convert("RGB").save(tmp_path / name, format="JPEG")
    inputs = [str(tmp_path / n) for n in ("d1/y.jpg", "d2/y.jpg", "d3/b.jpg", "d3/b.JPG")]
    done = run_cli("segment", "-i", *inputs, "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["b_jpg_2_mask.png", "b_jpg_mask.png", "y_jpg_2_mask.png", "y_jpg_mask.png"]
    assert "4 masks written" in done.stderr
    for source, mask in zip(inputs, ["y_jpg_mask.png", "y_jpg_2_mask.png", "b_jpg_mask.png", "b_jpg_2_mask.png"]):
        assert Image.open(tmp_path / "out" / mask).size == Image.open(source).size
    # an explicit output given twice cannot be renamed: refused
    done = run_cli("segment", "-i", str(folder / "a.jpg"), str(folder / "a.png"), "-o", str(tmp_path / "m.png"),
                   str(tmp_path / "m.png"), "--model", str(tiny_model_dir))  # fmt: skip
    assert done.returncode == 2 and "given for two inputs" in done.stderr


def test_existing_outputs_are_kept_or_replaced_only_when_asked(photos, tmp_path, tiny_model_dir):
    out = tmp_path / "masks"
    common = ["segment", "-i", str(photos), "-o", str(out), "--model", str(tiny_model_dir)]
    first = run_cli(*common)
    assert first.returncode == 0, first.stderr
    assert f"handseg: {len(list(photos.iterdir()))} masks written to {out}, 0 skipped" in first.stderr
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_cli(*common)
    assert again.returncode == 2 and "exist already" in again.stderr and "--overwrite" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing touched
    kept = run_cli(*common, "--skip-existing")
    assert kept.returncode == 0 and "nothing to do" in kept.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    replaced = run_cli(*common, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert all(p.stat().st_mtime_ns > stamps[p.name] for p in out.iterdir())
    assert run_cli(*common, "--overwrite", "--skip-existing").returncode == 2


def test_a_folder_run_ends_with_one_line_saying_what_happened(photos, tmp_path, tiny_model_dir):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    out = tmp_path / "masks"
    out.mkdir()
    first = sorted(photos.glob("*.jpg"))[0]
    Image.new("L", Image.open(first).size).save(out / f"{first.stem}_mask.png")  # an earlier run's
    done = run_cli("segment", "-i", str(photos), "-o", str(out), "--model", str(tiny_model_dir), "--skip-existing")
    total = len(list(photos.iterdir()))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    expected = f"{total - 2} masks written to {out}, 1 skipped (output already there), 1 of {total} inputs failed"
    assert last == f"handseg: {expected}"
    # -q: only errors; a clean run prints nothing at all
    (photos / "broken.jpg").unlink()
    quiet = run_cli("segment", "-i", str(photos), "-o", str(out), "--model", str(tiny_model_dir), "--overwrite", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == "", quiet.stderr
    one = run_cli("segment", "-i", str(first), "-o", str(tmp_path / "one"), "--model", str(tiny_model_dir))
    assert one.returncode == 0 and "1 mask written" not in one.stderr  # a single input: no summary line


def test_usage_errors_name_what_is_wrong_and_exit_2(tmp_path, sample_photos, tiny_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("segment", "-i", str(empty), "--model", str(tiny_model_dir))
    assert done.returncode == 2 and f"no images or videos found in {empty}" in done.stderr
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    done = run_cli("segment", "-i", str(sample_photos[0]), "-o", f"{afile}/", "--model", str(tiny_model_dir))
    assert done.returncode == 2 and "is a file, not a folder" in done.stderr and "Errno" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _read_only(folder: Path) -> list[str] | None:
    """A command prefix under which `folder` is read-only, also for root (who ignores chmod): a private
    bind mount; None where neither works here."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if not shutil.which("unshare"):
        return None
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "--mount", "sh", "-c", f'mount --bind "{folder}" "{folder}" && mount -o remount,bind,ro '
            f'"{folder}" && exec "$0" "$@"']  # fmt: skip


@pytest.mark.slow
def test_a_read_only_output_folder_is_one_line_before_any_work(photos, tmp_path, tiny_model_dir):
    out = tmp_path / "readonly"
    out.mkdir()
    prefix = _read_only(out)
    if prefix is None:
        pytest.skip("no way to make a read-only folder here: not root-free, and unshare --mount is not allowed")
    command = [*prefix, sys.executable, "-m", "handseg", "segment", "-i", str(photos), "-o", str(out)]
    done = subprocess.run([*command, "--model", str(tiny_model_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"handseg: error: cannot write to {out}: Read-only file system"] or (
        os.geteuid() != 0 and "Permission denied" in done.stderr
    )
    assert not list(out.iterdir())


def _start_a_long_run(tmp_path: Path, photo: Path, copies: int, out: Path, model: Path, *flags: str):
    """(command, process): `handseg segment` started on a folder of `copies` copies of a real photo at full
    size, once its first two masks are written (so a signal then lands mid-run)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    picture = Image.open(photo).convert("RGB")
    for i in range(copies):
        picture.save(folder / f"{i:03d}.jpg", quality=90)
    command = [sys.executable, "-m", "handseg", "segment", "-i", str(folder), "-o", str(out), *flags,
               "--model", str(model), "--max-side", "0"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and len(list(out.glob("*_mask.png"))) >= 2):
        time.sleep(0.01)
    return command, proc


@pytest.mark.slow
def test_ctrl_c_leaves_no_partial_file_and_says_how_to_continue(tmp_path, sample_photos, tiny_model_dir):
    out = tmp_path / "masks"
    command, proc = _start_a_long_run(tmp_path, sample_photos[0], 60, out, tiny_model_dir, "-q")
    photo = Image.open(sample_photos[0])
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--skip-existing" in stderr
    assert len(stderr.strip().splitlines()) == 1
    written = sorted(out.iterdir())
    assert 2 <= len(written) < 60
    assert all(not p.name.startswith(".") for p in written)  # no temporary file left behind
    for mask in written:
        assert Image.open(mask).size == photo.size  # each complete and readable
    resumed = run_cli(*command[3:], "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(out.iterdir())) == 60


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.3, 0.8])
def test_ctrl_c_while_torch_loads_is_one_line(tmp_path, sample_photos, after_s):
    """The command starts quickly and loads torch inside its own Ctrl-C handling: interrupted before any
    work, it says so in one line (no KeyboardInterrupt traceback) and exits as interrupted: status 130, or
    ended by SIGINT itself, which CPython does at exit when the interrupt passed through torch's import
    (about 1 run in 7 here, after the one line); a shell reads both as 130."""
    command = [sys.executable, "-m", "handseg", "segment", "-i", str(sample_photos[0]), "-o", str(tmp_path / "m.png")]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal: a machine faster than this test assumes")
    assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "handseg: interrupted", stderr


def _outputs_by_input(folder: Path, kinds: tuple[str, ...]) -> dict[str, set[str]]:
    """Each input stem's outputs in `folder`, by kind ("mask", "viz", "hands.png", "hands.json", ...)."""
    found: dict[str, set[str]] = {}
    for path in folder.iterdir():
        for kind in kinds:
            tag, _, suffix = kind.partition(".")
            ending = f"_{tag}.{suffix or 'png'}"
            if path.name.endswith(ending):
                found.setdefault(path.name.removesuffix(ending), set()).add(kind)
    return found


@pytest.mark.slow
def test_ctrl_c_mid_photo_leaves_all_of_its_outputs_or_none(tmp_path, sample_photos, tiny_model_dir):
    """A real SIGINT while a photo's outputs are being written (its viz file half made): every photo then
    has all of its outputs or none, nothing temporary is left, the count said is the count on disk, and
    --skip-existing makes the rest."""
    out = tmp_path / "out"
    command, proc = _start_a_long_run(tmp_path, sample_photos[0], 40, out, tiny_model_dir, "--hands", "--viz")
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob(".*_viz.*.partial.png")):  # a viz file being written
        time.sleep(0.001)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    kinds = ("mask", "viz", "hands.png", "hands.json")
    made = _outputs_by_input(out, kinds)
    assert all(found == set(kinds) for found in made.values()), made
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert f"interrupted: {len(made)} of 40 written" in stderr
    resumed = run_cli(*command[3:], "--skip-existing")
    assert resumed.returncode == 0, resumed.stderr
    assert _outputs_by_input(out, kinds) == {f"{i:03d}": set(kinds) for i in range(40)}


def test_skip_existing_writes_the_outputs_that_are_missing(photos, tmp_path, tiny_model_dir):
    """After a mask-only run, `--overlay --skip-existing` adds each photo's overlay and keeps its mask;
    an input is skipped only when all of its outputs are there."""
    out = tmp_path / "masks"
    common = ["segment", "-i", str(photos), "-o", str(out), "--model", str(tiny_model_dir)]
    assert run_cli(*common).returncode == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    done = run_cli(*common, "--overlay", "--skip-existing")
    assert done.returncode == 0, done.stderr
    count = len(list(photos.iterdir()))
    assert done.stderr.strip().splitlines()[-1] == (
        f"handseg: {count} masks with their overlay written to {out}, 0 skipped (output already there), 0 failed"
    )
    assert len(list(out.glob("*_overlay.png"))) == count
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_mask.png")} == stamps  # the masks kept as they were
    again = run_cli(*common, "--overlay", "--skip-existing")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_every_command_that_writes_refuses_to_overwrite_without_asking(tmp_path, sample_photos, tiny_model_dir):
    """export, convert, save_pretrained and train.run --out follow `segment`'s rule: an existing file is
    refused in one line (exit 2) and left as it was, and replaced only when asked."""
    victim = tmp_path / "victim.onnx"
    victim.write_bytes(b"my own file")
    done = run_cli("export", "--onnx", str(victim), "--model", str(tiny_model_dir))
    assert done.returncode == 2 and "exists already" in done.stderr and "--overwrite" in done.stderr, done.stderr
    assert victim.read_bytes() == b"my own file"
    photo = tmp_path / "photo.jpg"
    shutil.copy(sample_photos[0], photo)
    done = run_cli("export", "--onnx", str(photo), "--model", str(tiny_model_dir), "--overwrite")
    assert done.returncode == 2 and "ends in .onnx" in done.stderr
    assert digest(photo) == digest(sample_photos[0])
    done = run_cli("export", "--onnx", str(victim), "--model", str(tiny_model_dir), "--overwrite")
    assert done.returncode == 0 and victim.read_bytes() != b"my own file"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written under a temporary name

    from handseg import HandUNet

    model = HandUNet.from_pretrained(tiny_model_dir)
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    before = {p.name: digest(p) for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save_pretrained(folder)
    assert {p.name: digest(p) for p in folder.iterdir()} == before
    model.save_pretrained(folder, overwrite=True)

    from tests.original_format import original_state_dict, save_torch03

    checkpoint = tmp_path / "MODEL.pth"
    save_torch03(original_state_dict(base=4), checkpoint)
    done = run_cli("convert", str(checkpoint), str(folder))
    assert done.returncode == 2 and "exists already" in done.stderr and "--overwrite" in done.stderr, done.stderr
    assert {p.name: digest(p) for p in folder.iterdir()} == before
    assert run_cli("convert", str(checkpoint), str(folder), "--overwrite").returncode == 0

    from train.arguments import parse_args

    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit):
        parse_args(["--data", str(tmp_path), "--out", str(run_folder)])
    assert parse_args(["--data", str(tmp_path), "--out", str(run_folder), "--overwrite"]).out == run_folder


def test_folders_are_searched_recursively_only_when_asked(tmp_path, sample_photos, tiny_model_dir):
    """A folder of sub-folders says they were not searched; --recursive finds their photos and keeps the
    tree in the output folder, so one name in two sub-folders cannot collide."""
    photos = tmp_path / "photos"
    for sub in ("a", "b/c"):
        (photos / sub).mkdir(parents=True)
        shutil.copy(sample_photos[1], photos / sub / "hand.jpg")
    out = tmp_path / "out"
    done = run_cli("segment", "-i", str(photos), "-o", str(out), "--model", str(tiny_model_dir))
    assert done.returncode == 2 and "sub-folders not searched: add --recursive" in done.stderr, done.stderr
    done = run_cli("segment", "-i", str(photos), "-o", str(out), "--recursive", "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == ["a/hand_mask.png", "b/c/hand_mask.png"]
    beside = run_cli("segment", "-i", str(photos), "-r", "--model", str(tiny_model_dir))  # no -o: beside each photo
    assert beside.returncode == 0 and (photos / "b" / "c" / "hand_mask.png").is_file()


def test_one_file_output_for_several_inputs_is_refused(tmp_path, sample_photos, tiny_model_dir):
    done = run_cli("segment", "-i", str(sample_photos[0]), str(sample_photos[1]), "-o", str(tmp_path / "x1.png"),
                   "--model", str(tiny_model_dir))  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "names one file, but there are 2 inputs" in done.stderr
    assert not (tmp_path / "x1.png").exists()


def test_renamed_outputs_can_be_traced_to_their_inputs(tmp_path, sample_photos, tiny_model_dir):
    """Inputs that would share an output name are listed input -> output, and each hands file names its source."""
    inputs = []
    for i, folder in enumerate(("d1", "d2", "d3")):
        (tmp_path / folder).mkdir()
        Image.open(sample_photos[i]).convert("RGB").save(tmp_path / folder / "hand.jpg")
        inputs.append(tmp_path / folder / "hand.jpg")
    out = tmp_path / "out"
    done = run_cli("segment", "-i", *map(str, inputs), "-o", str(out), "--hands", "--model", str(tiny_model_dir))
    assert done.returncode == 0, done.stderr
    for source, name in zip(inputs, ("hand_jpg", "hand_jpg_2", "hand_jpg_3")):
        assert f"handseg:   {source} -> {out / (name + '_mask.png')}" in done.stderr.splitlines()
        assert json.loads((out / f"{name}_hands.json").read_text())["source"] == str(source)
