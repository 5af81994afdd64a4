"""The Gradio app, launched as a user launches it (`python app.py`), driven through gradio_client
and through a real headless Chromium."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import handseg
from handseg import load_mask
from handseg.visualize import hand_color
from tests.conftest import REPO_ROOT, dice_as_trained, run_cli

gradio_client = pytest.importorskip("gradio_client", reason='the app extra is needed: pip install "handseg[demo,dev]"')
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

#: Where the browser test saves its screenshot (named in the README).
SCREENSHOT = REPO_ROOT / "artifacts" / "app-screenshot.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Starts processes (training, Ray, the app's server): the full run, not the fast lane.
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, data_dir):
    """`python app.py` exactly as the README launches it: the shipped default model. Yields (url, log path)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("app.py exited: " + log_path.read_text()[-3000:])
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app.py did not answer within 120 s")
    yield url, log_path
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def segment(client: Client, path: Path, **options):
    args = {"threshold": 0.5, "crf": False, "max_side": 512, "color": "#ff3c8c", "opacity": 0.5, "verify": True}
    args |= options
    return client.predict(handle_file(str(path)), *args.values(), api_name="/segment")


def test_the_raw_mask_is_one_tick_away(client, data_dir):
    """'Confirmed hands only' (on by default) drops the patch the network marks on a face; off, the page
    shows the network's mask and says how much of it no hand explains."""
    face = next((data_dir / "negatives" / "images").glob("deepface_img15.*"))
    confirmed, raw = segment(client, face), segment(client, face, verify=False)
    assert "Hand area 0.0 %" in confirmed[3] and "No hand found" in confirmed[3]
    assert "Hand area 0.0 %" not in raw[3] and "no hand found or confirmed there" in raw[3]


def test_segment_real_photos(client, sample_photos):
    for photo in sample_photos:
        (before, after), tinted, mask_path, stats, hands = segment(client, photo)
        with Image.open(photo) as img:
            size = img.size
        mask = Image.open(mask_path)
        assert mask.size == size and mask.mode == "L"
        assert Path(mask_path).name == f"{photo.stem}_mask.png"
        assert "Hand area" in stats and f"{size[0]}×{size[1]}" in stats
        assert Path(before).is_file() and Path(after).is_file() and Path(tinted).is_file()
        # each hand listed by the colour it is drawn in, then left or right; in the hands picture its pixels
        # are tinted that colour (nearer to it than to any other hand's)
        result = handseg.segment(photo)
        shown = Image.open(hands).convert("RGB")  # at the app's display size
        assert shown.size == Image.open(after).size
        picture = np.asarray(shown, np.float32)
        original = np.asarray(Image.fromarray(result.image).resize(shown.size, Image.BILINEAR), np.float32)
        for index, hand in enumerate(result.hands):
            name, color = hand_color(index, hand.handedness)
            side = f"**{hand.handedness}** hand" if hand.handedness else "marked, but near no hand"
            assert f"{index + 1}. " in stats and f"{name}: {side}" in stats, stats
            pixels = np.asarray(Image.fromarray(hand.mask).resize(shown.size, Image.NEAREST))
            if pixels.sum() < 50:
                continue  # too few pixels at display size to read a colour from
            tint = np.median(picture[pixels] - 0.5 * original[pixels], axis=0) / 0.5  # the colour blended in
            colours = [hand_color(i, "left")[1] for i in range(5)] + [hand_color(0, None)[1]]
            assert min(colours, key=lambda c: np.abs(tint - c).sum()) == color, (photo.name, name, tint)


def test_segment_finds_the_hands_of_unseen_photos(client, val_pairs):
    """The masks the app serves are the shipped model's real ones, at full size."""
    for source in ("egohands", "hgr", "handphotos"):
        photo, truth_path = val_pairs[source][0]
        mask_path = segment(client, photo)[2]
        assert dice_as_trained(load_mask(mask_path), truth_path, source) > 0.75, source


def test_the_app_and_the_command_line_give_the_same_mask(client, tmp_path, sample_photos, gtea_frame):
    """One file, one answer: the app reads an upload through the same path as `handseg segment`
    (a JPEG's reduced decode included, at the original project's frame size), so its mask equals the
    CLI's pixel for pixel."""
    for photo in (gtea_frame, sample_photos[1]):
        app_mask = np.array(Image.open(segment(client, photo)[2]))
        cli_mask_path = tmp_path / f"{photo.stem}_cli.png"
        done = run_cli("segment", "-i", photo, "-o", cli_mask_path, "-q")
        assert done.returncode == 0, done.stderr
        assert np.array_equal(app_mask, np.array(Image.open(cli_mask_path))), photo.name


def start_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_a_missing_model_stops_the_app_with_one_line():
    done = start_app("--model", "no_such_dir", "--port", str(free_port()))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "--model" in done.stderr and "no_such_dir" in done.stderr


def test_a_taken_port_stops_the_app_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = start_app("--port", str(port))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert f"port {port}" in done.stderr and "--port" in done.stderr and "launch()" not in done.stderr


