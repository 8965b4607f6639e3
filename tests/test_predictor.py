import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import write_clip
from mivolo_lite._image_io import ImageLoadError
from mivolo_lite.detection import Detections
from mivolo_lite.detection.pairing import crop_persons, match_faces_to_bodies


def det(persons=(), faces=()):
    t = lambda b: torch.tensor(b, dtype=torch.float32).reshape(-1, 4)  # noqa: E731
    return Detections(t(persons), torch.ones(len(persons)), t(faces), torch.ones(len(faces)))


# -- pairing ---------------------------------------------------------------------------------------
def test_face_inside_body_is_paired():
    d = det(persons=[[100, 100, 200, 400]], faces=[[130, 110, 170, 150]])
    assert match_faces_to_bodies(d.face_boxes, d.person_boxes) == [(0, 0)]


def test_two_people_side_by_side_are_paired_crosswise_correctly():
    d = det(persons=[[300, 100, 400, 400], [100, 100, 200, 400]], faces=[[130, 110, 170, 150], [330, 110, 370, 150]])
    assert sorted(match_faces_to_bodies(d.face_boxes, d.person_boxes)) == [(0, 1), (1, 0)]


def test_face_without_body_and_body_without_face_become_single_input_persons():
    d = det(persons=[[100, 100, 200, 400], [500, 100, 600, 400]], faces=[[130, 110, 170, 150], [800, 50, 840, 90]])
    pairs = match_faces_to_bodies(d.face_boxes, d.person_boxes)
    assert sorted(pairs, key=str) == sorted([(0, 0), (1, None), (None, 1)], key=str)


def test_face_at_the_feet_of_a_body_is_not_its_face():
    d = det(persons=[[100, 100, 200, 400]], faces=[[130, 350, 170, 390]])
    assert sorted(match_faces_to_bodies(d.face_boxes, d.person_boxes), key=str) == sorted([(0, None), (None, 0)], key=str)


def test_face_of_a_closeup_is_paired_with_its_body_cut_by_the_frame():
    # a portrait: the body box ends at the bottom edge, so the face fills its lower half
    d = det(persons=[[0, 23, 227, 256]], faces=[[28, 89, 161, 222]])
    assert match_faces_to_bodies(d.face_boxes, d.person_boxes) == [(0, 0)]


def test_body_crop_hides_other_people_and_drops_mostly_hidden_crops():
    image = np.full((400, 600, 3), 200, np.uint8)
    d = det(persons=[[0, 0, 300, 400], [200, 0, 500, 400], [210, 20, 320, 390]], faces=[[20, 10, 60, 50]])
    pairs = [(0, 0), (None, 1), (None, 2)]
    persons = crop_persons(image, d.face_boxes, d.person_boxes, pairs, fill=(1, 2, 3))
    first = persons[0].body_crop
    assert first.shape[:2] == (400, 300)
    assert (first[100, 250] == (1, 2, 3)).all()  # person 1's box overlaps and is hidden
    assert (first[30, 40] == 200).all()  # own face is never hidden
    assert persons[2].body_crop is None  # entirely covered by persons 0 and 1


def test_tiny_crops_are_dropped_as_inputs():
    image = np.zeros((100, 100, 3), np.uint8)
    d = det(persons=[[10, 10, 20, 20]], faces=[[30, 30, 33, 33]])
    persons = crop_persons(image, d.face_boxes, d.person_boxes, [(0, None), (None, 0)])
    assert persons[0].face_crop is None and persons[1].body_crop is None


