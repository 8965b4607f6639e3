"""The Gradio web demo (mivolo_lite/app.py, demo/app.py), served for real on a free localhost port:
its API through gradio_client, and its page in a real headless Chromium driven by Playwright.

Browser tests need Debian's ``chromium`` (/usr/bin/chromium, or $MIVOLO_CHROMIUM) and the
``playwright`` package (no ``playwright install``: the system Chromium is used); they skip with
the reason when either is missing. Screenshots go to ``test-artifacts/`` (gitignored).

The shipped model is a placeholder that is being retrained: no test asserts particular ages,
only structure (persons found, finite numbers in range, rows in the table, image rendered).
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import write_clip

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("YOLO_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path(os.environ.get("MIVOLO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_UPLOAD_MB = 2
MODEL = "mobile (shipped default)"
MODEL_INT8 = "mobile int8 (shipped; faster, ages a little less exact)"
DETECTOR = "centernet (built in, offline)"  # the default detector, offered first
ACCURATE = "centernet-accurate (built in; more people, ~5x slower)"
DECISIONS = {"over", "under", "uncertain"}
ROWS = "#persons-table [role=row]:has([role=gridcell])"  # Gradio's (virtual) table rows, by ARIA role


def _assets() -> Path:
    from ultralytics.utils import ASSETS

    return Path(ASSETS)


@pytest.fixture(scope="module")
def bus() -> str:
    return str(_assets() / "bus.jpg")


@pytest.fixture(scope="module")
def zidane() -> str:
    return str(_assets() / "zidane.jpg")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _offline_env() -> dict:
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", YOLO_OFFLINE="1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    env.pop("MIVOLO_DEMO_MODELS", None)
    env.pop("MIVOLO_DEMO_YOLO_WEIGHTS", None)
    return env


def launch_demo(**app_options):
    """The demo built with ``app_options`` and served in this process on a free loopback port."""
    from mivolo_lite.app import build_app, serve

    demo = build_app(**app_options)
    for attempt in range(3):  # the free port may be taken between the check and the launch
        try:
            _, url, _ = serve(demo, host="127.0.0.1", port=_free_port(), prevent_thread_lock=True, quiet=True)
            break
        except OSError:
            if attempt == 2:
                raise
    return SimpleNamespace(url=url.rstrip("/"), demo=demo)


@pytest.fixture(scope="module")
def server():
    """The demo, launched once for the module."""
    app = launch_demo(max_upload_mb=MAX_UPLOAD_MB)
    yield app
    app.demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def _predict(client, path, age_check=False, threshold=18, risk=0.05):
    from gradio_client import handle_file

    return client.predict(handle_file(path), MODEL, DETECTOR, age_check, threshold, risk, api_name="/predict")


def _check_table(table: dict, age_check: bool = False) -> list[dict]:
    """The persons table as returned by the API: structure and ranges, no particular ages."""
    headers, rows = table["headers"], table["data"]
    assert headers[:3] == ["person", "age", "age interval (90%)"], headers
    assert {"gender", "gender score", "found by"} <= set(headers)
    assert rows, "no person in the table"
    records = [dict(zip(headers, row)) for row in rows]
    for i, r in enumerate(records):
        assert r["person"] == i + 1
        assert math.isfinite(r["age"]) and 0 <= r["age"] <= 120, r
        lo, hi = (float(x) for x in r["age interval (90%)"].split("–"))
        assert 0 <= lo <= r["age"] + 0.5 and r["age"] - 0.5 <= hi <= 120, r
        assert r["gender"] in ("male", "female"), r
        assert 0.5 <= r["gender score"] <= 1.0, r
        assert r["found by"] in ("face", "body", "face+body"), r
        if age_check:
            prob = next(v for k, v in r.items() if k.startswith("P(age ≥"))
            assert 0.0 <= prob <= 1.0 and r["decision"] in DECISIONS, r
    return records


# -- no server needed ---------------------------------------------------------------------------------
def test_importing_the_package_does_not_import_gradio():
    code = ("import sys, mivolo_lite, mivolo_lite.app; mivolo_lite.AgePredictor; "
            "bad = [m for m in ('gradio', 'gradio_client') if m in sys.modules]; "
            "sys.exit('imported: ' + ', '.join(bad) if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], env=_offline_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_model_and_detector_choices_are_local_only(tmp_path, monkeypatch):
    from mivolo_lite.app import ModelChoice, available_detectors, available_models
    from mivolo_lite.hub import ModelNotFoundError

    monkeypatch.delenv("MIVOLO_DEMO_MODELS", raising=False)
    monkeypatch.delenv("MIVOLO_DEMO_YOLO_WEIGHTS", raising=False)
    shipped = {MODEL: ModelChoice(None), MODEL_INT8: ModelChoice(None, "onnx-int8"), "lite (shipped)": ModelChoice("lite")}
    assert list(available_models().items()) == list(shipped.items())  # the default first; lite ships no int8 graphs
    assert available_detectors() == {DETECTOR: "centernet", ACCURATE: "centernet-accurate",
                                     "opencv (built in, offline)": "opencv"}
    assert list(available_detectors())[0] == DETECTOR
    with pytest.raises(ModelNotFoundError, match="not a local model folder"):
        available_models(["some-user/some-hub-repo"])  # a Hub id is never fetched by the demo
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a saved mivolo_lite model"):
        available_models([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="not a local YOLO weights file"):
        available_detectors(["yolov8n.pt"])  # would be downloaded by ultralytics; the demo refuses
    weights = tmp_path / "face.pt"
    weights.write_bytes(b"x")  # listed only, not loaded
    monkeypatch.setenv("MIVOLO_DEMO_YOLO_WEIGHTS", os.pathsep.join([str(weights), str(tmp_path / "gone.pt")]))
    monkeypatch.setenv("MIVOLO_DEMO_MODELS", str(tmp_path / "missing-model"))
    assert available_detectors() == {DETECTOR: "centernet", ACCURATE: "centernet-accurate",
                                     "opencv (built in, offline)": "opencv", "YOLO face.pt": f"yolo:{weights.resolve()}"}
    assert available_models() == shipped  # unusable folders are skipped


def test_launch_refuses_share_links():
    from mivolo_lite.app import launch

    with pytest.raises(ValueError, match="share"):
        launch(share=True)


def test_demo_script_help():
    done = subprocess.run([sys.executable, str(REPO / "demo" / "app.py"), "--help"], env=_offline_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in ("--model", "--yolo-weights", "--port", "--max-upload-mb", "--concurrency"):
        assert flag in done.stdout


def test_cli_demo_serves_the_page():
    """``mivolo-lite demo`` (cli -> app.launch) starts a server that answers on the given port."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mivolo_lite.cli", "demo", "--port", str(port)], env=_offline_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 150
        while True:
            assert proc.poll() is None, f"the demo exited with {proc.returncode}: {proc.stdout.read()[-3000:]}"
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5)
                if reply.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the demo did not answer within 150 s"
            time.sleep(1)
        config = reply.json()
        assert config["title"] == "mivolo-lite: age & gender estimation"
        assert config["analytics_enabled"] is False
        assert {d.get("api_name") for d in config["dependencies"]} >= {"predict", "predict_video"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- API via gradio_client --------------------------------------------------------------------------------
def test_api_lists_only_the_documented_endpoints(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert endpoints == {"/predict", "/predict_video"}


def test_api_predicts_persons_on_real_photos_concurrently(client, bus, zidane):
    """Three users at once: all requests go through the queue, all get persons back, and the two
    users who sent the same photo get the same answer (shared model and detector are thread-safe)."""
    from gradio_client import handle_file
    from PIL import Image

    jobs = [(path, client.submit(handle_file(path), MODEL, DETECTOR, False, 18, 0.05, api_name="/predict"))
            for path in (bus, zidane, bus)]
    tables = []
    for path, job in jobs:
        image_out, table, summary = job.result(timeout=180)
        tables.append(table["data"])
        with Image.open(image_out) as annotated, Image.open(path) as original:
            assert annotated.size == original.size  # the whole photo, annotated
            pixels = np.asarray(annotated.convert("RGB"))
        assert pixels.std() > 10
        records = _check_table(table)
        assert f"**{len(records)} person" in summary and "found" in summary
        assert "decision" not in table["headers"]
    assert tables[0] == tables[2]


def test_api_runs_the_int8_model_and_the_accurate_detector_offered(client, bus):
    """The other built-in choices answer too: the default model on its int8 graphs (intervals from
    the int8 calibration) and centernet-accurate, which finds at least the default's people."""
    from gradio_client import handle_file

    _, default_table, _ = client.predict(handle_file(bus), MODEL, DETECTOR, True, 18, 0.05, api_name="/predict")
    _, table, summary = client.predict(handle_file(bus), MODEL_INT8, ACCURATE, True, 18, 0.05, api_name="/predict")
    records = _check_table(table, age_check=True)
    assert len(records) >= len(default_table["data"]) and MODEL_INT8 in summary and ACCURATE in summary


def test_each_annotated_photo_gets_a_file_of_its_own(tmp_path):
    """Identical answers (the same photo sent twice at once) must not share a file: Gradio rewrites
    a returned array's cache file in place, and a download could read it half written."""
    from PIL import Image

    from mivolo_lite.app.callbacks import DemoCallbacks

    callbacks = DemoCallbacks(None, None, None, None, tmp_path)
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (255, 0, 0)
    first, second = callbacks._image_file(rgb), callbacks._image_file(rgb)
    assert first != second and Path(first).parent == Path(second).parent == tmp_path
    for path in (first, second):
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (60, 40)
            assert np.abs(np.asarray(image.convert("RGB"), np.int16) - rgb).mean() < 3


def test_api_age_check_mode(client, zidane):
    image_out, table, summary = _predict(client, zidane, age_check=True, threshold=21, risk=0.1)
    records = _check_table(table, age_check=True)
    assert table["headers"][-2:] == ["P(age ≥ 21)", "decision"]
    counts = {d: sum(r["decision"] == d for r in records) for d in DECISIONS}
    assert (f"Age check at 21 (accepted risk 0.1): {counts['over']} over, {counts['under']} under, "
            f"{counts['uncertain']} uncertain.") in summary
    assert Path(image_out).is_file()


def test_api_rejects_bad_uploads_with_clear_messages_and_keeps_serving(client, bus, tmp_path):
    from gradio_client.exceptions import AppError
    from PIL import Image

    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image " * 50)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(bus).read_bytes()[:20_000])
    bomb = tmp_path / "bomb.png"  # ~10 kB on disk, 85.5 megapixels once decoded
    Image.new("1", (9500, 9000)).save(bomb)
    expected = {garbage: "not an image file", truncated: "corrupt or truncated", bomb: "over the limit"}
    for path, reason in expected.items():
        with pytest.raises(AppError, match=f"Cannot read the uploaded image: .*{reason}"):
            _predict(client, str(path))
    _check_table(_predict(client, bus)[1])  # still serving


def test_server_refuses_oversized_uploads(server, bus):
    """The limit is enforced by the server, not only by the page or the client library."""
    import httpx

    big = Path(bus).read_bytes() + os.urandom(MAX_UPLOAD_MB * 1024 * 1024)
    reply = httpx.post(f"{server.url}/gradio_api/upload", files={"files": ("big.jpg", big, "image/jpeg")},
                       timeout=60)
    assert reply.status_code == 413, reply.text
    assert "maximum allowed size" in reply.text


def _write_clip(path: Path, frames: int = 6) -> Path:
    return write_clip(path, frames, shift=4)


@pytest.fixture(scope="module")
def annotated_video(client, tmp_path_factory):
    """(video path, tracks table, summary) for a 6-frame clip made from zidane.jpg."""
    from gradio_client import handle_file

    clip = _write_clip(tmp_path_factory.mktemp("video") / "clip.mp4")
    video, tracks, summary = client.predict(handle_file(str(clip)), MODEL, DETECTOR, 1, 100,
                                            api_name="/predict_video")
    return (video["video"] if isinstance(video, dict) else video), tracks, summary


def test_api_video_gives_an_annotated_webm_video(annotated_video, client, tmp_path):
    import cv2
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    video, tracks, summary = annotated_video
    assert Path(video).suffix == ".webm"  # VP8 WebM from OpenCV's bundled FFmpeg: plays in browsers
    cap = cv2.VideoCapture(video)
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode(errors="replace")
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert fourcc in ("VP80", "VP90") and count == 6
    assert "**6 frame(s) analysed**" in summary
    assert tracks["headers"][:3] == ["person (track)", "frames", "age"]
    for row in tracks["data"]:
        assert 1 <= row[1] <= 6 and math.isfinite(row[2])

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    with pytest.raises(AppError, match="Cannot process the video: cannot read video 'broken.mp4'"):
        client.predict(handle_file(str(broken)), MODEL, DETECTOR, 1, 100, api_name="/predict_video")


# -- a real browser ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (CI: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (CI: pip install playwright; no 'playwright install')")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open_page(browser, url: str):
    """A new browser session on the demo, recording requests to anywhere but the demo server."""
    pg = browser.new_page(viewport={"width": 1280, "height": 1000})
    pg.set_default_timeout(60_000)
    outside = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
    pg.outside_requests = outside
    pg.goto(url + "/", wait_until="domcontentloaded")
    pg.wait_for_selector("#run-btn")
    return pg


@pytest.fixture(scope="module")
def page(browser, server):
    """One browser session shared by the tests that follow each other in it."""
    pg = _open_page(browser, server.url)
    yield pg
    pg.close()


@pytest.fixture
def fresh_page(browser, server):
    """A browser session of its own (a fresh page: nothing analysed yet)."""
    pg = _open_page(browser, server.url)
    yield pg
    pg.close()


def _upload_and_run(pg, path):
    before = pg.locator("#output-image img").get_attribute("src") if pg.locator("#output-image img").count() else None
    pg.locator("#input-image input[type=file]").set_input_files(path)
    pg.wait_for_selector("#input-image img")
    pg.click("#run-btn")
    return before


def _wait_for_new_result(pg, before):
    pg.wait_for_function(
        """before => { const img = document.querySelector('#output-image img');
                       return img && img.complete && img.naturalWidth > 0 && img.getAttribute('src') !== before; }""",
        arg=before)
    pg.wait_for_function(f"document.querySelectorAll({ROWS!r}).length > 0")


def _table_rows(pg) -> list[list[str]]:
    return [[c.strip() for c in row.locator("[role=gridcell]").all_inner_texts()] for row in pg.locator(ROWS).all()]


def _headers(pg, table: str = "#persons-table") -> list[str]:
    return [h.strip() for h in pg.locator(f"{table} thead th").all_inner_texts()]


def test_browser_upload_click_and_see_the_result(page, bus):
    before = _upload_and_run(page, bus)
    _wait_for_new_result(page, before)
    shown = page.evaluate("""() => { const img = document.querySelector('#output-image img');
                                     return [img.naturalWidth, img.naturalHeight]; }""")
    assert shown == [810, 1080]  # bus.jpg, annotated at full size
    headers = _headers(page)
    assert "age" in headers and "gender" in headers and "decision" not in headers
    rows = _table_rows(page)
    assert rows and all(len(r) >= len(headers) for r in rows)
    age_col = headers.index("age")
    assert all(math.isfinite(float(r[age_col])) for r in rows)
    assert "found" in page.inner_text("#summary")
    page.screenshot(path=str(ARTIFACTS / "demo_photo.png"), full_page=True)

    # age-check mode: the decisions come in without another click (no new inference)
    page.locator("#age-check input[type=checkbox]").check()
    page.wait_for_function("[...document.querySelectorAll('#persons-table thead th')]"
                           ".some(th => th.innerText.includes('decision'))")
    headers = _headers(page)
    decisions = [r[headers.index("decision")] for r in _table_rows(page)]
    assert decisions and set(decisions) <= DECISIONS
    assert "Age check at 18" in page.inner_text("#summary")
    page.screenshot(path=str(ARTIFACTS / "demo_age_check.png"), full_page=True)
    assert page.outside_requests == [], "the page contacted other hosts"


def test_browser_broken_upload_shows_an_error_and_the_app_keeps_serving(page, zidane, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"definitely not a JPEG " * 40)
    page.locator("#input-image input[type=file]").set_input_files(str(broken))
    page.click("#run-btn")
    error = page.get_by_text("Cannot read the uploaded image: not an image file")
    error.first.wait_for(state="visible")
    assert _table_rows(page) == []  # the previous photo's persons are not shown next to the error
    page.wait_for_timeout(1000)  # let the toast finish fading in
    page.screenshot(path=str(ARTIFACTS / "demo_broken_upload.png"), full_page=True)

    big = tmp_path / "big.jpg"
    big.write_bytes(Path(zidane).read_bytes() + os.urandom(MAX_UPLOAD_MB * 1024 * 1024))
    page.locator("#input-image input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size").first.wait_for(state="visible")

    # the app still works: the zidane.jpg example (shipped with ultralytics), then a click
    before = page.locator("#output-image img").get_attribute("src") if page.locator("#output-image img").count() \
        else None
    examples = page.locator("#examples button")
    assert examples.count() == 2  # bus.jpg and zidane.jpg
    examples.nth(1).click()
    page.wait_for_function("document.querySelector('#input-image img')?.naturalWidth === 1280")
    page.click("#run-btn")
    _wait_for_new_result(page, before)
    assert page.evaluate("document.querySelector('#output-image img').naturalWidth") == 1280  # zidane.jpg
    assert _table_rows(page)
    assert page.outside_requests == [], "the page contacted other hosts"


def _assert_chromium_plays(browser, load) -> None:
    """Chromium decodes the 640x360 ``<video id="v">`` that ``load(tab)`` puts in a new tab."""
    tab = browser.new_page()
    try:
        load(tab)
        state = tab.wait_for_function(
            """() => { const v = document.getElementById('v');
                       if (v.error) return {error: v.error.code};
                       return v.readyState >= 2 && {w: v.videoWidth, h: v.videoHeight, d: v.duration}; }""")
        info = state.json_value()
    finally:
        tab.close()
    assert info.get("error") is None, f"Chromium cannot play the video (MediaError {info.get('error')})"
    assert (info["w"], info["h"]) == (640, 360) and info["d"] > 0


def test_browser_plays_the_annotated_video(browser, server, annotated_video):
    """Chromium decodes the annotated video as the server serves it (codec and container)."""
    video = annotated_video[0]
    _assert_chromium_plays(browser, lambda tab: tab.set_content(
        f'<video id="v" src="{server.url}/gradio_api/file={video}" muted preload="auto"></video>'))


def test_browser_plays_the_annotated_video_of_the_command_line(browser, tmp_path):
    """``mivolo-lite predict clip.mp4 --save-images`` writes an .mp4 that Chromium plays (VP9 in
    MP4; it was mp4v, which no browser plays)."""
    from mivolo_lite.cli import main

    clip = _write_clip(tmp_path / "clip.mp4")
    assert main(["predict", str(clip), "-o", str(tmp_path / "out"), "--save-images", "--quiet"]) == 0
    page = tmp_path / "play.html"
    video = tmp_path / "out" / "annotated" / "clip.mp4"
    page.write_text(f'<video id="v" src="{video.as_uri()}" muted preload="auto"></video>')
    _assert_chromium_plays(browser, lambda tab: tab.goto(page.as_uri()))


def test_browser_good_then_bad_then_good_uploads_after_an_example(fresh_page, bus, zidane, tmp_path):
    """A session's first photo is an example (whose loading replaces the input component in the
    session): a non-image uploaded afterwards used to get Gradio's raw "Could not preprocess
    input component ... No module named 'pi_heif'" instead of the clear message of a fresh page.
    The tables have their column names before any run and after an error, not "1 2 3"."""
    page = fresh_page
    assert _headers(page)[:2] == ["person", "age"]
    page.get_by_role("tab", name="Video").click()
    page.wait_for_selector("#tracks-table thead th")
    assert _headers(page, "#tracks-table")[:3] == ["person (track)", "frames", "age"]
    page.get_by_role("tab", name="Photo").click()

    page.locator("#examples button").nth(0).click()  # bus.jpg
    page.wait_for_function("document.querySelector('#input-image img')?.naturalWidth === 810")
    page.click("#run-btn")
    _wait_for_new_result(page, None)
    assert page.evaluate("document.querySelector('#output-image img').naturalWidth") == 810

    not_an_image = tmp_path / "holiday.jpg"  # a text file named like a photo
    not_an_image.write_text("shopping list: milk, bread\n" * 20)
    page.locator("#input-image input[type=file]").set_input_files(str(not_an_image))
    page.click("#run-btn")
    page.get_by_text("Cannot read the uploaded image: not an image file").first.wait_for(state="visible")
    assert "Could not preprocess" not in page.inner_text("body")
    assert _table_rows(page) == [] and _headers(page)[:2] == ["person", "age"]
    page.wait_for_timeout(1000)  # let the toast finish fading in
    page.screenshot(path=str(ARTIFACTS / "demo_bad_after_good.png"), full_page=True)

    before = _upload_and_run(page, zidane)
    _wait_for_new_result(page, before)
    assert page.evaluate("document.querySelector('#output-image img').naturalWidth") == 1280
    assert _table_rows(page)
    assert page.outside_requests == [], "the page contacted other hosts"


def test_browser_video_tab_shows_tracks_rounded_like_the_photo_table(fresh_page, tmp_path):
    """Ages and spreads to 0.1 year and scores to 0.01, as in the persons table (they were shown
    to three decimals)."""
    page = fresh_page
    page.get_by_role("tab", name="Video").click()
    page.locator("#input-video input[type=file]").set_input_files(str(_write_clip(tmp_path / "clip.mp4")))
    page.click("#video-btn")
    rows = "#tracks-table [role=row]:has([role=gridcell])"
    page.wait_for_function(f"document.querySelectorAll({rows!r}).length > 0", timeout=180_000)
    headers = _headers(page, "#tracks-table")
    cells = [[c.strip() for c in row.locator("[role=gridcell]").all_inner_texts()] for row in page.locator(rows).all()]
    for row in cells:
        record = dict(zip(headers, row))
        for column, decimals in (("age", 1), ("age spread", 1), ("gender score", 2)):
            text = record[column]
            assert len(text.partition(".")[2]) <= decimals, (column, text, record)
    page.screenshot(path=str(ARTIFACTS / "demo_video.png"), full_page=True)

