"""Bad and unusual inputs at every entry point (Python API, command line; the demo is in
test_demo_limits.py): each gets a result or a named error, a batch never crashes and nothing is
skipped silently. Also: caller-given boxes, videos that end early, and weights that are pickles."""

from __future__ import annotations

import csv
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from conftest import REPO, random_image, tiny_config, write_clip
from mivolo_lite._image_io import ImageLoadError, load_image
from mivolo_lite.detection import Detections, Detector, InvalidBoxesError
from mivolo_lite.detection.pairing import crop_persons, match_faces_to_bodies

OK = "ok"  # expectation: decoded and analysed (persons or not)


def _exif_rotated(photo: Image.Image, orientation: int) -> tuple[Image.Image, bytes]:
    """``photo`` stored as a camera stores it for EXIF ``orientation`` (which says how to turn
    the stored pixels for display), and the EXIF block that says so."""
    stored = {3: Image.Transpose.ROTATE_180,
              6: Image.Transpose.ROTATE_90,  # displayed after turning 90 degrees clockwise
              8: Image.Transpose.ROTATE_270}[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    return photo.transpose(stored), exif.tobytes()


def _clip(path: Path, frames: int = 12) -> Path:
    return write_clip(path, frames, size=(320, 180), shift=5, fourcc="MJPG")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, assets) -> tuple[Path, dict[str, str]]:
    """A folder of awkward files and, per file name, ``OK`` or a phrase its error must contain."""
    folder = tmp_path_factory.mktemp("awkward")
    bus = Image.open(assets / "bus.jpg").convert("RGB").resize((405, 540))  # half size: half the detector time
    raw = (assets / "bus.jpg").read_bytes()
    expect = {}

    def add(name, what, expectation):
        path = folder / name
        if isinstance(what, bytes):
            path.write_bytes(what)
        else:
            what(path)
        expect[name] = expectation

    add("zero_bytes.jpg", b"", "empty (0 bytes)")
    add("truncated.jpg", raw[:20_000], "corrupt or truncated")
    png = folder / "_full.png"
    bus.save(png)
    add("truncated.png", png.read_bytes()[:30_000], "corrupt or truncated")
    png.unlink()
    add("text.png", b"just some text, not a picture\n" * 20, "not an image file")
    add("page.jpg", b"<!doctype html><html><body>404 not found</body></html>", "not an image file")
    # 85.5 MP (over our 80 MP limit) and 200 MP (over PIL's own hard limit): small files either way
    add("bomb.png", lambda p: Image.new("1", (9500, 9000)).save(p), "over the limit")
    add("bigger_bomb.png", lambda p: Image.new("1", (20000, 10000)).save(p), "decompression bomb")
    add("one_pixel.png", lambda p: Image.new("RGB", (1, 1), (200, 10, 10)).save(p), OK)
    add("two_pixels.png", lambda p: Image.new("L", (2, 2), 90).save(p), OK)
    add("grayscale.png", lambda p: bus.convert("L").save(p), OK)
    add("palette.gif", lambda p: bus.convert("P", palette=Image.Palette.ADAPTIVE).save(p), OK)
    add("cmyk.jpg", lambda p: bus.convert("CMYK").save(p, quality=95), OK)

    def rgba(p):
        im = bus.convert("RGBA")
        im.putalpha(Image.linear_gradient("L").resize(bus.size))
        im.save(p)
    add("rgba.png", rgba, OK)
    add("sixteen_bit.png", lambda p: Image.fromarray(np.asarray(bus.convert("L"), np.uint16) * 257).save(p), OK)

    def exif(p):
        stored, block = _exif_rotated(bus, 6)
        stored.save(p, quality=95, exif=block)
    add("exif_rotated.jpg", exif, OK)

    def animated(p):
        frames = [bus, Image.new("RGB", bus.size, (0, 0, 0)), Image.new("RGB", bus.size, (255, 255, 255))]
        frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", animated, OK)
    add("nobody.png", lambda p: Image.new("RGB", (640, 480), (120, 130, 140)).save(p), OK)
    (folder / "readme.txt").write_text("not an image by its name: left out of folder scans, and said so\n")
    return folder, expect


def _check(result, expectation: str, name: str) -> None:
    if expectation == OK:
        assert result.ok, f"{name}: {result.error}"
        assert result.image is None or result.image.shape[2] == 3
    else:
        assert not result.ok, f"{name} should have failed"
        assert name in result.error and expectation in result.error, result.error


