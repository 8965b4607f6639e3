"""Command line: ``mivolo-lite predict|check-age|eval|compare|calibrate|quantize|demo|publish|train``; mirrors the
Python API."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from .hub import WEIGHT_DTYPES

CSV_FIELDS = ["source", "frame", "person", "face_box", "body_box", "age", "age_std", "age_interval", "coverage",
              "gender", "gender_score", "face_score", "body_score", "track_id", "error"]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model folder or Hub repo id; None: the shipped model")
    p.add_argument("--device", default="cpu")


def _predictor(args):
    from .predictor import AgePredictor

    # unset options: the library's defaults
    options = {k: getattr(args, k) for k in ("backend", "precision") if getattr(args, k, None)}
    return AgePredictor.from_pretrained(args.model, device=args.device, detector=getattr(args, "detector", None),
                                        coverage=getattr(args, "coverage", 0.9),
                                        batch_size=getattr(args, "batch_size", 32), **options)


# export.BACKENDS, spelled out: the parser is built without importing torch (checked by a test)
BACKEND_CHOICES = ("auto", "torch", "onnx", "onnx-int8")
DETECTOR_CHOICES = ("'centernet' (default, offline), 'centernet-accurate' (finds more people, slower), "
                    "'opencv' (older offline detector), "
                    "'yolo:<weights.pt or Hub repo id>' or a path to YOLO weights (.pt)")


def _detector_arg(value: str) -> str:
    """Checked at parse time: any other name used to be taken for a Hub id and failed late, obscurely."""
    from .detection.factory import BUILT_IN_DETECTORS

    if value in BUILT_IN_DETECTORS or value.startswith("yolo:") or value.endswith(".pt"):
        return value
    raise argparse.ArgumentTypeError(f"unknown detector {value!r}; choose {DETECTOR_CHOICES}")


def _annotated_paths(items, out_dir: Path) -> dict:
    """Where each input's annotated image/video goes: its path relative to the inputs' common
    folder, so photos/a/img.jpg and photos/b/img.jpg do not overwrite each other."""
    files = [str(Path(i).resolve()) for i in items if isinstance(i, (str, Path))]
    base = Path(os.path.commonpath([str(Path(f).parent) for f in files])) if files else Path()
    return {str(i): out_dir / "annotated" / Path(f).relative_to(base) for i, f in zip(items, files)}


def _add_backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                   help="what runs the estimator: torch, onnx (onnxruntime, CPU), onnx-int8 (the int8 graphs a "
                        "model folder ships: faster, ages a little less exact) or auto (onnx on CPU if installed)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None,
                   help="torch backend: auto (bf16 autocast on a GPU for large models such as d1, else fp32), fp32, bf16 or fp16")


def _flat(row: dict) -> dict:
    out = {}
    for k in CSV_FIELDS:
        v = row.get(k)
        out[k] = " ".join(f"{x:.1f}" for x in v) if isinstance(v, (list, tuple)) else ("" if v is None else v)
    return out


def _report_skipped(skipped: list[str]) -> None:
    if skipped:  # not silently: say which files in the folders were not read
        names = ", ".join(Path(p).name for p in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"note: {len(skipped)} file(s) in the folders are not images or videos by their extension and "
              f"were not read: {names}", file=sys.stderr)


def _person_line(source: str, what: str, p) -> str:
    """``p``: a person's or a track's ``to_dict()``."""
    lo, hi = p["age_interval"]
    return (f"{source}: {what}: age {p['age']:.1f} ({p['coverage']:.0%} {lo:.0f}-{hi:.0f}), {p['gender']} "
            f"({p['gender_score']:.2f})")


class _PredictionLog:
    """What ``predict`` writes and says: CSV rows and JSON records (per image, per video frame),
    counts (a video counts once, its people once per track) and, per input, the lines shown."""

    def __init__(self):
        self.rows, self.records, self.shown = [], [], []
        self.images = self.videos = self.failed = self.persons = 0

    def _add(self, r) -> None:
        if not r.ok:
            from tqdm.auto import tqdm

            self.failed += 1
            tqdm.write(f"error: {r.error}", file=sys.stderr)
        self.rows.extend(r.rows() if (r.persons or not r.ok) else
                         [{"source": r.source, "frame": r.frame, "person": None, "error": None}])
        self.records.append(r.to_dict())

    def image(self, r) -> None:
        self._add(r)
        self.images += r.ok
        self.persons += len(r.persons)
        self.shown.append([_person_line(r.source, f"person {i}", p.to_dict()) for i, p in enumerate(r.persons)])

    def video(self, video) -> None:
        from .results import ImageResult

        for frame in video.frames:
            self._add(frame)
        if video.error:
            self._add(ImageResult(video.source, error=video.error))
        self.videos += video.ok
        self.persons += len(video.tracks)
        tracks = sorted(video.tracks.values(), key=lambda t: t.track_id)
        self.shown.append([_person_line(video.source, f"track {t.track_id}", t.to_dict()) + f", {t.frames} frame(s)"
                           for t in tracks] or [f"{video.source}: no person tracked in {len(video.frames)} frame(s)"])

    def summary(self, n_inputs: int, any_video: bool) -> str:
        ok = f"{self.images} image(s) and {self.videos} video(s) ok" if any_video else f"{self.images} image(s) ok"
        found = f"{self.persons} person(s) found" + (" (in videos: one per track)" if any_video else "")
        return f"{n_inputs} input(s): {ok}, {self.failed} failed, {found}"


def cmd_predict(args) -> int:
    from tqdm.auto import tqdm

    from .sources import expand_sources, is_video

    predictor = _predictor(args)
    skipped: list[str] = []
    items = expand_sources(args.paths, skipped)
    _report_skipped(skipped)
    if not items:
        print("no images or videos found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    out_dir = Path(args.output_dir)
    annotated = _annotated_paths(items, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = _PredictionLog()
    chunk = max(1, args.images_per_batch)
    with tqdm(total=len(items), desc="predicting", unit="file", disable=args.quiet) as bar:
        for start in range(0, len(items), chunk):
            group = items[start:start + chunk]
            for item in filter(is_video, group):  # videos go alone (annotated video out), images together
                # .mp4: VP9 where OpenCV has it, which browsers play
                log.video(predictor.predict_video(item, output=annotated[str(item)].with_suffix(".mp4")
                                                  if args.save_images else None, progress=False))
            images = [i for i in group if not is_video(i)]
            for r in predictor.predict(images, keep_images=args.save_images, errors="record") if images else []:
                log.image(r)
                if args.save_images and r.ok and r.image is not None:
                    target = annotated.get(r.source, out_dir / "annotated" / f"input_{len(log.records)}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    r.save(target.with_suffix(".jpg"))
            bar.update(len(group))
    with open(out_dir / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(_flat(r) for r in log.rows)
    with open(out_dir / "predictions.json", "w") as f:
        json.dump(log.records, f, indent=1)
    if not args.quiet:
        for line in (line for lines in log.shown[: args.show] for line in lines):
            print(line)
    print(log.summary(len(items), any(map(is_video, items))) + f"; results in {out_dir / 'predictions.csv'} and "
          f"{out_dir / 'predictions.json'}" + (f", annotated images in {out_dir / 'annotated'}" if args.save_images
                                               else ""))
    return 0 if log.failed == 0 else 1


def cmd_check_age(args) -> int:
    from .sources import expand_sources

    skipped: list[str] = []
    if not expand_sources(args.paths, skipped):  # as predict does
        _report_skipped(skipped)
        print("no images or videos found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    predictor = _predictor(args)
    results = predictor.predict(args.paths, keep_images=False, errors="record")
    status = 0
    for r in results:
        if not r.ok:
            print(f"{r.source}: error: {r.error}")
            status = 1
            continue
        for i, p in enumerate(r.persons):
            d = p.check_age(args.threshold, args.risk)
            print(f"{r.source}: person {i}: age {p.age:.1f}, P(age >= {args.threshold:g}) = {d.prob_at_least:.3f} "
                  f"-> {d.decision}")
    return status


def cmd_eval(args) -> int:
    from .evaluation.report import evaluate_model

    report = evaluate_model(args.model, args.annotations, args.output_dir, device=args.device,
                            batch_size=args.batch_size, flip_tta=not args.no_tta, limit=args.limit,
                            backend=args.backend)
    print(report.read_text())
    return 0


def cmd_compare(args) -> int:
    from .evaluation.comparison import compare_models

    results, report = compare_models(args.model_a, args.model_b, args.annotations, device=args.device,
                                     batch_size=args.batch_size, flip_tta=not args.no_tta, limit=args.limit,
                                     n_boot=args.bootstrap, backends=tuple(args.backends))
    print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def cmd_calibrate(args) -> int:
    from .evaluation.report import calibrate_model

    if args.output is None and not (args.model and Path(args.model).is_dir()):
        # before the (long) fitting: only a local model folder can be calibrated in place
        print("mivolo-lite calibrate: give --output <folder> to save the calibrated model (in place is only "
              "possible for a local --model folder)", file=sys.stderr)
        return 2
    table = calibrate_model(args.model, args.annotations, output=args.output, device=args.device,
                            batch_size=args.batch_size, limit=args.limit, weights_dtype=args.weights_dtype)
    target = Path(args.output or args.model)
    groups = table.get("true_age_groups", {})
    summary = {"age_check": table["method"], "band_edges": table["band_edges"], "band_counts": table["counts"],
               "intervals": table.get("interval_method", table["method"]), "true_age_groups": groups.get("groups"),
               "group_counts": groups.get("counts"), "fitted_on": table["fitted_on"]}
    summary_file = Path(args.json) if args.json else target / "calibration_summary.json"
    summary_file.parent.mkdir(parents=True, exist_ok=True)
    summary_file.write_text(json.dumps(summary, indent=1))
    intervals = (f"{summary['intervals']} in {len(groups['groups'])} true-age groups" if groups.get("groups")
                 else f"{summary['intervals']} in the age bands")
    print(f"calibrated on {sum(table['counts'])} faces of {table['fitted_on']}: age check {table['method']} in "
          f"{len(table['counts'])} predicted-age bands; intervals {intervals}")
    print(f"calibrated model saved in {target}; bands, groups and counts in {summary_file}")
    return 0


def cmd_quantize(args) -> int:
    from .data.annotations import read_annotations
    from .export import INT8_CALIBRATION_FILE
    from .hub import load_model_and_processor
    from .quantization import DEFAULT_CALIBRATION_SIZE, calibrate_int8, quantize_model

    if not Path(args.model).is_dir():
        print(f"mivolo-lite quantize: --model must be a saved model folder (the graphs are written into it), "
              f"not {args.model!r}", file=sys.stderr)
        return 2
    model, processor = load_model_and_processor(args.model)
    records = [r for csv in args.annotations for r in read_annotations(csv)]
    written = quantize_model(model, processor, records, args.model, n=args.crops or DEFAULT_CALIBRATION_SIZE,
                             progress=True)
    for path in written.values():
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    try:
        table = calibrate_int8(model, processor, args.annotations)
        print(f"age intervals refitted on the int8 graphs' ages of {sum(table['counts'])} people "
              f"({table['fitted_on']}): {Path(args.model) / INT8_CALIBRATION_FILE}")
    except ValueError as e:  # e.g. only age groups (PETA): intervals then use the fp32 table
        print(f"mivolo-lite quantize: int8 age intervals not refitted ({e}); the fp32 calibration will be used",
              file=sys.stderr)
    print(f"use them with: AgePredictor.from_pretrained({args.model!r}, backend='onnx-int8') "
          f"or mivolo-lite predict ... --model {args.model} --backend onnx-int8")
    return 0


def cmd_demo(args) -> int:
    from .app import launch

    launch(model=args.model, host=args.host, port=args.port, share=False)
    return 0


def cmd_publish(args) -> int:
    from .hub import publish_model, resolve_model

    where = publish_model(resolve_model(args.model), args.repo_id, private=args.private, to_cache=args.to_cache)
    print(f"{args.repo_id}: {'in the local Hugging Face cache at ' if args.to_cache else 'published, '}{where}")
    print(f"load it with: AgePredictor.from_pretrained({args.repo_id!r})"
          + (" (offline: HF_HUB_OFFLINE=1)" if args.to_cache else ""))
    return 0


def cmd_train(args) -> int:
    from .training import load_config
    from .training.trainer import train

    train(load_config(args.config, args.set), resume=args.resume, max_minutes=args.max_minutes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="mivolo-lite", description="Age and gender of every person in photos and videos.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.ArgumentDefaultsHelpFormatter  # every option's help shows its default

    p = sub.add_parser("predict", formatter_class=formatter, help="estimate age and gender in images, folders and videos")
    p.add_argument("paths", nargs="+", help="image/video files or folders (searched recursively)")
    _add_model_args(p)
    p.add_argument("--detector", default="centernet", type=_detector_arg, help=DETECTOR_CHOICES)
    _add_backend_arg(p)
    p.add_argument("--output-dir", "-o", default="mivolo_out",
                   help="folder for predictions.csv, predictions.json and annotated/")
    p.add_argument("--save-images", action="store_true", help="write annotated images/videos")
    p.add_argument("--coverage", type=float, default=0.9, help="coverage of the age intervals")
    p.add_argument("--batch-size", type=int, default=32, help="persons per estimator batch")
    p.add_argument("--images-per-batch", type=int, default=16)
    p.add_argument("--show", type=int, default=20,
                   help="print the persons of the first N inputs (of a video: its tracked persons)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("check-age", formatter_class=formatter, help="is each person at least THRESHOLD years old?")
    p.add_argument("paths", nargs="+")
    _add_model_args(p)
    p.add_argument("--detector", default="centernet", type=_detector_arg, help=DETECTOR_CHOICES)
    _add_backend_arg(p)
    p.add_argument("--threshold", type=float, default=18)
    p.add_argument("--risk", type=float, default=0.05, help="accepted probability of a wrong over/under decision")
    p.set_defaults(func=cmd_check_age)

    p = sub.add_parser("eval", formatter_class=formatter, help="metrics, report and plots on annotation CSVs")
    p.add_argument("annotations", nargs="+", help="annotation CSV files (see mivolo_lite.data.annotations)")
    _add_model_args(p)
    p.add_argument("--output-dir", "-o", default="eval_report", help="folder for the report and plots")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="a random sample of N rows of each CSV (fixed seed)")
    p.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="torch",
                   help="what runs the model; e.g. onnx-int8 measures its int8 graphs (intervals included)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", formatter_class=formatter, help="model B vs model A on annotation CSVs, with bootstrap-over-people intervals")
    p.add_argument("model_a", help="model folder or Hub id (the baseline)")
    p.add_argument("model_b", help="model folder or Hub id (the candidate)")
    p.add_argument("annotations", nargs="+", help="annotation CSV files")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None, help="a random sample of N rows of each CSV (fixed seed)")
    p.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the people")
    p.add_argument("--backends", nargs=2, choices=BACKEND_CHOICES, default=["torch", "torch"], metavar=("A", "B"),
                   help="what runs model A and model B; e.g. one model twice with 'onnx onnx-int8' measures "
                        "what its int8 graphs cost")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("quantize", formatter_class=formatter,
                       help="write a model folder's int8 graphs (backend onnx-int8), ranges fixed on real crops, "
                            "and refit the age intervals on their ages")
    p.add_argument("annotations", nargs="+",
                   help="annotation CSVs whose crops fix the activation ranges and whose exact ages refit the "
                        "int8 age intervals: crops the model may have seen (its calibration rows, as given to "
                        "calibrate), never the ones it is tested on")
    p.add_argument("--model", required=True, help="a saved model folder (the graphs are written into it)")
    p.add_argument("--crops", type=int, default=None, help="evenly spaced crops per graph (default: 256)")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("calibrate", formatter_class=formatter, help="fit the age-interval calibration of a model on held-out CSVs")
    p.add_argument("annotations", nargs="+")
    _add_model_args(p)
    p.add_argument("--output", default=None, help="folder to save the calibrated model (default: in place)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", default=None,
                   help="write the calibration's bands, groups and counts to this JSON file "
                        "(default: calibration_summary.json in the calibrated model's folder)")
    p.add_argument("--weights-dtype", choices=WEIGHT_DTYPES, default="float32",
                   help="store the weights in this dtype (float16: half the file; the model still runs in fp32)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("demo", formatter_class=formatter, help="start the Gradio web demo")
    _add_model_args(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("publish", formatter_class=formatter,
                       help="upload a model folder (weights, config, model card, evaluation) to the Hugging Face Hub")
    p.add_argument("model", help="model folder, or a shipped model's name")
    p.add_argument("repo_id", help="Hub repo id, e.g. you/mivolo-mine")
    p.add_argument("--private", action="store_true")
    p.add_argument("--to-cache", action="store_true",
                   help="put it into the local Hugging Face cache instead of uploading (for offline machines)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("train", formatter_class=formatter, help="train (prefer: accelerate launch tools/train.py --config ...)")
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--set", nargs="*", default=[])
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a clear one-line error for users; tracebacks with MIVOLO_DEBUG=1
        import os

        if os.environ.get("MIVOLO_DEBUG"):
            raise
        print(f"mivolo-lite: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
