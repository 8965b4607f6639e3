"""The offline default detector: CenterNet persons + BlazeFace faces, shipped in the package.

The shipped ONNX network gives the original TFJS runtime's outputs on real photos; the detector
finds people on real COCO photos at the precision it was tuned for, finds the people of
ultralytics' two scenes with their faces inside their boxes and no fragment as a person, copes
with blank and tiny images and threads; the spec strings and the import layout hold."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch

from mivolo_lite._image_io import load_image
from mivolo_lite.detection import build_detector
from mivolo_lite.detection.centernet import CenterNetPersons
from mivolo_lite.detection.centernet_detector import ACCURATE, CenterNetDetector
from mivolo_lite.detection.fusion import weighted_box_fusion
from mivolo_lite.detection.pairing import face_in_body_scores, match_faces_to_bodies
from mivolo_lite.evaluation.detection import BoxMatches, read_box_annotations

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(__file__).parent / "data" / "centernet_tfjs_reference.json"
BACKENDS = ["opencv"] + (["onnxruntime"] if all(find_spec(m) for m in ("onnx", "onnxruntime")) else [])


@pytest.fixture(scope="module")
def detector():
    return CenterNetDetector()


@pytest.fixture(scope="module")
def coco128(data_root):
    folder = data_root / "detection" / "coco128"
    if not (folder / "boxes.csv").exists():
        pytest.skip("no detection/coco128 data")
    labels = read_box_annotations(folder / "boxes.csv")
    files = sorted(f"images/{p.name}" for p in (folder / "images").iterdir() if p.suffix == ".jpg")
    return folder, files, labels


def test_box_matches_counts_and_average_precision():
    truth = torch.tensor([[0, 0, 10, 10], [20, 0, 30, 10]])
    boxes = torch.tensor([[0, 0, 10, 11], [0, 0, 10, 10], [50, 50, 60, 60]])  # a hit, its duplicate, a miss
    m = BoxMatches(0.5).add(boxes, torch.tensor([0.9, 0.8, 0.7]), truth).add(torch.zeros(0, 4), [], truth)
    assert m.at(0.0) == {"threshold": 0.0, "recall": 0.25, "precision": 1 / 3, "found": 1, "false": 2,
                         "labelled": 4, "images": 2}
    assert m.at(0.85)["precision"] == 1.0 and m.at(0.95)["found"] == 0
    assert m.average_precision() == pytest.approx(26 / 101)  # precision 1 up to recall 0.25, none after


def test_shipped_network_matches_the_original_tfjs_runtime():
    """tests/data holds the top heat-map cells of the original TFJS model (tfjs 4.22.0) on four
    coco128 photos; the shipped ONNX file, run by OpenCV as the library runs it, agrees."""
    sys.path.insert(0, str(REPO / "tools"))
    from convert_detectors import letterboxed

    reference = json.loads(REFERENCE.read_text())
    folder = REPO.parent / "shared" / "data" / "detection" / "coco128" / "images"
    if not folder.exists():
        pytest.skip("no detection/coco128 data")
    for backend in BACKENDS:
        run = CenterNetPersons(backend=backend)._run
        for photo in reference["photos"]:
            image = letterboxed(np.asarray(load_image(folder / photo["file"])), reference["size"])
            heat, sizes = run(image[None])
            rows, cols = np.asarray(photo["cells"]).T
            np.testing.assert_allclose(heat[0][rows, cols], photo["heat"], atol=1e-5, err_msg=backend)
            np.testing.assert_allclose(sizes[0][rows, cols], photo["sizes"], atol=0.02, err_msg=backend)


def test_both_backends_find_the_same_people(assets):
    if len(BACKENDS) < 2:
        pytest.skip("onnxruntime or onnx not installed")
    image = load_image(assets / "bus.jpg")  # portrait: a canvas unlike the file's export size
    (a, sa), (b, sb) = (CenterNetPersons(backend=backend)(image) for backend in BACKENDS)
    assert len(a) == 3 and torch.allclose(a, b, atol=0.01) and torch.allclose(sa, sb, atol=1e-5)
    assert CenterNetPersons().backend == "onnxruntime"  # "auto" takes the faster one


def test_finds_people_in_real_coco_photos(detector, coco128):
    """Every other coco128 photo (64 photos, 140 labelled people, small ones included). The
    older OpenCV detector found 17 % of the people at 43 % precision on held-out COCO photos."""
    folder, files, labels = coco128
    m = BoxMatches(0.5)
    for f in files[::2]:
        det = detector.detect(load_image(folder / f))
        m.add(det.person_boxes, det.person_scores, labels.get(f, {}).get("person", torch.zeros(0, 4)))
    result = m.at(0.0)
    assert result["labelled"] == 140, result
    assert result["recall"] >= 0.53 and result["precision"] >= 0.78, result  # measured: 0.571, 0.808


def test_the_accurate_detector_finds_more_people(coco128):
    """32 photos (59 labelled people) with the person network at three input sizes, fused: more
    of the people, no more false ones (the default finds 33, with 7 false)."""
    folder, files, labels = coco128
    accurate, m = build_detector("centernet-accurate"), BoxMatches(0.5)
    assert accurate.persons.sizes == (512, 768, 1024)
    for f in files[1::4]:
        det = accurate.detect(load_image(folder / f))
        m.add(det.person_boxes, det.person_scores, labels.get(f, {}).get("person", torch.zeros(0, 4)))
    result = m.at(0.0)
    assert result["labelled"] == 59, result
    assert result["found"] >= 39 and result["false"] <= 7, result  # measured: 41 found, 5 false


def test_weighted_box_fusion_averages_agreeing_passes():
    """Two passes: a person both saw (one fused box at the score-weighted mean, the mean score)
    and one that only the second saw (half its score: the first pass counts as 0)."""
    first = (torch.tensor([[0.0, 0, 10, 20]]), torch.tensor([0.6]))
    second = (torch.tensor([[2.0, 0, 12, 20], [50, 50, 60, 70]]), torch.tensor([0.2, 0.8]))
    boxes, scores = weighted_box_fusion([first, second])
    assert torch.allclose(scores, torch.tensor([0.4, 0.4]))
    assert torch.allclose(boxes, torch.tensor([[50.0, 50, 60, 70], [0.5, 0, 10.5, 20]]))
    empty = (torch.zeros(0, 4), torch.zeros(0))
    assert weighted_box_fusion([empty, empty])[0].shape == (0, 4)
    # boxes overlapping at IoU 0.55 (the default) or less stay apart: here 0.5
    apart = weighted_box_fusion([(torch.tensor([[0.0, 0, 12, 10]]), torch.tensor([0.5])),
                                 (torch.tensor([[4.0, 0, 16, 10]]), torch.tensor([0.5]))])
    assert len(apart[0]) == 2


def _paired(det):
    return {(fi, bi) for fi, bi in match_faces_to_bodies(det.face_boxes, det.person_boxes) if None not in (fi, bi)}


def test_scenes_people_with_their_faces_and_no_fragments(detector, assets):
    bus = load_image(assets / "bus.jpg")
    det = detector.detect(bus)
    heights = det.person_boxes[:, 3] - det.person_boxes[:, 1]
    # the three men in front, whole: no box is a part of someone (HOG found a man's legs alone)
    assert len(det.person_boxes) >= 3 and (heights >= 0.4 * bus.shape[0]).all()
    assert len(det.face_boxes) >= 2 and len(_paired(det)) >= 2
    zidane = detector.detect(load_image(assets / "zidane.jpg"))
    assert len(zidane.person_boxes) == 2 and len(zidane.face_boxes) == 2
    assert len(_paired(zidane)) == 2  # each face in its own person's box
    assert (face_in_body_scores(zidane.face_boxes, zidane.person_boxes).max(dim=1).values >= 0.99).all()


def test_a_face_backs_a_weaker_person_box(detector, assets):
    """On zidane.jpg the second man's body scores below the threshold; his face keeps it."""
    strict = CenterNetDetector(face_supported_threshold=detector.score_threshold)
    image = load_image(assets / "zidane.jpg")
    assert len(strict.detect(image).person_boxes) == 1
    assert len(detector.detect(image).person_boxes) == 2