def test_awkward_files_through_the_python_api(predictor, corpus, assets):
    folder, expect = corpus
    results = predictor.predict(folder)  # a folder: every file gets a result, failures are recorded
    assert [Path(r.source).name for r in results] == sorted(expect)
    by_name = {Path(r.source).name: r for r in results}
    for name, expectation in expect.items():
        _check(by_name[name], expectation, name)
    n_bus = len(predictor.predict(np.asarray(Image.open(assets / "bus.jpg").convert("RGB").resize((405, 540))))[0])
    # colour conversions keep the photo recognisable: the people in bus.jpg are still found
    for name in ("grayscale.png", "palette.gif", "cmyk.jpg", "sixteen_bit.png", "exif_rotated.jpg", "animated.gif"):
        assert len(by_name[name].persons) >= max(1, n_bus - 2), name
    assert by_name["nobody.png"].persons == [] and by_name["one_pixel.png"].persons == []
    # alone, a bad file raises its named error
    with pytest.raises(ImageLoadError, match="truncated.jpg.*corrupt or truncated"):
        predictor.predict(str(folder / "truncated.jpg"))


def test_awkward_files_through_the_command_line(corpus, tmp_path):
    folder, expect = corpus
    whole = _clip(tmp_path / "whole.avi", frames=8)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    expect = {**expect, "cut.avi": "ended early", "empty.mp4": "cannot read video"}
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "mivolo_lite.cli", "predict", str(folder), str(cut), str(empty),
                           "-o", str(out), "--quiet", "--save-images"], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    failed = sum(e != OK for e in expect.values())
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert f"{len(expect)} input(s): {len(expect) - failed} image(s) and 0 video(s) ok, {failed} failed" in proc.stdout
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    errors = {}
    for row in rows:
        errors.setdefault(Path(row["source"]).name, set()).add(row["error"])
    assert set(errors) == set(expect)  # every file has a row: nothing skipped silently
    for name, expectation in expect.items():
        if expectation == OK:
            assert errors[name] == {""}, (name, errors[name])
        else:
            message = next(e for e in errors[name] if e)  # the video that ended early also has frame rows
            assert errors[name] <= {message, ""} and expectation in message, (name, errors[name])
            assert f"error: {message}" in proc.stderr
    # annotated images keep their paths relative to the inputs' common folder (the corpus lies beside tmp_path)
    annotated = {p.name for p in (out / "annotated").rglob("*.jpg")}
    assert {"one_pixel.jpg", "exif_rotated.jpg"} <= annotated, annotated
    assert "note: 1 file(s) in the folders are not images or videos by their extension" in proc.stderr
    assert "readme.txt" in proc.stderr


# -- decoding details ----------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, assets, orientation):
    photo = Image.open(assets / "zidane.jpg").convert("RGB").resize((320, 180))
    stored, block = _exif_rotated(photo, orientation)
    path = tmp_path / f"o{orientation}.jpg"
    stored.save(path, quality=98, exif=block)
    loaded = load_image(path)
    assert loaded.shape == (180, 320, 3)  # upright again, not as stored
    assert np.abs(loaded.astype(int) - np.asarray(photo, int)).mean() < 4
    assert np.array_equal(load_image(path.read_bytes()), loaded)  # bytes and paths alike


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (30, 20), c) for c in ((250, 0, 0), (0, 250, 0), (0, 0, 250))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_image(path)
    assert image.shape == (20, 30, 3) and image[..., 0].mean() > 200 and image[..., 1:].mean() < 30


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (3000, 2000)).save(path)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(ImageLoadError, match="6,000,000 pixels is over the limit of 1,000,000"):
        load_image(path, max_pixels=1_000_000)
    assert decoded == []  # refused from the header: no pixel was decoded


def test_pil_guard_is_left_in_place():
    """Importing mivolo_lite must not switch off PIL's own decompression-bomb guard for the program."""
    code = "import PIL.Image as I; d = I.MAX_IMAGE_PIXELS; import mivolo_lite._image_io; assert I.MAX_IMAGE_PIXELS == d"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_unusual_arrays_are_converted_or_named(predictor):
    ok = [np.zeros((1, 1, 3), np.uint8), np.ones((4, 5), bool), np.full((6, 4, 4), 2000, np.uint16),
          np.random.default_rng(0).random((8, 8, 3)), np.full((5, 5, 1), np.nan, np.float32)]
    for arr in ok:
        assert load_image(arr).shape == (*arr.shape[:2], 3)
    bad = [np.zeros((0, 4, 3)), np.zeros(3), np.array(5), np.zeros((4, 4, 2)), np.array([["a"]]),
           np.zeros((2, 2, 3), complex), np.zeros((2, 2, 3), object), np.zeros((2, 2, 3, 1))]
    for arr in bad:
        with pytest.raises(ImageLoadError, match="cannot read image <array"):
            load_image(arr)
    results = predictor.predict(bad + [np.zeros((1, 1, 3), np.uint8), "no/such/file.jpg", 42, None])
    assert [r.ok for r in results] == [False] * len(bad) + [True, False, False, False]