# -- predictor on real photos ----------------------------------------------------------------------
def test_opencv_detector_finds_people_in_bundled_photos(assets):
    from mivolo_lite.detection.opencv_detector import OpenCVDetector
    from mivolo_lite._image_io import load_image

    detector = OpenCVDetector()
    bus = detector.detect(load_image(assets / "bus.jpg"))
    zidane = detector.detect(load_image(assets / "zidane.jpg"))
    # bus.jpg: 4 people, 3 faces visible; zidane.jpg: 2 people, 2 faces (one in profile)
    assert 2 <= len(bus.face_boxes) <= 5 and 2 <= len(bus.person_boxes) <= 6
    assert 1 <= len(zidane.face_boxes) <= 4 and 1 <= len(zidane.person_boxes) <= 4
    # the frontal face of the man on the right in zidane.jpg is found
    assert any(b[0] > 850 and b[2] < 1150 and b[1] < 200 for b in zidane.face_boxes.tolist())


def test_predict_on_photos_returns_sorted_persons_with_all_fields(predictor, assets):
    results = predictor.predict([str(assets / "bus.jpg"), str(assets / "zidane.jpg")])
    assert [r.ok for r in results] == [True, True]
    for r in results:
        assert len(r.persons) >= 2
        xs = [(p.face_box or p.body_box)[0] for p in r.persons]
        assert xs == sorted(xs)
        for p in r.persons:
            assert 0 <= p.age <= 100 and p.age_std > 0 and p.gender in ("male", "female")
            assert 0.5 <= p.gender_score <= 1
            assert p.age_interval[0] <= p.age <= p.age_interval[1]
        plot = r.plot()
        assert plot.shape == r.image.shape and not np.array_equal(plot, r.image)
        df = r.to_df()
        assert len(df) == len(r.persons) and {"age", "age_std", "gender", "gender_score", "face_box"} <= set(df.columns)
        assert len(json.loads(r.to_json())["persons"]) == len(r.persons)
        assert r.face_boxes.shape[1] == 4


def test_inputs_of_every_kind_and_batching_across_images(predictor, assets, data_root):
    from PIL import Image

    pil = Image.open(assets / "zidane.jpg")
    arr = np.asarray(pil.convert("RGB"))
    r_pil, r_arr, r_path = predictor.predict([pil, arr, str(assets / "zidane.jpg")])
    assert len(r_pil.persons) == len(r_arr.persons) == len(r_path.persons)
    assert [p.age for p in r_pil.persons] == pytest.approx([p.age for p in r_arr.persons], abs=1e-3)


def test_predict_crops_keeps_order_and_handles_missing_crops(predictor, data_root):
    face = str(data_root / "utkface" / "images" / sorted((data_root / "utkface" / "images").iterdir())[0].name)
    body = str(sorted((data_root / "peta" / "images").iterdir())[0])
    both = predictor.predict_crops(faces=[face, None, face], bodies=[None, body, body])
    assert len(both) == 3 and all(0 <= p.age <= 100 for p in both)
    assert both[0].age != pytest.approx(both[1].age, abs=1e-6)
    alone = predictor.predict_crops(faces=[face])
    assert alone[0].age == pytest.approx(both[0].age, abs=1e-4)
    with pytest.raises(ValueError, match="same length"):
        predictor.predict_crops(faces=[face], bodies=[body, body])
    with pytest.raises(ValueError, match="both the face and the body"):
        predictor.predict_crops(faces=[None], bodies=[None])


