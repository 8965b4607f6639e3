"""How far do the calibrated intervals' figures move with the split? Repeated K-fold cross-fit:
pool the people of the given CSVs, and for each fold fit the calibration on the other folds
(subsampled to the size of a real calibration set) and measure coverage on the fold; printed per
CSV and per true-age group, for the intervals by true-age group (shipped) and by predicted-age band.

    python tools/research/calibration_crossfit.py runs/lite/annotations/{utkface,aaf}_{calib,val}.csv \
        --model mivolo_lite/pretrained/mivolo-lite-cpu --calib-size 711
"""

import argparse
from pathlib import Path

import numpy as np

from mivolo_lite.calibration import AGE_GROUPS, CALIBRATION_GROUPS, AgeCalibration, age_group_name
from mivolo_lite.evaluation.report import exact_age_predictions
from mivolo_lite.hub import load_model_and_processor

METHODS = {"true-age groups": CALIBRATION_GROUPS, "predicted-age bands": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("annotations", nargs="+", help="annotation CSVs with exact ages (calib and validation folds)")
    parser.add_argument("--model", default="mivolo_lite/pretrained/mivolo-lite-cpu")
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--calib-size", type=int, default=None, help="people per fitted calibration (default: all other folds)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = load_model_and_processor(args.model)
    per_csv = exact_age_predictions(model, args.annotations)
    # sets are named by file with the fold removed: utkface_calib + utkface_val -> utkface
    names = [Path(a).stem.rsplit("_", 1)[0] for a in args.annotations]
    age, std, truth = (np.concatenate(c) for c in zip(*per_csv))
    source = np.concatenate([[name] * len(p[0]) for name, p in zip(names, per_csv)])
    rng = np.random.default_rng(args.seed)
    print(f"{len(truth)} people; {args.repeats} x {args.folds}-fold; coverage {args.coverage}")
    print("| intervals | set | overall | " + " | ".join(age_group_name(lo, hi) for lo, hi in AGE_GROUPS) + " |")
    print("|---" * (3 + len(AGE_GROUPS)) + "|")
    for method, groups in METHODS.items():
        covered = np.zeros((args.repeats, len(truth)), bool)
        for rep in range(args.repeats):
            fold = rng.integers(0, args.folds, len(truth))
            for f in range(args.folds):
                fit = np.nonzero(fold != f)[0]
                if args.calib_size:
                    fit = rng.choice(fit, min(args.calib_size, len(fit)), replace=False)
                cal = AgeCalibration.fit(age[fit], std[fit], truth[fit], age_groups=groups)
                test = fold == f
                low, high = cal.interval(age[test], std[test], args.coverage)
                covered[rep, test] = (truth[test] >= low) & (truth[test] <= high)
        rate = covered.mean(0)
        for name in dict.fromkeys(names):
            sel = source == name
            cells = [f"{100 * rate[sel & (truth >= lo) & (truth <= hi)].mean():.1f}" for lo, hi in AGE_GROUPS]
            print(f"| {method} | {name} | {100 * rate[sel].mean():.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