def test_blank_and_tiny_images(detector):
    for image in (np.full((480, 640, 3), 127, np.uint8), np.zeros((3, 5, 3), np.uint8), np.zeros((1, 2000, 3), np.uint8),
                  np.random.default_rng(0).integers(0, 255, (9, 3000, 3), dtype=np.uint8)):
        det = detector.detect(image)
        assert len(det.person_boxes) == 0 and len(det.face_boxes) == 0


def test_the_detector_can_be_shared_by_threads(detector, assets):
    images = [load_image(assets / name) for name in ("bus.jpg", "zidane.jpg")] * 3
    alone = [detector.detect(im).person_boxes for im in images]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda im: detector.detect(im).person_boxes, images))
    assert all(torch.equal(a, b) for a, b in zip(alone, together))


def test_detector_specs():
    from mivolo_lite.cli import _detector_arg
    from mivolo_lite.detection.opencv_detector import OpenCVDetector

    assert isinstance(build_detector(None), CenterNetDetector)
    assert isinstance(build_detector("centernet"), CenterNetDetector)
    assert isinstance(build_detector("opencv"), OpenCVDetector)
    assert _detector_arg("centernet") == "centernet"
    with pytest.raises(TypeError, match="centernet"):
        build_detector(3)
    with pytest.raises(ValueError, match="input_size"):
        CenterNetPersons(input_size=16)
    with pytest.raises(ValueError, match="input_size"):
        CenterNetPersons(input_size=(512, 16))
    with pytest.raises(ValueError, match="input_size"):
        CenterNetPersons(input_size=())
    accurate = build_detector("centernet-accurate")
    assert isinstance(accurate, CenterNetDetector) and accurate.persons.sizes == ACCURATE["input_size"]
    assert accurate.name == "centernet-accurate" and build_detector(None).name == "centernet"
    assert _detector_arg("centernet-accurate") == "centernet-accurate"
    with pytest.raises(ValueError, match="backend"):
        CenterNetPersons(backend="tensorrt")


