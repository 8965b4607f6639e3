"""Fit the calibrated age intervals of a model on held-out annotation CSVs (never its training
split) and save the model with the calibration table.

    python tools/calibrate.py runs/annotations/utkface_calib.csv runs/annotations/aaf_calib.csv --model runs/lite/final
"""

import sys

from mivolo_lite.cli import main

if __name__ == "__main__":
    sys.exit(main(["calibrate", *sys.argv[1:]]))
