"""solov2 serve's page in a real browser: Debian's Chromium (tools/install_chromium.sh; no browser download) driven by
Playwright, against a uvicorn server on 127.0.0.1 with the tiny trained checkpoint of tests/conftest.py. Uploads
two images, checks that the canvas changes where an instance is, downloads the COCO JSON and the PNG masks, moves
the slider and sees the instances go, toggles a class, fits a phone-width window; saves docs/serve.png with
SOLOV2_SCREENSHOT=1. A file dropped on the page that is not an image shows the server's error."""
import io
import json
import os
import socket
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, png, post_image, shapes_image
from PIL import Image
from pycocotools import mask as mask_utils

from solov2 import Predictor
from solov2.apps.serve import create_app

CHROMIUM = "/usr/bin/chromium"
# The README's picture of the page; written only when asked (SOLOV2_SCREENSHOT=1), so that running the tests
# changes no file of the repository.
SCREENSHOT = ROOT / "docs/serve.png"
pytestmark = pytest.mark.slow


def _chromium() -> str | None:
    """Chromium's path, installed first by tools/install_chromium.sh where it is missing; None if it cannot be."""
    if not os.path.exists(CHROMIUM):
        subprocess.run(["sh", str(ROOT / "tools/install_chromium.sh")], timeout=900, check=False)
    return CHROMIUM if os.path.exists(CHROMIUM) else None


@pytest.fixture(scope="module")
def browser():
    path = _chromium()
    if path is None:
        pytest.skip(f"no Chromium at {CHROMIUM} and tools/install_chromium.sh could not install it "
                    "(apt-get install chromium needs root and Debian's package lists)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(trained_tiny):
    """The app on uvicorn in a thread, on a free port of 127.0.0.1; yields its URL."""
    import uvicorn
    app = create_app(Predictor(str(trained_tiny), score_thr=0.0))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "the test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(30)
    sock.close()


def _decode(instance: dict) -> np.ndarray:
    seg = instance["segmentation"]
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def _pixel(page, article: int, x: int, y: int) -> np.ndarray:
    """The RGB of the canvas of the ``article``-th image at image pixel (x, y) (the canvas may be enlarged)."""
    return np.array(page.evaluate("""([k, x, y]) => {
        const canvas = document.querySelectorAll('article canvas')[k], s = Number(canvas.dataset.scale);
        return Array.from(canvas.getContext('2d').getImageData(x * s + (s >> 1), y * s + (s >> 1), 1, 1).data);
    }""", [article, int(x), int(y)])[:3], dtype=int)


def _rows(page, article: int = 0) -> int:
    return page.locator("article").nth(article).locator("tbody tr").count()


def test_page_draws_filters_and_downloads(server, browser, tmp_path):
    # Two training images with instances above the page's 0.3 (image 1, a lone small star, has none for the
    # session's trained checkpoint).
    images = [shapes_image(0)[0], shapes_image(2)[0]]
    paths = []
    for k, image in enumerate(images):
        paths.append(tmp_path / f"shapes{k}.png")
        Image.fromarray(image).save(paths[-1])
    expected = post_image(server, png(images[0]), score_thr=0.3)["instances"]  # shown at the page's start
    assert len(expected) >= 2
    context = browser.new_context(viewport={"width": 1000, "height": 760}, accept_downloads=True)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.wait_for_function("document.querySelectorAll('#classes input').length === 5", timeout=30000)
    page.set_input_files("#files", [str(p) for p in paths])
    page.wait_for_function("document.querySelectorAll('article[data-state=done]').length === 2", timeout=120000)

    # The instances are listed and drawn: the canvas differs from the image inside the best instance's mask.
    assert _rows(page) == len(expected)
    scores = [float(t) for t in page.locator("article").nth(0).locator("tbody tr td:nth-child(3)").all_inner_texts()]
    assert scores == pytest.approx([i["score"] for i in expected], abs=1e-3)
    mask = _decode(expected[0])
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(inside)), mask.shape)
    assert np.abs(_pixel(page, 0, x, y) - images[0][y, x]).max() > 30

    # Downloads: the COCO results of the instances shown, and one PNG mask per instance.
    with page.expect_download() as download:
        page.click("#dl-json")
    results = json.loads(Path(download.value.path()).read_text())
    first = [r for r in results if r["image_id"] == 1]
    assert {r["image_id"] for r in results} == {1, 2} and all(r["file_name"] == "shapes0.png" for r in first)
    assert [r["segmentation"] for r in first] == [i["segmentation"] for i in expected]
    assert [r["category_id"] for r in first] == [i["category_id"] for i in expected]
    with page.expect_download() as download:
        page.click("#dl-masks")
    with zipfile.ZipFile(download.value.path()) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("shapes0.png_masks/"))
        assert len(names) == len(expected) and archive.testzip() is None
        assert names[0] == f"shapes0.png_masks/000_{expected[0]['class_name']}_{expected[0]['score']:.2f}.png"
        saved = np.asarray(Image.open(io.BytesIO(archive.read(names[0]))).convert("L"))
        np.testing.assert_array_equal(saved > 127, mask)

    shot = page.screenshot(full_page=True)
    assert shot.startswith(b"\x89PNG")
    if os.environ.get("SOLOV2_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(shot)

    # The slider hides instances without asking the server: at 1 none is left and the canvas is the image again.
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.focus("#thr")
    page.keyboard.press("End")
    assert page.input_value("#thr") == "1" and _rows(page, 0) == 0 and _rows(page, 1) == 0
    assert np.abs(_pixel(page, 0, x, y) - images[0][y, x]).max() <= 2
    page.keyboard.press("Home")  # 0: everything the model kept
    assert _rows(page) >= len(expected)
    # A class toggle hides that class's instances.
    hidden = expected[0]["class_id"]
    page.locator(f"#classes input[data-class-id='{hidden}']").uncheck()
    shown = page.locator("article").nth(0).locator("tbody tr td:nth-child(2)").all_inner_texts()
    assert shown and expected[0]["class_name"] not in [s.strip() for s in shown]
    assert requests == []

    # A phone-width window: nothing wider than the window, the canvas scaled to fit.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.evaluate("document.querySelector('article canvas').getBoundingClientRect().width") <= 390
    assert errors == []
    context.close()


def test_a_dropped_bad_file_shows_its_error(server, browser):
    page = browser.new_page()
    page.goto(server)
    dropped = page.evaluate_handle("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["this is not an image"], "notes.png", {type: "image/png"}));
        return data;
    }""")
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.wait_for_function("document.querySelector('article[data-state=error]') !== null", timeout=60000)
    assert "notes.png: not an image" in page.locator("article h2").inner_text()
    assert page.locator("#dl-json").is_disabled()
    page.close()
