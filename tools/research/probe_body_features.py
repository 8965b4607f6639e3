"""How much a model's body branch knows, against how much its heads say: linear probes of age group
and gender on its features of body-only crops (PETA-style CSVs with age groups).

For every body crop (the face treated as absent, as for a pedestrian seen from behind) the tool
takes three features, each averaged over the token grid: the body stem's tokens (trunk + projection),
the body encoder's tokens (after its transformer blocks), and the pooled vector the heads read
(after fusion, the stages and class attention). On the training CSV it fits a multinomial logistic
regression (age group) and a logistic regression (gender) per feature, standardised, L2-regularised,
and reports their accuracy on the validation CSV, beside the model's own heads and the majority
group. A probe far above the heads means the information is there and the layers after it do not
pass it on (what configs/mobile_refit_body.yaml was made for):

    python tools/research/probe_body_features.py runs/mobile/annotations/peta_train.csv \\
        runs/mobile/annotations/peta_val.csv --model runs/mobile_rebalance/final
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mivolo_lite.data.annotations import evenly_spaced, read_annotations
from mivolo_lite.data.dataset import AgeDataset
from mivolo_lite.evaluation.metrics import summarize_predictions
from mivolo_lite.hub import load_model_and_processor

FEATURES = ("stem", "encoder", "pooled")


@torch.no_grad()
def body_features(model, processor, records, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Features of each record's body crop (``FEATURES``), the heads' age and P(male), and the labels.
    One forward pass per batch: hooks take the stem's and the encoder's tokens and the pooled vector
    on the way (a body-only batch runs the body encoder once, on every sample)."""
    records = [r for r in records if r.body_box is not None]
    if not records:
        raise ValueError("no row has a body box")
    loader = DataLoader(AgeDataset(records, processor), batch_size=batch_size)
    parts: dict[str, list] = {k: [] for k in (*FEATURES, "age", "male", "low", "high", "gender")}
    taps = {"stem": (model.body_encoder.stem, lambda out: out.mean(dim=(1, 2))),
            "encoder": (model.body_encoder, lambda out: out.mean(dim=(1, 2))),
            "pooled": (model.norm, lambda out: out)}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name, f=f: parts[name].append(f(out).float()))
             for name, (module, f) in taps.items()]
    try:
        for batch in tqdm(loader, desc="body features", leave=False):
            out = model(body_pixel_values=batch["body_pixel_values"])
            parts["age"].append(out.age)
            parts["male"].append(out.gender_prob)
            for key, field in (("low", "age_low"), ("high", "age_high"), ("gender", "gender")):
                parts[key].append(batch[field])
    finally:
        for hook in hooks:
            hook.remove()
    return {k: torch.cat(v) for k, v in parts.items()}


def _fit_linear(x: torch.Tensor, target: torch.Tensor, classes: int, l2: float) -> torch.nn.Linear:
    """Logistic (classes == 1) or multinomial logistic regression by L-BFGS."""
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=300, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        logits = linear(x)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.float()) if classes == 1
                else torch.nn.functional.cross_entropy(logits, target))
        loss = loss + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return linear


def probe(train: dict, val: dict, l2: float = 1e-3) -> dict:
    """Validation accuracies of linear probes on each feature, of the model's heads, and of the
    majority group. Age groups are the distinct (low, high) intervals of the training rows."""
    groups = sorted(set(zip(train["low"].tolist(), train["high"].tolist())))
    index = {g: i for i, g in enumerate(groups)}

    def group_ids(d):
        return torch.tensor([index.get(g, -1) for g in zip(d["low"].tolist(), d["high"].tolist())])

    y, y_val = group_ids(train), group_ids(val)
    known_val = y_val >= 0
    g, g_val = train["gender"], val["gender"]
    report = {"groups": [f"{lo:g}-{hi:g}" for lo, hi in groups], "n_train": len(y), "n_val": int(known_val.sum())}
    counts = np.bincount(y_val[known_val].numpy(), minlength=len(groups))
    report["majority_group"] = float(counts.max() / max(counts.sum(), 1))
    heads = summarize_predictions(*(val[k].numpy() for k in ("age", "male", "low", "high", "gender")))
    report["heads"] = {"group": heads["group_accuracy"], "gender": heads["gender_accuracy"]}
    for name in FEATURES:
        x, x_val = train[name], val[name]
        mean, std = x.mean(0), x.std(0) + 1e-6
        x, x_val = (x - mean) / std, (x_val - mean) / std
        group_probe = _fit_linear(x, y, len(groups), l2)
        gender_rows = g >= 0
        gender_probe = _fit_linear(x[gender_rows], g[gender_rows], 1, l2)
        with torch.no_grad():
            group_acc = (group_probe(x_val).argmax(1) == y_val)[known_val].float().mean()
            gender_acc = ((gender_probe(x_val)[:, 0] > 0).long() == g_val)[g_val >= 0].float().mean()
        report[name] = {"group": float(group_acc), "gender": float(gender_acc)}
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train_csv", help="annotation CSV with body boxes and age groups, to fit the probes on")
    parser.add_argument("val_csv", help="annotation CSV to measure them on (other people)")
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--limit", type=int, default=None, help="evenly spaced N rows of each CSV")
    parser.add_argument("--l2", type=float, default=1e-3, help="L2 penalty of the probes")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, processor = load_model_and_processor(args.model)
    model.eval()
    features = [body_features(model, processor, evenly_spaced(read_annotations(path), args.limit))
                for path in (args.train_csv, args.val_csv)]
    report = probe(*features, l2=args.l2)
    print(f"{args.model}: {report['n_train']} training and {report['n_val']} validation bodies, "
          f"groups {', '.join(report['groups'])}; majority group {report['majority_group']:.1%}")
    print("| what reads the body | age group | gender |\n|---|---|---|")
    print(f"| the model's heads | {report['heads']['group']:.1%} | {report['heads']['gender']:.1%} |")
    for name in FEATURES:
        print(f"| linear probe on `{name}` | {report[name]['group']:.1%} | {report[name]['gender']:.1%} |")
    return report


if __name__ == "__main__":
    main()
