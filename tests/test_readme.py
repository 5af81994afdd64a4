"""Every recipe in the README runs as written, on real photos, in a fresh process (on 2 cores too: the Ray
Data recipe once waited for ever there). Each code block says, in the comment above it, whether this test
runs it or why not; a block that says neither fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO_ROOT, write_clip
from tests.original_format import original_state_dict, save_torch03

RUN = "<!-- tests/test_readme.py runs this block"
NOT_RUN = "<!-- not run by tests/test_readme.py:"
BLOCK = re.compile(r"(?P<comment><!--[^\n]*-->\n)?```(?P<language>\w+)\n(?P<code>.*?)```", re.S)


def readme_blocks() -> list[tuple[str, str, str]]:
    """(comment, language, code) of every fenced code block of README.md."""
    text = (REPO_ROOT / "README.md").read_text()
    return [(m["comment"] or "", m["language"], m["code"]) for m in BLOCK.finditer(text)]


def test_every_readme_block_says_whether_it_is_run():
    blocks = readme_blocks()
    assert blocks
    for comment, _, code in blocks:
        assert comment.startswith((RUN, NOT_RUN)), f"a README block without a run / not-run comment:\n{code}"


RUNNABLE = [
    pytest.param(language, code, id=f"{language}-{i}")
    for i, (comment, language, code) in enumerate(readme_blocks())
    if comment.startswith(RUN)
]


@pytest.fixture(scope="module")
def recipe_folder(data_dir, tmp_path_factory) -> Path:
    """What the README's recipes name: photo.jpg, photos/, more/*.png, a.jpg, b.png, broken.jpg,
    clip.mp4 and an original-format MODEL.pth."""
    folder = tmp_path_factory.mktemp("recipes")
    hgr = sorted((data_dir / "hgr" / "images").glob("*.jpg"))
    shutil.copy(sorted((data_dir / "egohands" / "images").glob("*.jpg"))[3], folder / "photo.jpg")
    (folder / "photos").mkdir()
    for path in hgr[:4]:
        shutil.copy(path, folder / "photos" / path.name)
    (folder / "more").mkdir()
    Image.open(hgr[4]).save(folder / "more" / "hand.png")
    shutil.copy(hgr[5], folder / "a.jpg")
    Image.open(hgr[6]).save(folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not a JPEG")
    pytest.importorskip("av", reason='the video recipe needs the video extra: pip install "handseg[video]"')
    write_clip(folder / "clip.mp4", np.array(Image.open(folder / "photo.jpg").convert("RGB")), 4)
    save_torch03(original_state_dict(base=8), folder / "MODEL.pth")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(("language", "code"), RUNNABLE)
def test_a_readme_recipe_runs_as_written(language, code, recipe_folder, tmp_path):
    for extra in ("ray", "datasets", "gradio_client"):
        if re.search(rf"^import {extra}\b|^from {extra}\b|\b{extra}[.,]|handseg ray|handseg.ray", code, re.M):
            pytest.importorskip("ray" if "handseg ray" in code or "handseg.ray" in code else extra)
    work = tmp_path / "work"
    shutil.copytree(recipe_folder, work)
    bin_dir = str(Path(sys.executable).parent)  # the `handseg` command installed beside this Python
    env = {**os.environ, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    command = ["bash", "-e", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr
