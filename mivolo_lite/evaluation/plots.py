"""Plots for the evaluation report (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_plots(preds, records, result: dict, checks: dict, out_dir: Path, name: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, suffix):
        path = out_dir / f"{name}_{suffix}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    exact = preds.exact_age
    if exact.any():
        y, p = preds.age_low[exact], preds.age[exact]
        fig = plt.figure(figsize=(6, 6))
        grid = fig.add_gridspec(4, 4)
        ax = fig.add_subplot(grid[1:, :3])
        ax.hexbin(y, p, gridsize=40, cmap="viridis", mincnt=1, bins="log")
        top = max(y.max(), p.max()) + 2
        ax.plot([0, top], [0, top], "w--", lw=1)
        ax.set(xlabel="true age", ylabel="predicted age", xlim=(0, top), ylim=(0, top))
        ax_top, ax_right = fig.add_subplot(grid[0, :3], sharex=ax), fig.add_subplot(grid[1:, 3], sharey=ax)
        ax_top.hist(y, bins=40, color="gray")
        ax_right.hist(p, bins=40, orientation="horizontal", color="gray")
        ax_top.set_title(f"{name}: predicted vs true (MAE {result['overall'].get('mae', float('nan')):.2f})")
        save(fig, "pred_vs_true")

        fig, ax = plt.subplots(figsize=(6, 3.5))
        bands = {k: v for k, v in result["per_age_group"].items() if "mae" in v}
        ax.bar(list(bands), [v["mae"] for v in bands.values()], color="tab:blue")
        ax.set(ylabel="MAE (years)", title=f"{name}: MAE per age group")
        save(fig, "mae_per_age")

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(p - y, bins=60, color="tab:orange")
        ax.set(xlabel="predicted - true (years)", ylabel="people", title=f"{name}: error histogram")
        save(fig, "error_hist")

        iv = result.get("intervals") or {}
        if iv.get("per_age_band"):
            fig, ax = plt.subplots(figsize=(6, 3.5))
            names = list(iv["per_age_band"])
            ax.bar(names, [100 * v["coverage"] for v in iv["per_age_band"].values()], color="tab:green")
            ax.axhline(100 * iv["coverage_target"], color="k", ls="--", lw=1)
            ax.set(ylim=(0, 100), ylabel="coverage (%)", title=f"{name}: interval coverage per age group")
            save(fig, "coverage_per_age")

        prob = np.concatenate([np.asarray(c["_prob"]) for c in checks.values()])
        truth = np.concatenate([np.asarray(c["_truth"], dtype=float) for c in checks.values()])
        if len(prob):
            edges = np.linspace(0, 1, 11)
            idx = np.clip(np.digitize(prob, edges) - 1, 0, 9)
            xs, ys = [], []
            for b in range(10):
                if (idx == b).sum() >= 5:
                    xs.append(prob[idx == b].mean())
                    ys.append(truth[idx == b].mean())
            fig, ax = plt.subplots(figsize=(4.5, 4.5))
            ax.plot([0, 1], [0, 1], "k--", lw=1)
            ax.plot(xs, ys, "o-")
            ax.set(xlabel="predicted P(age >= threshold)", ylabel="observed share", title=f"{name}: reliability "
                   f"(thresholds {', '.join(checks)})")
            save(fig, "reliability")

    interval = np.isfinite(preds.age_low) & ~exact
    if interval.any():
        groups = sorted({r.age_group for r in records if r.age_group}, key=lambda g: float(g.split("-")[0]))
        bounds = [tuple(float(v) if v else 100.0 for v in g.split("-")) for g in groups]
        truth_idx = np.array([groups.index(records[i].age_group) for i in preds.index[interval]])
        pred_age = np.round(preds.age[interval])
        pred_idx = np.array([next((k for k, (lo, hi) in enumerate(bounds) if lo <= a <= hi),
                                  0 if a < bounds[0][0] else len(bounds) - 1) for a in pred_age])
        cm = np.zeros((len(groups), len(groups)), dtype=int)
        for t, q in zip(truth_idx, pred_idx):
            cm[t, q] += 1
        fig, ax = plt.subplots(figsize=(5, 4.5))
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
        ax.set(xticks=range(len(groups)), yticks=range(len(groups)), xticklabels=groups, yticklabels=groups,
               xlabel="predicted group", ylabel="true group", title=f"{name}: age-group confusion")
        save(fig, "group_confusion")
    return written
