"""Evaluate a model on annotation CSVs: MAE, CS@5, gender accuracy, age-group accuracy,
breakdowns, interval coverage, age-check errors; writes report.md, metrics.json and plots.

    python tools/evaluate.py runs/annotations/utkface_val.csv runs/annotations/aaf_val.csv --model runs/lite/final -o reports/lite
"""

import sys

from mivolo_lite.cli import main

if __name__ == "__main__":
    sys.exit(main(["eval", *sys.argv[1:]]))
