"""The demo's limits, on a real server on a loopback port with small limits: pixel limit (also for
inline data: URLs), awkward uploads, per-request time limit, and a flood of requests that
leaves it serving (bounded: 50 requests from one local client, well under two minutes)."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from test_demo import DETECTOR, MODEL, _check_table, _write_clip, launch_demo

MAX_PIXELS = 2_000_000
QUEUE_SIZE = 4


@pytest.fixture(scope="module")
def server():
    app = launch_demo(max_upload_mb=1, max_pixels=MAX_PIXELS, concurrency=1, queue_size=QUEUE_SIZE, time_limit_s=60)
    yield app
    app.demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def _predict(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), MODEL, DETECTOR, False, 18, 0.05, api_name="/predict")


def test_awkward_uploads_get_a_result_or_a_clear_message(client, tmp_path, assets):
    from gradio_client.exceptions import AppError

    photo = Image.open(assets / "zidane.jpg").convert("RGB").resize((640, 360))
    files = {}

    def save(name, image, **kw):
        files[name] = tmp_path / name
        image.save(files[name], **kw)

    save("cmyk.jpg", photo.convert("CMYK"), quality=90)
    save("sixteen_bit.png", Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257))
    save("one_pixel.png", Image.new("RGB", (1, 1)))
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise for display
    save("rotated.jpg", photo.transpose(Image.Transpose.ROTATE_90), quality=90, exif=exif.tobytes())
    save("animated.gif", photo, save_all=True, append_images=[Image.new("RGB", photo.size)], duration=100)
    for name in ("cmyk.jpg", "sixteen_bit.png", "rotated.jpg", "animated.gif"):
        image_out, table, summary = _predict(client, files[name])
        assert "found" in summary, name
        with Image.open(image_out) as annotated:
            assert annotated.size == (640, 360), name  # upright, first frame
    assert "**0 persons found**" in _predict(client, files["one_pixel.png"])[2]

    bomb = tmp_path / "bomb.png"
    Image.new("1", (2000, 1500)).save(bomb)  # 3 MP: over this server's 2 MP limit, a few kB on disk
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    for path, reason in ((bomb, "over the limit of 2,000,000"), (empty, "empty")):
        with pytest.raises(AppError, match=f"Cannot read the uploaded image: .*{reason}"):
            _predict(client, path)


def _call(server, payload: dict) -> tuple[str, str]:
    """The REST API (``/gradio_api/call/predict``) with a raw JSON image payload: (event, data)."""
    import httpx

    data = [payload, MODEL, DETECTOR, False, 18, 0.05]
    event = httpx.post(f"{server.url}/gradio_api/call/predict", json={"data": data}, timeout=60).json()["event_id"]
    with httpx.stream("GET", f"{server.url}/gradio_api/call/predict/{event}", timeout=120) as reply:
        kind = None
        for line in reply.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind in ("complete", "error"):
                return kind, line.split(":", 1)[1].strip()
    raise AssertionError("no result")


def _data_url(image: Image.Image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"path": None, "url": url, "meta": {"_type": "gradio.FileData"}}


def test_inline_images_are_checked_like_uploads(server, assets):
    kind, data = _call(server, _data_url(Image.open(assets / "zidane.jpg").resize((320, 180))))
    assert kind == "complete", data
    kind, data = _call(server, _data_url(Image.new("1", (2000, 1500))))  # the pixel limit holds here too
    assert kind == "error" and "over the limit of 2,000,000" in data, data
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), np.uint8))  # ~1.5 MB PNG
    kind, data = _call(server, _data_url(noise))
    assert kind == "error" and "larger than the upload limit of 1 MB" in data, data


def test_time_limit_stops_photos_and_videos(tmp_path, assets):
    import gradio as gr

    from mivolo_lite.app import build_app

    demo = build_app(time_limit_s=1e-6)
    handlers = {fn.api_name: fn.fn for fn in demo.fns.values()}
    with pytest.raises(gr.Error, match="over the time limit of 1e-06 s"):
        handlers["predict"](str(assets / "bus.jpg"), MODEL, DETECTOR, False, 18, 0.05)
    clip = _write_clip(tmp_path / "clip.mp4", frames=3)
    with pytest.raises(gr.Error, match="stopped at the time limit"):
        handlers["predict_video"](str(clip), MODEL, DETECTOR, 1, 10)
    demo.close()


def test_a_flood_of_requests_leaves_it_serving(server, client, tmp_path, assets):
    """50 requests at once from one local client into a queue of 4: each is answered (a result or
    "queue is full"), none hangs, and the demo serves normally afterwards."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    # Distinct files: gradio caches uploads by content hash, and 50 identical uploads at once race
    # on one cache file (a response can stream it while another request rewrites it).
    base = Image.open(assets / "zidane.jpg").resize((160, 90))
    paths = []
    for i in range(50):
        path = tmp_path / f"upload_{i}.jpg"
        if i % 10 == 9:
            path.write_bytes(b"not an image %d " % i * 20)
        else:
            base.rotate(i * 0.5).save(path)
        paths.append(path)

    def one(i):
        path = paths[i]
        try:
            client.predict(handle_file(str(path)), MODEL, DETECTOR, False, 18, 0.05, api_name="/predict")
            return "ok"
        except Exception as e:  # noqa: BLE001 - refusals are expected; anything else is reported
            if "queue is full" in str(e).lower():
                return "queue full"
            if isinstance(e, AppError) and "Cannot read the uploaded image" in str(e):
                return "bad image"
            return f"{type(e).__name__}: {e}"

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        outcomes = list(pool.map(one, range(50)))
    assert time.monotonic() - start < 120
    unexpected = [o for o in outcomes if o not in ("ok", "bad image", "queue full")]
    assert not unexpected, unexpected
    assert outcomes.count("ok") >= 1 and outcomes.count("queue full") >= 1, outcomes
    # still serving: a normal request, and the page itself
    _check_table(_predict(client, assets / "bus.jpg")[1])
    import httpx

    assert httpx.get(server.url + "/config", timeout=10).status_code == 200