def test_tiny_crops_are_estimated(predictor):
    people = predictor.predict_crops(faces=[np.zeros((1, 1, 3), np.uint8), None],
                                     bodies=[None, np.full((2, 2), 200, np.uint8)])
    assert len(people) == 2 and all(np.isfinite(p.age) and 0 <= p.age <= 100 for p in people)


# -- boxes from callers --------------------------------------------------------------------------------
def _det(persons=(), faces=()):
    t = lambda b: torch.tensor(b, dtype=torch.float32).reshape(-1, 4)  # noqa: E731
    return Detections(t(persons), torch.ones(len(persons)), t(faces), torch.ones(len(faces)))


def test_caller_boxes_outside_the_frame_are_clipped(predictor, assets):
    image = load_image(assets / "zidane.jpg")  # 1280 x 720
    given = _det(persons=[[-100, -50, 500, 900], [5000, 5000, 6000, 6000]], faces=[[-20, 100, 150, 300]])
    result = predictor.predict(image, detections=given)[0]
    assert result.ok and result.detector == "given" and len(result.persons) == 1
    person = result.persons[0]
    assert person.body_box == pytest.approx((0, 0, 500, 720)) and person.face_box == pytest.approx((0, 100, 150, 300))


@pytest.mark.parametrize("boxes, reason", [
    (_det(persons=[[float("nan"), 0, 50, 50]]), "NaN or infinite"),
    (_det(faces=[[0, 0, float("inf"), 50]]), "NaN or infinite"),
    (_det(persons=[[100, 100, 40, 300]]), "x2 < x1"),  # (x, y, w, h) passed as (x1, y1, x2, y2)
    (Detections(torch.ones(2, 3), torch.ones(2)), "expected shape (N, 4)"),
    (Detections(torch.ones(1, 4), torch.ones(3)), "3 score(s) for 1 box(es)"),
    (Detections(torch.tensor([[0, 0, 9, 9.0]]), torch.tensor([float("nan")])), "NaN or infinite score"),
])
def test_invalid_caller_boxes_fail_that_input_only(predictor, boxes, reason):
    image = random_image(100, 100)
    results = predictor.predict([image, image], detections=[boxes, _det(persons=[[10, 10, 90, 95]])])
    assert not results[0].ok and "invalid detections" in results[0].error and reason in results[0].error
    assert results[1].ok and len(results[1].persons) == 1
    with pytest.raises(InvalidBoxesError, match=re.escape(reason)):
        predictor.predict(image, detections=boxes)


def test_detections_must_match_the_inputs(predictor):
    with pytest.raises(ValueError, match="2 given for 1 input"):
        predictor.predict([random_image()], detections=[_det(), _det()])


def test_pairing_and_cropping_refuse_bad_boxes_and_take_plain_lists():
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(InvalidBoxesError, match="face boxes: box 0"):
        match_faces_to_bodies([[float("nan"), 0, 5, 5]], [[0, 0, 50, 50]])
    with pytest.raises(InvalidBoxesError, match="body boxes: box 1"):
        crop_persons(image, np.zeros((0, 4)), [[0, 0, 50, 50], [0, 0, float("-inf"), 9]], [(None, 0)])
    with pytest.raises(InvalidBoxesError, match="out of range"):
        crop_persons(image, [[0, 0, 20, 20]], np.zeros((0, 4)), [(1, None)])
    faces, bodies = np.array([[20, 5, 40, 25]]), [[0, 0, 60, 100], [-50, -50, -10, -10]]
    pairs = match_faces_to_bodies(faces, bodies)
    assert sorted(pairs, key=str) == sorted([(0, 0), (None, 1)], key=str)
    persons = crop_persons(image, faces, bodies, pairs)
    assert persons[0].face_crop.shape == (20, 20, 3) and persons[0].body_crop.shape == (100, 60, 3)
    assert persons[1].body_crop is None  # entirely outside the image: no crop, no error


# -- failures inside the pipeline ----------------------------------------------------------------------
class FlakyDetector(Detector):
    """Fails on images with a red top-left corner, finds nothing in others."""

    name = "flaky"

    def detect(self, image):
        r, g, b = image[:8, :8].reshape(-1, 3).mean(axis=0)
        if r > 200 and g < 80 and b < 80:
            raise RuntimeError("detector crashed")
        return Detections()


@pytest.fixture(scope="module")
def flaky_predictor():
    from mivolo_lite import AgePredictor

    return AgePredictor.from_pretrained(detector=FlakyDetector())


def test_a_failing_detector_costs_one_result_not_the_batch(flaky_predictor):
    red = np.zeros((50, 50, 3), np.uint8)
    red[:8, :8] = (255, 0, 0)
    results = flaky_predictor.predict([random_image(), red, random_image(seed=1)])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error == "<input 1>: RuntimeError: detector crashed"


