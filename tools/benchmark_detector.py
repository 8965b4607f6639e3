"""Face detectors of the offline default detector compared on real faces: recall and false faces
at IoU 0.4 against the landmark boxes of AAF validation photos (one person each), on the same
photos enlarged to 500 px high, and on group photos built from them (n x n grids: smaller faces
in larger images), with the time per image. Prints a table; ``--json`` writes the figures.

    python tools/benchmark_detector.py                       # blazeface (default) and haar
    python tools/benchmark_detector.py --photos 200 --grids 4 6 8 --tile-grids 2 4
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
from mivolo_lite.detection.opencv_detector import OpenCVDetector  # noqa: E402
from mivolo_lite.evaluation.detection import FaceMatches, group_photo  # noqa: E402


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--photos", type=int, default=100, help="AAF validation photos")
    parser.add_argument("--grids", type=int, nargs="*", default=[4, 6, 8], help="group photos of n x n portraits")
    parser.add_argument("--tile-grids", type=int, nargs="*", default=[2], help="BlazeFace tiling (default: 2)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not (args.data / "aaf" / "labels.csv").exists():
        parser.error(f"no AAF data at {args.data}")
    portraits = aaf_portraits(args.data, max(args.photos, max(args.grids, default=0) ** 2))
    sets = {f"AAF portraits (~225x256), {args.photos}": portraits[: args.photos],
            f"same, enlarged to 500 px high, {args.photos}": enlarged(portraits[: args.photos])}
    for n in args.grids:
        sets[f"group photo {n}x{n} ({200 * n}x{256 * n})"] = [group_photo(portraits, n)]
    detectors = {
        f"blazeface, tiles {tuple(args.tile_grids)}": OpenCVDetector(blazeface_options={"tile_grids": tuple(args.tile_grids)}),
        "haar (frontal + profile)": OpenCVDetector(face_model="haar"),
    }
    results = {}
    print(f"{'photos':42} {'face model':26} {'recall':>7} {'false/img':>9} {'ms/img':>8}")
    for set_name, photos in sets.items():
        for det_name, det in detectors.items():
            r = results.setdefault(set_name, {})[det_name] = measure(det._faces, photos)
            print(f"{set_name:42} {det_name:26} {r['recall']:7.3f} {r['false_per_image']:9.2f} {r['ms_per_image']:8.1f}",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
