"""Paired comparisons of two models per subgroup of the people: age group, gender, race.

Each subgroup is compared with :func:`~mivolo_lite.evaluation.comparison.compare_scores` on its own
rows, so its difference ``B - A`` gets its own bootstrap-over-people 95 % interval. A difference
whose interval lies wholly on one side of zero is one the data supports; :func:`worse_figures`
lists those where B is worse, the places to look first.
"""

from __future__ import annotations

import numpy as np

from ..calibration import AGE_GROUPS, age_group_name
from .comparison import FIGURES, compare_scores

TABLE_FIGURES = ("mae", "gender_accuracy")  # the figures of the tables and of worse_figures
LOWER_IS_BETTER = {"mae"}
MIN_PEOPLE = 20  # smaller subgroups are not compared: their intervals would say little


def subgroup_masks(records) -> dict[str, np.ndarray]:
    """Subgroup name -> which rows (of annotation records) are in it: ``all``; the age groups of
    the evaluation report (rows with an exact age); ``female`` / ``male``; ``race: X`` for every
    race the rows name. Empty subgroups are left out."""
    ages = np.array([np.nan if r.age is None else r.age for r in records], dtype=float)
    genders = np.array([r.gender or "" for r in records])
    races = np.array([r.race or "" for r in records])
    masks = {"all": np.ones(len(records), dtype=bool)}
    for lo, hi in AGE_GROUPS:
        masks[f"age {age_group_name(lo, hi)}"] = (ages >= lo) & (ages < hi + 1)  # whole groups: 12.5 is 0-12
    masks["female"], masks["male"] = genders == "F", genders == "M"
    for race in sorted(set(races) - {""}):
        masks[f"race: {race}"] = races == race
    return {name: mask for name, mask in masks.items() if mask.any()}


def compare_subgroups(scores_a: dict, scores_b: dict, records, n_boot: int = 2000, seed: int = 0,
                      min_people: int = MIN_PEOPLE) -> dict:
    """Subgroup name -> :func:`compare_scores` of A and B on its rows, for every subgroup of
    :func:`subgroup_masks` with at least ``min_people`` people (``all`` always)."""
    people = np.array([str(r.person) for r in records])
    out = {}
    for name, mask in subgroup_masks(records).items():
        if name != "all" and len(set(people[mask])) < min_people:
            continue
        out[name] = compare_scores({k: v[mask] for k, v in scores_a.items()}, {k: v[mask] for k, v in scores_b.items()},
                                   people[mask], n_boot=n_boot, seed=seed)
    return out


def verdict(figure: str, f: dict) -> int:
    """+1 where B is better than A with the whole 95 % interval on that side, -1 where it is worse,
    0 where the interval holds zero."""
    low, high = f["ci95"]
    if figure in LOWER_IS_BETTER:  # make "above zero" mean "B better"
        low, high = -high, -low
    return 1 if low > 0 else -1 if high < 0 else 0


def _figure(result: dict, figure: str, how: str) -> dict | None:
    """One figure of a :func:`compare_scores` result, counted ``how``; per image where people do
    not repeat (the result then has no per-person figures)."""
    by = result["figures"].get(figure)
    return None if by is None else by.get(how, by["images"])


def worse_figures(subgroups: dict, figures=TABLE_FIGURES, how: str = "images") -> list[tuple[str, str, dict]]:
    """``(subgroup, figure, its comparison)`` for every figure where B is worse than A beyond doubt
    (:func:`verdict` -1)."""
    return [(name, fig, f) for name, result in subgroups.items() for fig in figures
            if (f := _figure(result, fig, how)) is not None and verdict(fig, f) < 0]


def format_difference(figure: str, f: dict) -> str:
    """``+0.35 [-0.10, +0.80]`` (percentage points for rates), marked ✗ where B is worse beyond
    doubt and ✓ where it is better."""
    scale = 100 if FIGURES[figure][1] else 1
    mark = {-1: " ✗", 0: "", 1: " ✓"}[verdict(figure, f)]
    return f"{scale * f['diff']:+.2f} [{scale * f['ci95'][0]:+.2f}, {scale * f['ci95'][1]:+.2f}]{mark}"


def format_value(figure: str, v: float) -> str:
    """A figure as the tables show it: years with 2 decimals, rates as percentages."""
    return f"{100 * v:.1f} %" if FIGURES[figure][1] else f"{v:.2f}"


def subgroup_table(subgroups: dict, name_a: str = "A", name_b: str = "B", how: str = "images") -> list[str]:
    """Markdown table: a row per subgroup, for each of :data:`TABLE_FIGURES` B, A and ``B - A``
    with its interval (per image; ``how="people"`` counts every person once where people repeat)."""
    head = ["subgroup", "images", "people"]
    for fig in TABLE_FIGURES:
        label = FIGURES[fig][0]
        head += [f"{label} {name_b}", f"{label} {name_a}", f"{name_b} - {name_a} [95 % CI]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in subgroups.items():
        cells = [name, str(result["n_images"]), str(result["n_people"])]
        for fig in TABLE_FIGURES:
            f = _figure(result, fig, how)
            cells += (["–"] * 3 if f is None else
                      [format_value(fig, f["b"]), format_value(fig, f["a"]), format_difference(fig, f)])
        lines.append("| " + " | ".join(cells) + " |")
    return lines
