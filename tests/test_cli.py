"""The `handseg` command end to end, in a subprocess, as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import handseg
from handseg import cli
from tests.conftest import run_cli


def test_version_and_help():
    assert run_cli("--version").stdout.strip() == f"handseg {handseg.__version__}"
    for args in (["-h"], ["segment", "-h"], ["convert", "-h"]):
        done = run_cli(*args)
        assert done.returncode == 0 and "usage: handseg" in done.stdout
    if shutil.which("handseg"):  # the console script installed by pip
        assert subprocess.run(["handseg", "--version"], capture_output=True, text=True).returncode == 0


def test_folder_of_mixed_photos(tmp_path, sample_photos, tiny_model_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    expected: dict[str, tuple[int, int]] = {}
    for path in sample_photos:
        shutil.copy(path, folder / path.name)
        with Image.open(path) as img:
            expected[path.stem] = (img.height, img.width)
    photo = Image.open(sample_photos[1]).convert("RGB")
    photo.convert("RGBA").save(folder / "with_alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(folder / "rotated.jpg", exif=exif)
    expected["with_alpha"] = (photo.height, photo.width)
    expected["rotated"] = (photo.width, photo.height)  # displayed orientation
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")

    out = tmp_path / "masks"
    done = run_cli("segment", "-i", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--viz")
    assert done.returncode == 1  # one file failed
    assert "broken.jpg" in done.stderr and "Traceback" not in done.stderr
    assert "1 of 7 inputs failed" in done.stderr
    for stem, size in expected.items():
        mask = np.array(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == size and set(np.unique(mask)) <= {0, 255}
        viz = Image.open(out / f"{stem}_viz.png")
        assert viz.height == size[0] and viz.width > 3 * size[1]
    assert not (out / "broken_mask.png").exists()


def test_masks_beside_inputs_and_explicit_outputs(tmp_path, sample_photos, tiny_model_dir):
    src = tmp_path / "a.jpg"
    shutil.copy(sample_photos[2], src)
    done = run_cli("segment", "-i", str(src), "--model", str(tiny_model_dir), "--overlay")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a_mask.png").is_file() and (tmp_path / "a_overlay.png").is_file()
    assert "% hand" in done.stdout

    done = run_cli(
        "segment",
        "-i",
        str(src),
        str(sample_photos[3]),
        "-o",
        str(tmp_path / "x.png"),
        str(tmp_path / "y.png"),
        "--model",
        str(tiny_model_dir),
        "--scale",
        "0.5",
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "y.png").size == Image.open(sample_photos[3]).size


def test_glob_input(tmp_path, sample_photos, tiny_model_dir):
    for path in sample_photos[:2]:
        shutil.copy(path, tmp_path / path.name)
    done = run_cli(
        "segment", "-i", str(tmp_path / "*.jpg"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir), "-q"
    )
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*_mask.png"))) == 2


def test_clear_errors(tmp_path, sample_photos, tiny_model_dir):
    # An input that is not there is a usage error, said before any work: a file or a folder alike.
    for missing in ("nothing.jpg", "nofolder"):
        done = run_cli("segment", "-i", str(sample_photos[0]), str(tmp_path / missing), "-o", str(tmp_path / "out"),
                       "--model", str(tiny_model_dir))  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"handseg: error: {tmp_path / missing}: no such file or folder\n"
        assert not (tmp_path / "out").exists()
    # A flag's value is the flag's problem, not the model's.
    for flag, value in (("--max-side", "-5"), ("--scale", "0"), ("--batch-size", "0")):
        done = run_cli("segment", "-i", str(sample_photos[0]), flag, value, "--model", str(tiny_model_dir))
        assert done.returncode == 2 and done.stderr.startswith(f"handseg: error: {flag}"), done.stderr
        assert len(done.stderr.splitlines()) == 1 and value in done.stderr
        assert "cannot load model" not in done.stderr
    done = run_cli("segment", "-i", str(sample_photos[0]), "--model", str(tmp_path / "no_model_here"))
    assert done.returncode == 2 and "cannot load model" in done.stderr
    done = run_cli("segment", "-i", str(sample_photos[0]), "--scale", "0.5", "--max-side", "100")
    assert done.returncode == 2 and "not allowed with" in done.stderr


def test_no_model_and_no_default_says_so(monkeypatch, capsys, sample_photos):
    monkeypatch.setattr(handseg.pretrained, "DEFAULT_MODEL", None)  # as a build that ships no weights
    assert cli.main(["segment", "-i", str(sample_photos[0]), "-o", "/tmp/handseg-should-not-exist.png"]) == 2
    assert "no default weights" in capsys.readouterr().err


@pytest.mark.slow
def test_compile_flag_writes_the_same_mask(tmp_path, sample_photos, tiny_model_dir):
    common = ["segment", "-i", str(sample_photos[1]), "--model", str(tiny_model_dir), "--device", "cpu", "-q"]
    assert cli.main([*common, "-o", str(tmp_path / "eager.png")]) == 0
    assert cli.main([*common, "-o", str(tmp_path / "compiled.png"), "--compile"]) == 0
    eager, compiled = (np.array(Image.open(tmp_path / name)) for name in ("eager.png", "compiled.png"))
    assert eager.shape == compiled.shape and (eager != compiled).mean() < 0.001
    done = run_cli(*common, "-o", str(tmp_path / "x.png"), "--compile", "--backend", "onnx")
    assert done.returncode == 2 and "torch backend" in done.stderr


def test_default_working_resolution_is_the_models_own(tmp_path, sample_photos):
    """Without --max-side the CLI runs a model where it was trained (its config), like segment()."""
    trained_at = handseg.load_model(None, "cpu").max_side  # the shipped model's, 512
    common = ["segment", "-i", str(sample_photos[0]), "--device", "cpu", "-q"]  # a 1280x720 photo
    assert cli.main([*common, "-o", str(tmp_path / "auto.png")]) == 0
    assert cli.main([*common, "-o", str(tmp_path / "trained.png"), "--max-side", str(trained_at)]) == 0
    assert cli.main([*common, "-o", str(tmp_path / "1024.png"), "--max-side", "1024"]) == 0
    auto, trained, at_1024 = (np.array(Image.open(tmp_path / f"{n}.png")) for n in ("auto", "trained", "1024"))
    assert np.array_equal(auto, trained)
    assert not np.array_equal(auto, at_1024)


def test_output_without_extension_is_a_folder(tmp_path, sample_photos, tiny_model_dir):
    """`-o newdir` for one input: a folder is created, as with `-o newdir/`."""
    done = run_cli(
        "segment", "-i", str(sample_photos[0]), "-o", str(tmp_path / "newdir"), "--model", str(tiny_model_dir)
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "newdir" / f"{sample_photos[0].stem}_mask.png").is_file()
    done = run_cli(
        "segment", "-i", str(sample_photos[0]), "-o", str(tmp_path / "m.dat"), "--model", str(tiny_model_dir)
    )
    assert done.returncode == 2 and "'.dat' is not an image file extension" in done.stderr
    assert "Traceback" not in done.stderr


def test_threads_flag(tmp_path, sample_photos, tiny_model_dir):
    out = tmp_path / "m.png"
    done = run_cli(
        "segment", "-i", str(sample_photos[0]), "-o", str(out), "--model", str(tiny_model_dir), "--threads", "1"
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_unavailable_or_unknown_device_is_one_line_and_exit_2(sample_photos, tiny_model_dir, tmp_path):
    for device, said in (("cuda", "CUDA is not available here"), ("foo", "not one torch knows")):
        done = run_cli("segment", "-i", str(sample_photos[0]), "-o", str(tmp_path / "m.png"), "--device", device)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.png").exists()


def test_a_second_run_on_a_folder_does_not_segment_its_own_outputs(tmp_path, sample_photos, tiny_model_dir):
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_photos[:2]:
        shutil.copy(path, folder / path.name)
    common = ["segment", "-i", str(folder), "--model", str(tiny_model_dir), "--viz", "--overlay"]
    assert run_cli(*common).returncode == 0
    first = sorted(p.name for p in folder.iterdir())
    assert len(first) == 2 * 4  # each photo, its mask, overlay and viz
    done = run_cli(*common, "--overwrite")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in folder.iterdir()) == first  # no photo_mask_mask.png
    assert "skipped 6 file(s) that handseg wrote" in done.stderr
    # Recognised by handseg's own mark too, when the photo it came from is not beside it.
    shutil.move(folder / f"{sample_photos[0].stem}_mask.png", tmp_path / "moved_mask.png")
    shutil.copy(sample_photos[2], tmp_path / sample_photos[2].name)
    done = run_cli("segment", "-i", str(tmp_path / "*.*"), "--model", str(tiny_model_dir), "-o", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == [f"{sample_photos[2].stem}_mask.png"]
    # Named on its own, a mask is an input like any other file.
    done = run_cli("segment", "-i", str(tmp_path / "moved_mask.png"), "--model", str(tiny_model_dir))
    assert done.returncode == 0 and (tmp_path / "moved_mask_mask.png").is_file()


def test_skip_existing_continues_a_folder_run(tmp_path, sample_photos, tiny_model_dir):
    folder, out = tmp_path / "photos", tmp_path / "masks"
    folder.mkdir()
    for path in sample_photos:
        shutil.copy(path, folder / path.name)
    common = ["segment", "-i", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]
    assert run_cli(*common, "-i", str(sample_photos[0])).returncode == 0  # an earlier run did one photo
    done_first = out / f"{sample_photos[0].stem}_mask.png"
    stamp = done_first.stat().st_mtime_ns
    done = run_cli(*common, "--skip-existing")
    assert done.returncode == 0, done.stderr
    assert "skipped 1 file(s) whose output already exists" in done.stderr
    assert done_first.stat().st_mtime_ns == stamp  # not written again
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}_mask.png" for p in sample_photos)


def test_masks_are_lossless_whatever_the_extension(tmp_path, sample_photos, tiny_model_dir):
    common = ["segment", "-i", str(sample_photos[1]), "--model", str(tiny_model_dir)]
    done = run_cli(*common, "-o", str(tmp_path / "m.jpg"))
    assert done.returncode == 2 and "JPEG is lossy" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.jpg").exists()
    for suffix in (".png", ".webp", ".tif"):
        target = tmp_path / f"m{suffix}"
        done = run_cli(*common, "-o", str(target))
        assert done.returncode == 0, done.stderr
        assert set(np.unique(np.array(Image.open(target).convert("L")))) <= {0, 255}


def test_max_pixels_guard_can_be_raised(tmp_path, sample_photos, tiny_model_dir):
    photo = sample_photos[0]  # 1280x720: 0.92 MP
    common = ["segment", "-i", str(photo), "-o", str(tmp_path / "m.png"), "--model", str(tiny_model_dir)]
    done = run_cli(*common, "--max-pixels", "500000")
    assert done.returncode == 1 and "--max-pixels" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(*common, "--max-pixels", "1000000")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.png").is_file()


def test_models_command_lists_the_shipped_models():
    done = run_cli("models")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"* {handseg.pretrained.DEFAULT_MODEL}")  # the default first, marked
    assert "default hand segmenter" in lines[0]  # the summary from its card's title
    for name in handseg.available_models():
        assert any(name in line for line in lines)
    # then the others, newest first
    listed = [line[2:].split()[0] for line in lines if line[:2] in ("* ", "  ")]
    versions = [int(name.rsplit("_v", 1)[1]) for name in listed[1:]]
    assert listed[0] == handseg.pretrained.DEFAULT_MODEL and versions == sorted(versions, reverse=True), listed


def test_the_first_line_says_crf_and_logs_get_no_progress_bar(tmp_path, sample_photos, tiny_model_dir):
    """The line that says what runs names CRF when it is on; written to a log (not a terminal), a folder
    run gets one line per file and no progress bar's carriage returns."""
    pytest.importorskip("pydensecrf.densecrf", reason='needs the crf extra: pip install "handseg[crf]"')
    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sample_photos[:2]:
        shutil.copy(path, folder / path.name)
    done = run_cli("segment", "-i", str(folder), "-o", str(tmp_path / "out"), "--crf", "--model", str(tiny_model_dir),
                   process=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0] if "note:" not in done.stderr.splitlines()[0] else done.stderr.splitlines()[1]
    assert first.endswith("dense-CRF refinement"), done.stderr
    assert "\r" not in done.stderr and "img/s" not in done.stderr, done.stderr
    assert len(done.stdout.splitlines()) == 2  # one line per photo: "<photo> -> <mask> (x% hand)"


def test_a_mistyped_model_name_suggests_the_shipped_one(sample_photos, tmp_path):
    typo = handseg.pretrained.DEFAULT_MODEL.replace("hands_", "hand_")
    done = run_cli("segment", "-i", str(sample_photos[0]), "-o", str(tmp_path / "m.png"), "--model", typo)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"did you mean the shipped model {handseg.pretrained.DEFAULT_MODEL}" in done.stderr


def test_a_checkout_in_a_folder_named_handseg_does_not_hide_the_package(tmp_path):
    """Run from the parent of a checkout named `handseg` (the usual `git clone ... handseg`), the installed
    package is the one imported, not the checkout folder as an empty namespace package: the README's
    install (`pip install -e ... --config-settings editable_mode=compat`) puts the checkout on the path."""
    (tmp_path / "handseg").symlink_to(Path(handseg.__file__).resolve().parents[1], target_is_directory=True)
    for command, says in ((["-m", "handseg", "--version"], f"handseg {handseg.__version__}"),
                          (["-m", "handseg.ray", "--help"], "usage: handseg ray")):  # fmt: skip
        done = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and says in done.stdout and "Traceback" not in done.stderr, done.stderr
