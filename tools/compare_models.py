"""Model B against model A on annotation CSVs: every figure per image and per person, with a
95 % interval of the difference from a bootstrap over people (images of one person are not
independent). Used to decide whether a new stage is better than the shipped model.

    python tools/compare_models.py mivolo_lite/pretrained/mivolo-lite-cpu runs/lite12/final \\
        runs/lite/annotations/{utkface,aaf,peta}_val.csv
"""

import sys

from mivolo_lite.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
