"""Estimator speed per preset: latency per person at batch 1 and throughput at larger batches,
face+body inputs, on this machine's CPU (and the GPU when one is present).

    python tools/benchmark_model.py [--presets lite d1] [--batches 1 8 32 128] [--threads 2]
"""

import argparse
import json
import time

import torch

from mivolo_lite.models import MiVOLOLiteConfig, MiVOLOLiteModel


def time_call(fn, min_seconds: float = 1.0, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and n >= 3:
            return elapsed / n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["lite", "d1"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    print(f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'preset':8} {'batch':>5} {'ms/batch':>10} {'ms/person':>10} {'persons/s':>10}")
    for preset in args.presets:
        cfg = MiVOLOLiteConfig.from_preset(preset)
        model = MiVOLOLiteModel(cfg).eval().fuse_for_inference().to(args.device)  # as AgePredictor runs it
        for batch in args.batches:
            x = torch.randn(batch, 3, cfg.image_size, cfg.image_size, device=args.device)
            with torch.inference_mode():
                seconds = time_call(lambda: model(x, x), min_seconds=1.0 if preset == "lite" else 2.0)
            row = {"preset": preset, "batch": batch, "ms_per_batch": 1000 * seconds,
                   "ms_per_person": 1000 * seconds / batch, "persons_per_s": batch / seconds, "device": args.device}
            rows.append(row)
            print(f"{preset:8} {batch:5d} {row['ms_per_batch']:10.2f} {row['ms_per_person']:10.2f} "
                  f"{row['persons_per_s']:10.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