def test_the_interface_module_imports_no_backend():
    """detection/base.py is imported by every backend; the factory lives apart (no cycle)."""
    code = ("import sys, mivolo_lite.detection.base as b; "
            "print(sorted(m for m in sys.modules if m.startswith('mivolo_lite.detection.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    backends = {"blazeface", "centernet", "centernet_detector", "opencv_detector", "yolo_detector", "pairing"}
    loaded = {name.rsplit(".", 1)[1] for name in eval(out)}
    assert "base" in loaded and "factory" in loaded and not loaded & backends, loaded


def test_yunet_finds_the_labelled_faces_of_coco_photos(coco128):
    """The 29 machine-made face boxes of coco128 (IoU 0.4): YuNet finds 27, BlazeFace with
    its 2x2 tiles 19; the baseball crowd of 000000000544.jpg, unlabelled, is found too."""
    from mivolo_lite.detection.yunet import YuNet

    folder, files, labels = coco128
    yunet, m = YuNet(), BoxMatches(0.4)
    for f in files:
        if "face" in labels.get(f, {}):
            boxes, scores = yunet(load_image(folder / f))
            m.add(boxes, scores, labels[f]["face"])
    assert m.labelled == 29 and m.at(0.0)["found"] >= 26, m.at(0.0)
    assert len(yunet(load_image(folder / "images" / "000000000544.jpg"))[0]) >= 8  # measured: 10
