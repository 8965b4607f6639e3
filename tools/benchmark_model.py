"""Estimator speed per preset: latency per person at batch 1 and throughput at larger batches,
face + body inputs, on this machine's CPU (and the GPU when one is present).

    python tools/benchmark_model.py                       # lite and d1, torch, batches 1/8/32/128
    python tools/benchmark_model.py --presets lite --backends torch onnx --threads 2

This is ``tools/benchmark.py`` restricted to the estimator alone (no crops, photos or peer); any of
that script's options may be added and override these defaults.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark import main  # noqa: E402

ESTIMATOR_ONLY = ["--presets", "lite", "d1", "--backends", "torch", "--tta", "off",
                  "--crops", "0", "--portraits", "0", "--no-scenes", "--no-peer", "--min-seconds", "1"]

if __name__ == "__main__":
    main(ESTIMATOR_ONLY + sys.argv[1:])
