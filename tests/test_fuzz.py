"""Property-based fuzzing (hypothesis) of everything an input passes through: decoding (random
bytes, random valid and truncated images, random arrays), detection, box clipping, face-body
pairing, cropping and the whole predictor with caller-given boxes.

The properties: a result has the promised shape and range, and the only failure is the named
one (ImageLoadError for inputs, InvalidBoxesError for boxes). Bounded to run in ~30 s on 2 cores.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from conftest import tiny_config
from mivolo_lite._image_io import ImageLoadError, load_image
from mivolo_lite.detection import Detections, InvalidBoxesError
from mivolo_lite.detection.pairing import crop_persons, match_faces_to_bodies
from mivolo_lite.models import MiVOLOLiteImageProcessor

# Decoders warn about the corrupt data they are fed here; that is expected.
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FUZZ = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])

MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr", "I", "F", "I;16", "LA", "PA", "RGBX", "HSV", "LAB"]
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO"]
MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"RIFF\x00\x00\x00\x00WEBP",
         b"P6\n"]


def assert_rgb(image: np.ndarray, shape=None) -> None:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and image.flags.c_contiguous
    if shape is not None:
        assert image.shape[:2] == shape


def decodes_or_names_the_failure(source, shape=None) -> np.ndarray | None:
    try:
        image = load_image(source)
    except ImageLoadError as e:
        assert e.reason and "cannot read image" in str(e)
        return None
    assert_rgb(image, shape)
    return image


# -- decoding ------------------------------------------------------------------------------------------
@FUZZ
@given(magic=st.sampled_from(MAGIC), body=st.binary(max_size=2048))
def test_random_bytes_decode_or_fail_by_name(magic, body):
    decodes_or_names_the_failure(magic + body)


@st.composite
def encoded_images(draw):
    mode, fmt = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    w, h = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format
    return buffer.getvalue(), (h, w)


def pil_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - PIL's own verdict, whatever the reason
        return False


@FUZZ
@given(encoded=encoded_images())
def test_valid_images_of_any_mode_and_format_decode_to_rgb(encoded):
    data, (h, w) = encoded
    image = decodes_or_names_the_failure(data)
    if pil_decodes(data):  # what PIL reads back, we read (ICO may resize; others keep the size)
        assert image is not None
        if not data.startswith(b"\x00\x00\x01\x00"):
            assert image.shape[:2] == (h, w)


@FUZZ
@given(encoded=encoded_images(), cut=st.floats(0.0, 1.0), flips=st.lists(st.integers(0, 10**6), max_size=8))
def test_truncated_or_damaged_images_decode_or_fail_by_name(encoded, cut, flips):
    data = bytearray(encoded[0][: max(1, int(len(encoded[0]) * cut))])
    for position in flips:
        data[position % len(data)] ^= 0x5A
    decodes_or_names_the_failure(bytes(data))


@FUZZ
@given(array=hnp.arrays(dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, bool]),
                        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)))
def test_random_arrays_convert_or_fail_by_name(array):
    image = decodes_or_names_the_failure(array)
    if image is not None:
        assert image.shape[:2] == array.shape[:2]


# -- detection, clipping, pairing, cropping --------------------------------------------------------------
@pytest.fixture(scope="module")
def opencv_detector():
    from mivolo_lite.detection.opencv_detector import OpenCVDetector

    return OpenCVDetector()


def random_picture(seed: int, h: int, w: int) -> np.ndarray:
    """Noise, flat colour or smooth blobs: different textures for the detector."""
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if kind == 1:
        return np.full((h, w, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    small = rng.integers(0, 256, (max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC))


def assert_inside(boxes: torch.Tensor, w: int, h: int) -> None:
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


@FEW
@given(seed=st.integers(0, 10**6), h=st.integers(1, 160), w=st.integers(1, 160))
def test_detector_on_random_pictures_gives_boxes_inside_the_image(opencv_detector, seed, h, w):
    det = opencv_detector.detect(random_picture(seed, h, w))
    assert_inside(det.person_boxes, w, h)
    assert_inside(det.face_boxes, w, h)
    assert len(det.person_scores) == len(det.person_boxes) and len(det.face_scores) == len(det.face_boxes)


coordinate = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)
anything = st.one_of(coordinate, st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 3e38]))


@st.composite
def boxes(draw, values=coordinate, max_size=6, ordered=True):
    """Lists of (x1, y1, x2, y2); ``ordered``: corners sorted (x1 <= x2, y1 <= y2)."""
    out = []
    for _ in range(draw(st.integers(0, max_size))):
        x1, y1, x2, y2 = (draw(values) for _ in range(4))
        if ordered:
            x1, x2 = sorted((x1, x2))
            y1, y2 = sorted((y1, y2))
        out.append([x1, y1, x2, y2])
    return out


def well_formed(rows) -> bool:
    return all(all(math.isfinite(v) for v in r) and r[2] >= r[0] and r[3] >= r[1] for r in rows)


@FUZZ
@given(persons=boxes(), faces=boxes(), w=st.integers(1, 500), h=st.integers(1, 500))
def test_clipping_keeps_only_usable_boxes_inside_the_frame(persons, faces, w, h):
    det = Detections(torch.tensor(persons).reshape(-1, 4), torch.rand(len(persons)),
                     torch.tensor(faces).reshape(-1, 4), torch.rand(len(faces))).checked().clipped(w, h)
    assert_inside(det.person_boxes, w, h)
    assert_inside(det.face_boxes, w, h)
    assert len(det.person_scores) == len(det.person_boxes) <= len(persons)


def check_pairs(pairs, n_faces: int, n_bodies: int) -> None:
    faces = [f for f, _ in pairs if f is not None]
    bodies = [b for _, b in pairs if b is not None]
    assert sorted(faces) == list(range(n_faces)) and sorted(bodies) == list(range(n_bodies))
    assert all(p != (None, None) for p in pairs)


@FUZZ
@given(faces=boxes(anything, ordered=False), bodies=boxes(anything, ordered=False))
def test_pairing_covers_every_box_once_or_names_the_bad_box(faces, bodies):
    try:
        pairs = match_faces_to_bodies(faces, bodies)
    except InvalidBoxesError as e:
        assert not (well_formed(faces) and well_formed(bodies)), e
        return
    assert well_formed(faces) and well_formed(bodies)
    check_pairs(pairs, len(faces), len(bodies))


@FUZZ
@given(faces=boxes(st.floats(-50, 250, width=32)), bodies=boxes(st.floats(-50, 250, width=32)),
       h=st.integers(1, 200), w=st.integers(1, 200))
def test_crops_lie_inside_the_image_and_respect_the_minimum_sizes(faces, bodies, h, w):
    image = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    pairs = match_faces_to_bodies(faces, bodies)
    persons = crop_persons(image, faces, bodies, pairs)
    assert len(persons) == len(pairs)
    for p in persons:
        for crop, minimum in ((p.face_crop, 8), (p.body_crop, 16)):
            if crop is not None:
                assert crop.dtype == np.uint8 and crop.shape[2] == 3
                assert minimum <= crop.shape[0] <= h and minimum <= crop.shape[1] <= w


@FUZZ
@given(box=st.tuples(coordinate, coordinate, coordinate, coordinate), scale=st.floats(0.5, 2.0),
       angle=st.floats(-30, 30), flip=st.booleans(), h=st.integers(1, 64), w=st.integers(1, 64))
def test_square_crops_of_any_box_have_the_model_size(box, scale, angle, flip, h, w):
    processor = MiVOLOLiteImageProcessor(size=32)
    crop = processor.crop(np.zeros((h, w, 3), np.uint8), box, scale=scale, angle_deg=angle, flip=flip)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8


# -- the whole predictor --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_predictor():
    from mivolo_lite import AgePredictor
    from mivolo_lite.models import MiVOLOLiteModel

    torch.manual_seed(0)
    return AgePredictor(MiVOLOLiteModel(tiny_config()), MiVOLOLiteImageProcessor(size=32), flip_tta=False)


@FEW
@given(seed=st.integers(0, 10**6), h=st.integers(1, 120), w=st.integers(1, 120),
       persons=boxes(anything, max_size=4, ordered=False), faces=boxes(anything, max_size=4, ordered=False))
def test_predictor_with_random_boxes_never_crashes_a_batch(tiny_predictor, seed, h, w, persons, faces):
    det = Detections(torch.tensor(persons, dtype=torch.float32).reshape(-1, 4), torch.ones(len(persons)),
                     torch.tensor(faces, dtype=torch.float32).reshape(-1, 4), torch.ones(len(faces)))
    good = Detections(torch.tensor([[0.0, 0.0, w, h]]), torch.ones(1))
    image = random_picture(seed, h, w)
    first, second = tiny_predictor.predict([image, image], detections=[det, good], errors="record")
    if well_formed(persons) and well_formed(faces):
        assert first.ok, first.error
    else:
        assert not first.ok and "invalid detections" in first.error
    assert second.ok
    for result in (first, second):
        for p in result.persons:
            assert math.isfinite(p.age) and 0 <= p.age <= 100 and p.gender in ("male", "female")
            for box in (p.face_box, p.body_box):
                if box is not None:
                    assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h


# -- coverage-guided (atheris) -----------------------------------------------------------------------------
def test_atheris_fuzzing_of_decoding_detection_pairing_and_cropping_finds_no_crash(tmp_path):
    """A bounded libFuzzer run of ``tests/atheris_image_pipeline.py`` (in a subprocess: libFuzzer
    owns the process and exits when done), from a seed corpus of small valid images."""
    pytest.importorskip("atheris")
    import subprocess
    import sys
    from pathlib import Path

    harness = Path(__file__).with_name("atheris_image_pipeline.py")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    proc = subprocess.run([sys.executable, str(harness), "-runs=10000", "-max_total_time=90", "-seed=7",
                           "-rss_limit_mb=4096", f"-artifact_prefix={tmp_path}/", str(corpus)],
                          capture_output=True, text=True, timeout=300)
    log = proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert "Done" in proc.stderr and len(list(corpus.iterdir())) > 20, log  # seeds written and fuzzed
    assert not list(tmp_path.glob("crash-*")), log
