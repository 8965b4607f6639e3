"""Average the weights of sibling models (fine-tunings of one parent) into one model: a "model
soup" (mivolo_lite.models.soup). The soup costs no more to run than one model; fit its age
calibration afterwards, as for any new model, and compare it with the shipped one:

    python tools/research/average_models.py runs/lite34/final runs/lite35/final runs/lite36/final -o runs/soup
    python tools/calibrate.py runs/lite/annotations/{utkface,aaf}_calib.csv --model runs/soup
    python tools/compare_models.py mivolo_lite/pretrained/mivolo-lite-cpu runs/soup runs/lite/annotations/{utkface,aaf,peta}_val.csv

The output folder also gets ``soup.json``: the ingredients and their weights.
"""

import argparse
import json
from pathlib import Path

from mivolo_lite.hub import load_model_and_processor, save_model
from mivolo_lite.models.soup import average_models


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model folders or Hub ids (safetensors weights), two or more")
    parser.add_argument("--weights", type=float, nargs="+", default=None,
                        help="one weight per model (default: uniform); normalised to sum to 1")
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="average only these parts (state-dict names or their prefixes, e.g. "
                             "body_encoder.blocks); the rest is the first model's")
    parser.add_argument("--output", "-o", required=True)
    args = parser.parse_args(argv)
    loaded = [load_model_and_processor(name) for name in args.models]
    try:
        soup = average_models([model for model, _ in loaded], args.weights, names=args.models, only=args.only)
    except ValueError as error:
        parser.error(str(error))
    out = Path(args.output)
    save_model(soup, loaded[0][1], out)
    weights = args.weights or [1.0] * len(args.models)
    recipe = {"ingredients": [str(m) for m in args.models], "weights": [w / sum(weights) for w in weights]}
    if args.only:
        recipe["only"] = args.only
    (out / "soup.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"averaged {len(args.models)} models into {out} (weights {recipe['weights']}); "
          "no age calibration yet: run tools/calibrate.py on held-out CSVs")


if __name__ == "__main__":
    main()
