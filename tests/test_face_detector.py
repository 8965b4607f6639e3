"""The shipped BlazeFace face detector on real faces: found where the annotations put them, few
false ones, small faces in large photos reached by tiling, safe to share between threads."""

import csv
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from mivolo_lite._image_io import load_image
from mivolo_lite.detection.blazeface import BlazeFace
from mivolo_lite.detection.opencv_detector import OpenCVDetector
from mivolo_lite.evaluation.detection import FaceMatches, group_photo


# OpenCV 5 dropped HOG and the Haar cascades (the project pins opencv-python<5; the tests at the
# end cover the detector without them)
needs_opencv_4 = pytest.mark.skipif(not hasattr(__import__("cv2"), "HOGDescriptor"),
                                    reason="OpenCV 5 has no HOG people detector or Haar cascades")


@pytest.fixture(scope="module")
def aaf_photos(annotations):
    """AAF validation originals (one person each) with their landmark face boxes."""
    with open(annotations / "aaf_val.csv") as f:
        rows = list(csv.DictReader(f))[::16][:40]
    return [(load_image(annotations / r["image"]), torch.tensor([[float(v) for v in r["face_box"].split()]]))
            for r in rows]


def test_face_matches_counts():
    truth = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10]])
    m = FaceMatches().add(torch.tensor([[0, 0, 10, 11], [50, 50, 60, 60]]), truth).add(torch.zeros(0, 4), truth)
    assert (m.faces, m.found, m.false, m.images) == (4, 1, 1, 2)
    assert m.recall == 0.25 and m.false_per_image == 0.5


def test_finds_the_face_in_real_portraits_with_few_false_ones(aaf_photos):
    detector, m = BlazeFace(), FaceMatches()
    for image, truth in aaf_photos:
        boxes, scores = detector(image)
        assert boxes.shape[1:] == (4,) and len(scores) == len(boxes) and ((scores > 0) & (scores <= 1)).all()
        m.add(boxes, truth)
    assert m.recall >= 0.95 and m.false_per_image <= 0.1


def test_tiling_reaches_small_faces_in_a_large_group_photo(aaf_photos):
    group, truth = group_photo(aaf_photos, 6)  # 1200x1536, 36 faces of about 1/12 of the image side
    whole_only = FaceMatches().add(BlazeFace(tile_grids=())(group)[0], truth)
    tiled = FaceMatches().add(BlazeFace()(group)[0], truth)
    assert tiled.recall >= 0.9 and tiled.found > whole_only.found
    assert tiled.false <= 2


def test_the_detector_can_be_shared_by_threads(aaf_photos):
    detector = BlazeFace()
    images = [image for image, _ in aaf_photos[:8]] * 3
    alone = [detector(im)[0] for im in images]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda im: detector(im)[0], images))
    assert all(torch.equal(a, b) for a, b in zip(alone, together))


@needs_opencv_4
def test_opencv_detector_face_models(aaf_photos):
    image, truth = aaf_photos[0]
    for face_model in ("blazeface", "haar"):
        det = OpenCVDetector(face_model=face_model).detect(image)
        assert FaceMatches().add(det.face_boxes, truth).found == 1, face_model
        assert len(det.person_boxes) >= 1  # a head-and-torso box below the face at least
    with pytest.raises(ValueError, match="face_model"):
        OpenCVDetector(face_model="dlib")


def test_no_faces_in_blank_or_tiny_images():
    detector = BlazeFace()
    for image in (np.full((480, 640, 3), 127, np.uint8), np.zeros((3, 5, 3), np.uint8), np.zeros((1, 2000, 3), np.uint8)):
        boxes, scores = detector(image)
        assert len(boxes) == 0 and len(scores) == 0


@needs_opencv_4
def test_people_detector_is_skipped_only_in_closeups(aaf_photos, assets, monkeypatch):
    calls = []
    detector = OpenCVDetector()
    real_bodies = detector._bodies
    monkeypatch.setattr(detector, "_bodies", lambda image: calls.append(image.shape) or real_bodies(image))
    portrait, _ = aaf_photos[0]  # the face fills a third of the frame
    det = detector.detect(portrait)
    assert calls == [] and len(det.face_boxes) == 1 and len(det.person_boxes) == 1  # head-and-torso box
    bus = detector.detect(load_image(assets / "bus.jpg"))  # small faces: people are looked for
    assert len(calls) == 1 and len(bus.person_boxes) >= 3
    detector.closeup_face_fraction = None
    detector.detect(portrait)
    assert len(calls) == 2


def test_detection_leaves_opencv_thread_count_as_it_found_it(aaf_photos):
    import cv2

    detector = OpenCVDetector()
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(1)
        detector.detect(aaf_photos[0][0])
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)


def test_without_hog_and_haar_faces_still_give_persons(aaf_photos, assets, monkeypatch):
    """OpenCV 5 dropped HOG and the Haar cascades: BlazeFace still finds the faces, each gets its
    head-and-torso box, a warning says bodies alone are not found, and Haar is refused clearly."""
    import cv2

    monkeypatch.delattr(cv2, "HOGDescriptor_getDefaultPeopleDetector", raising=False)  # as in OpenCV 5
    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.warns(RuntimeWarning, match="no HOG people detector"):
        detector = OpenCVDetector()
    for image, truth in aaf_photos[:5]:
        det = detector.detect(image)
        assert len(det.face_boxes) >= 1 and len(det.person_boxes) == len(det.face_boxes)
    bus = load_image(assets / "bus.jpg")  # a street scene: persons only where faces are
    det = detector.detect(bus)
    assert 1 <= len(det.person_boxes) == len(det.face_boxes)
    with pytest.raises(RuntimeError, match="no Haar cascades"):
        OpenCVDetector(face_model="haar")


@pytest.mark.skipif(int(__import__("cv2").__version__.split(".")[0]) < 5, reason="OpenCV 5 only")
def test_blazeface_reads_both_outputs_under_opencv_5(aaf_photos):
    boxes, scores = BlazeFace()(aaf_photos[0][0])  # the classic DNN engine: scores and boxes
    assert len(boxes) >= 1