def test_bad_inputs_are_recorded_in_batches_and_raised_alone(predictor, assets, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    results = predictor.predict([str(broken), str(assets / "bus.jpg"), str(empty), str(tmp_path / "missing.jpg")])
    assert [r.ok for r in results] == [False, True, False, False]
    assert "broken.jpg" in results[0].error and "not an image" in results[0].error
    assert "empty" in results[2].error and "no such file" in results[3].error
    with pytest.raises(ImageLoadError, match="broken.jpg"):
        predictor.predict(str(broken))


def test_image_without_people_gives_no_persons(predictor):
    results = predictor.predict(np.full((300, 400, 3), 127, np.uint8))
    assert results[0].ok and results[0].persons == []


def test_yolo_backend_runs_the_real_ultralytics_path(tmp_path, assets):
    from ultralytics import YOLO

    from mivolo_lite.detection.yolo_detector import YOLODetector

    model = YOLO("yolov8n.yaml")  # built from its yaml: random weights, no download
    model.model.names = {i: "person" if i == 0 else "face" if i == 1 else f"c{i}" for i in range(80)}
    weights = tmp_path / "person_face.pt"
    model.save(weights)
    detector = YOLODetector(str(weights), conf=0.0001, imgsz=320)
    assert detector.person_ids == [0] and detector.face_ids == [1]
    from mivolo_lite._image_io import load_image

    d = detector.detect(load_image(assets / "bus.jpg"))
    assert d.person_boxes.shape[1] == 4 and d.face_boxes.shape[1] == 4
    assert len(d.person_boxes) + len(d.face_boxes) > 0  # random weights at conf ~0 still emit boxes
    assert (d.person_boxes[:, 2] <= 810).all() and (d.person_boxes[:, 3] <= 1080).all()


# -- command line and video ------------------------------------------------------------------------
def test_cli_on_a_folder_with_a_broken_file(tmp_path, assets):
    src = tmp_path / "photos" / "nested"
    src.mkdir(parents=True)
    (src / "bus.jpg").write_bytes((assets / "bus.jpg").read_bytes())
    (tmp_path / "photos" / "zidane.jpg").write_bytes((assets / "zidane.jpg").read_bytes())
    (tmp_path / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "mivolo_lite.cli", "predict", str(tmp_path / "photos"), "-o", str(out),
                           "--save-images"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]  # a failure happened and is reported
    assert "3 input(s): 2 image(s) ok, 1 failed" in proc.stdout
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    sources = {r["source"].split("/")[-1] for r in rows}
    assert sources == {"bus.jpg", "zidane.jpg", "broken.png"}
    assert any(r["error"] and "broken.png" in r["error"] for r in rows)
    assert all(float(r["age"]) >= 0 for r in rows if not r["error"] and r["age"])
    assert (out / "annotated" / "nested" / "bus.jpg").exists() and (out / "predictions.json").exists()


def test_video_tracks_people_and_smooths_age(predictor, tmp_path):
    video = tmp_path / "clip.mp4"
    write_clip(video, frames=8, shift=3)
    out = tmp_path / "annotated.mp4"
    result = predictor.predict_video(video, output=out, progress=False)
    assert result.ok, result.error
    assert len(result.frames) == 8 and out.exists() and out.stat().st_size > 0
    assert result.tracks, "no person was tracked across frames"
    longest = max(result.tracks.values(), key=lambda t: t.frames)
    assert longest.frames >= 4 and 0 <= longest.age <= 100
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    # VP9 in MP4, which browsers play (mp4v plays in none; Chromium: tests/test_demo.py)
    assert int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP90" and result.output == str(out)

    # ultralytics-style exports: per person per frame, per track, and JSON
    frames = result.to_df()
    assert len(frames) == sum(len(f.persons) for f in result.frames) and {"frame", "track_id", "age"} <= set(frames)
    tracks = result.to_df(tracks=True)
    assert sorted(tracks["track_id"]) == sorted(result.tracks) and (tracks["frames"] >= 1).all()
    exported = json.loads(result.to_json())
    assert len(exported["frames"]) == 8 and len(exported["tracks"]) == len(result.tracks)
    assert exported["tracks"][0]["age_interval"][0] <= exported["tracks"][0]["age"] <= exported["tracks"][0]["age_interval"][1]


def test_predict_video_shows_its_options():
    """They were hidden behind ``**kwargs`` (help() showed nothing to pass)."""
    import inspect

    from mivolo_lite import AgePredictor

    options = list(inspect.signature(AgePredictor.predict_video).parameters)
    assert options == ["self", "path", "output", "stride", "max_frames", "progress", "max_seconds"]
    assert "stride" in AgePredictor.predict_video.__doc__ and "browsers play" in AgePredictor.predict_video.__doc__


def test_undecodable_video_is_reported_not_raised(predictor, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    result = predictor.predict_video(bad, progress=False)
    assert not result.ok and "bad.mp4" in result.error


def test_labels_of_people_side_by_side_do_not_hide_each_other():
    from mivolo_lite.results import label_boxes

    # three faces at the same height, closer together than a label is wide; one near the right edge
    anchors = [(100, 50, 140, 90), (130, 52, 170, 92), (390, 50, 400, 60)]
    boxes = label_boxes(anchors, [(120, 20)] * 3, image_width=400)
    for i, (ax1, ay1, ax2, ay2) in enumerate(boxes):
        assert 0 <= ax1 and ax2 <= 400 and ay1 >= 0  # inside the image
        for bx1, by1, bx2, by2 in boxes[i + 1:]:
            assert not (ax1 < bx2 and bx1 < ax2 and ay1 < by2 and by1 < ay2)
    assert boxes[0] == (100, 30, 220, 50)  # the first label sits right above its face


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_in_a_crowd_cover_no_other_label_and_no_face():
    """A class photo: three rows of six faces, each label three faces wide. Every label stays in
    the image and covers neither another label nor any face (they used to be stacked downwards
    over the faces below them)."""
    from mivolo_lite.results import label_boxes

    faces = [(10 + 60 * i, 50 + 130 * row, 50 + 60 * i, 90 + 130 * row) for row in range(3) for i in range(6)]
    boxes = label_boxes(faces, [(150, 20)] * len(faces), image_width=400, image_height=400, avoid=faces)
    for i, box in enumerate(boxes):
        assert 0 <= box[0] and box[2] <= 400 and 0 <= box[1] and box[3] <= 400, box
        assert not any(_overlaps(box, other) for other in boxes[i + 1:]), (i, box)
        assert not any(_overlaps(box, face) for face in faces), (i, box)


@pytest.mark.parametrize("age_check", [False, True])
def test_labels_on_the_bus_photo_leave_every_face_visible(age_check):
    """The persons OpenCV finds in ultralytics' bus.jpg, plotted on a black image of its size:
    no label is drawn inside a face box (the second label used to cover the second face). Lines
    one pixel wide: the first body box's edge crosses the second face, a label would fill it."""
    from mivolo_lite.results import ImageResult, PersonResult

    boxes = [((112.2, 425.1, 155.0, 467.9), (0.0, 329.1, 281.8, 973.7)),
             ((266.0, 428.7, 306.7, 469.4), (225.3, 408.4, 347.4, 591.5)), (None, (297.0, 514.7, 421.9, 764.4))]
    persons = [PersonResult(face, body, age=age, age_std=8.0, gender=gender, gender_score=0.9,
                            age_interval=(age - 14, age + 36))
               for (face, body), age, gender in zip(boxes, (64.4, 29.3, 30.7), ("female", "male", "female"))]
    result = ImageResult("bus.jpg", persons, image=np.zeros((1080, 810, 3), np.uint8))
    tags = [("18+ yes", (40, 170, 60))] * 3 if age_check else None
    canvas = result.plot(line_width=1, tags=tags)
    for face, _ in boxes[:2]:
        x1, y1, x2, y2 = (int(round(v)) for v in face)
        inside = canvas[y1 + 2:y2 - 1, x1 + 2:x2 - 1].any(axis=2)
        assert inside.sum() <= inside.shape[0], f"a label covers the face at {face}"  # one line at most


def test_a_frame_repeated_many_times_keeps_the_one_frame_interval():
    """Frames of a track are not independent evidence: 40 copies of one view used to shrink the
    pooled std by sqrt(40). Now identical views give the single view's age and std."""
    from mivolo_lite.video import AgeSmoother

    smoother = AgeSmoother()
    for _ in range(40):
        age, std, prob_male = smoother.update(7, 34.0, 4.5, 0.8)
    assert age == pytest.approx(34.0) and std == pytest.approx(4.5, rel=1e-6) and prob_male == pytest.approx(0.8)
    age, std, _ = smoother.update(7, 60.0, 4.5, 0.8)  # a frame that disagrees widens the interval
    assert std > 4.5