def test_video_that_ends_early_keeps_its_frames_and_says_so(predictor, tmp_path):
    whole = _clip(tmp_path / "whole.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    results = predictor.predict([str(cut), str(tmp_path / "missing.mp4"), random_image()])
    frames = [r for r in results if r.frame is not None]
    errors = [r.error for r in results if not r.ok]
    assert 0 < len(frames) < 12 and all(r.ok for r in frames) and results[-1].ok
    assert len(errors) == 2 and "cut.avi" in errors[0] and "no such file" in errors[1]
    assert f"ended early: decoded {len(frames)} of 12 declared frames" in errors[0]


def test_video_that_cannot_be_decoded_or_runs_out_of_time(predictor, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert "cannot read video" in predictor.predict_video(empty, progress=False).error
    with pytest.raises(ImageLoadError, match="cannot read video"):
        predictor.predict(str(empty))
    clip = _clip(tmp_path / "clip.avi", frames=4)
    timed_out = predictor.predict_video(clip, progress=False, max_seconds=0)
    assert timed_out.frames == [] and "time limit of 0 s" in timed_out.error


def test_a_frame_that_fails_ends_the_video_with_the_frames_so_far(flaky_predictor, tmp_path):
    path = tmp_path / "flaky.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        frame = np.full((48, 64, 3), 128, np.uint8)
        if i == 3:
            frame[:8, :8] = (0, 0, 255)  # BGR: red in RGB, the detector fails
        writer.write(frame)
    writer.release()
    video = flaky_predictor.predict_video(path, progress=False)
    assert len(video.frames) == 3 and "analysis failed at frame 3: RuntimeError: detector crashed" in video.error


# -- weights -----------------------------------------------------------------------------------------------
class _Payload:
    """A pickle that, when loaded, creates the file ``marker``: what a hostile checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def saved_tiny(tmp_path):
    from mivolo_lite.models import MiVOLOLiteImageProcessor, MiVOLOLiteModel

    torch.manual_seed(0)
    model = MiVOLOLiteModel(tiny_config()).eval()
    folder = tmp_path / "saved"
    model.save_pretrained(folder)
    MiVOLOLiteImageProcessor(size=32).save_pretrained(folder)
    return model, folder


@pytest.mark.parametrize("pickle_name", ["pytorch_model.bin", "model.pt", "checkpoint.pth"])
def test_pickle_checkpoints_of_ours_are_refused_unopened(saved_tiny, tmp_path, pickle_name):
    from mivolo_lite.hub import ModelNotFoundError, load_model_and_processor

    _, folder = saved_tiny
    marker = tmp_path / "unpickled"
    (folder / "model.safetensors").unlink()
    with open(folder / pickle_name, "wb") as f:
        pickle.dump({"state_dict": _Payload(marker)}, f)
    with pytest.raises(ModelNotFoundError, match="safetensors only"):
        load_model_and_processor(folder)
    assert not marker.exists()


def test_safetensors_win_over_a_pickle_in_the_same_folder(saved_tiny, tmp_path):
    from mivolo_lite.hub import load_model_and_processor

    model, folder = saved_tiny
    marker = tmp_path / "unpickled"
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Payload(marker), f)
    loaded, _ = load_model_and_processor(folder)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_hub_repo_with_only_a_pickle_is_refused_offline(saved_tiny, tmp_path):
    from test_hub import _run_offline

    _, folder = saved_tiny
    marker = tmp_path / "unpickled"
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as f:
        pickle.dump(_Payload(marker), f)
    cache = tmp_path / "hub"
    # what a download of a pickle-only repo leaves in the cache (add_to_hf_cache refuses such a folder)
    snapshot = cache / "models--someone--pickled-model" / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    proc = _run_offline(cache, "someone/pickled-model")
    assert proc.returncode == 3, proc.stdout + proc.stderr[-2000:]
    assert "has no model.safetensors" in proc.stdout and "safetensors only" in proc.stdout and not marker.exists()


def test_yolo_weights_are_never_fetched_implicitly(monkeypatch):
    from mivolo_lite.detection import build_detector

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in ("yolo:yolov8n.pt", "yolo:weights/person_face.pt"):
        with pytest.raises(FileNotFoundError, match="no such file"):
            build_detector(spec)


def test_readme_warns_about_pickled_yolo_weights():
    # The README's limits point to docs/safety.md, which spells the warning out.
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Limits", 1)[1].split("\n## ", 1)[0]
    assert "pickle" in section and "docs/safety.md" in section
    safety = (REPO / "docs" / "safety.md").read_text()
    assert "pickle" in safety and "YOLO" in safety and "safetensors" in safety


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file_is_named(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"0" * 100)
    path.chmod(0)
    with pytest.raises(ImageLoadError, match="cannot open the file"):
        load_image(path)