def test_compare_with_truth_mask(client, val_pairs):
    photo, truth = val_pairs["hgr"][0]
    a_img, a_err, a_md, b_img, b_err, b_md = client.predict(
        handle_file(str(photo)), handle_file(str(truth)), 0.5, None, False, None, False, api_name="/compare"
    )
    assert "| dice | IoU | precision | recall |" in a_md and "| dice |" in b_md
    assert Path(a_img).is_file() and Path(a_err).is_file() and Path(b_err).is_file()
    # Same model, same settings: both sides agree.
    assert a_md.split("\n", 1)[1] == b_md.split("\n", 1)[1]


def test_compare_without_truth_has_no_error_map(client, val_pairs):
    outputs = client.predict(
        handle_file(str(val_pairs["hgr"][0][0])), None, 0.5, None, False, None, False, api_name="/compare"
    )
    assert outputs[1] is None and "ground-truth mask" in outputs[2]


def test_compare_rejects_a_mask_of_another_size(client, val_pairs):
    photo = val_pairs["hgr"][0][0]
    other_truth = val_pairs["egohands"][0][1]
    with pytest.raises(AppError, match="must match"):
        client.predict(
            handle_file(str(photo)), handle_file(str(other_truth)), 0.5, None, False, None, False, api_name="/compare"
        )


def test_batch_with_zip_and_bad_files(client, tmp_path, sample_photos):
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(sample_photos[2], f"inner/{sample_photos[2].name}")
        z.writestr("notes.jpg", b"not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    files = [handle_file(str(p)) for p in (sample_photos[0], sample_photos[1], archive, tmp_path / "broken.png")]
    zip_path, report = client.predict(files, 0.5, False, api_name="/batch")
    assert "3 of 5 images segmented" in report
    assert "notes.jpg" in report and "broken.png" in report
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"{p.stem}_mask.png" for p in sample_photos[:3])
        mask = Image.open(io.BytesIO(z.read(f"{sample_photos[2].stem}_mask.png")))
        assert mask.size == Image.open(sample_photos[2]).size


def make_bad_files(folder: Path, photo: Path) -> dict[str, Path]:
    data = photo.read_bytes()
    files = {
        "not an image": folder / "notes.jpg",
        "truncated": folder / "cut.jpg",
        "empty": folder / "empty.png",
        "decompression bomb": folder / "bomb.png",
    }
    files["not an image"].write_text("hello")
    files["truncated"].write_bytes(data[: len(data) // 3])
    files["empty"].write_bytes(b"")
    Image.new("1", (20000, 20000)).save(files["decompression bomb"])
    return files


def test_bad_uploads_get_clear_errors_and_the_app_keeps_serving(client, app_server, tmp_path, sample_photos):
    log_path = app_server[1]
    for what, path in make_bad_files(tmp_path, sample_photos[0]).items():
        log_before = log_path.read_text()
        with pytest.raises(AppError) as info:
            segment(client, path)
        message = str(info.value)
        assert path.name in message or what in message, (what, message)
        assert "/tmp/gradio" not in message  # the user's file name, not the server's temp path
        # The server log gets one line with the reason and the file name, not a traceback.
        logged = log_path.read_text()[len(log_before) :]
        assert "Traceback" not in logged, logged
        refused = [line for line in logged.splitlines() if "request refused" in line]
        assert len(refused) == 1 and path.name in refused[0], logged
    photo = Image.open(sample_photos[1]).convert("RGB")
    photo.convert("RGBA").save(tmp_path / "alpha.png")
    grey16 = np.array(photo.convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey16).save(tmp_path / "deep.tif")
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    for name in ("alpha.png", "deep.tif", "cmyk.jpg"):
        _, _, mask_path, _, _ = segment(client, tmp_path / name)
        assert Image.open(mask_path).size == photo.size
    assert "Hand area" in segment(client, sample_photos[0])[3]


def test_twenty_concurrent_users(app_url, sample_photos):
    def one(i: int):
        return Client(app_url, verbose=False).predict(
            handle_file(str(sample_photos[i % len(sample_photos)])),
            0.5,
            False,
            256,
            "#ff3c8c",
            0.5,
            True,
            api_name="/segment",
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    assert len(results) == 20 and all("Hand area" in r[3] for r in results)


def test_in_a_real_browser(app_url, sample_photos):
    if not os.path.exists(CHROMIUM):
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("HANDSEG_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HANDSEG_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(app_url)
        page.locator("#photo input[type=file]").set_input_files(str(sample_photos[1]))
        page.locator("#photo img").first.wait_for(timeout=30_000)  # the upload's preview
        page.locator("#segment-button").click()
        page.locator("#stats").get_by_text("Hand area").wait_for(timeout=60_000)
        # The stats text can arrive before the images have loaded: wait for them, then check.
        page.locator("#overlay img").first.wait_for(state="visible", timeout=30_000)
        page.locator("#slider img").nth(1).wait_for(state="visible", timeout=30_000)
        assert page.locator("#slider img").count() >= 2
        stats = page.locator("#stats").inner_text()  # e.g. "Hand area 11.8 % · image 400×604 px · ..."
        assert float(stats.split("Hand area")[1].split("%")[0]) > 2.0, stats  # the arm of this HGR photo
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        download = page.locator("#mask-file a[download]").first
        assert download.get_attribute("download") == f"{sample_photos[1].stem}_mask.png"
        browser.close()
    assert SCREENSHOT.stat().st_size > 10_000
