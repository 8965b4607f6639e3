"""mivolo_lite.evaluation.conditions (simulated photo conditions) and .subgroups (paired comparisons
per age group, gender and race): the conditions are deterministic and change the pixels as they
say; the subgroups hold the right rows, and a subgroup where B is worse is the one listed."""

import cv2
import numpy as np
import pytest

from conftest import random_image
from mivolo_lite.data.annotations import AnnotationRecord
from mivolo_lite.evaluation.conditions import CONDITIONS, SEPIA, apply_condition, record_seed
from mivolo_lite.evaluation.subgroups import compare_subgroups, subgroup_masks, subgroup_table, verdict, worse_figures


def smooth_photo(h=180, w=160, seed=0):
    """A photo-like image: a smooth light-to-dark gradient, colour tints and some texture."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    light = 50 + 150 * (0.5 + 0.5 * np.sin(3 * x) * np.cos(2 * y))
    base = np.stack([light * (1 - 0.15 * c) + 20 * np.sin(5 * y + c) for c in range(3)], axis=2)
    return np.clip(base + random_image(h, w, seed) * 0.1, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_conditions_are_deterministic_and_leave_the_input_alone(condition):
    photo = smooth_photo()
    before = photo.copy()
    first = apply_condition(photo, condition, (20, 30, 140, 170), seed=(3, 7))
    assert np.array_equal(photo, before)
    assert first.shape == photo.shape and first.dtype == np.uint8
    assert np.array_equal(first, apply_condition(photo, condition, (20, 30, 140, 170), seed=(3, 7)))
    if condition != "original":
        assert not np.array_equal(first, photo)


def test_random_conditions_depend_on_the_seed_and_rows_get_their_own_seed():
    photo = smooth_photo()
    assert not np.array_equal(apply_condition(photo, "old-photo", seed=1), apply_condition(photo, "old-photo", seed=2))
    # the file's name, not its path: a run from another folder conditions alike
    assert record_seed("/a/x.jpg", (1, 2, 3, 4)) == record_seed("/elsewhere/x.jpg", (1, 2, 3, 4))
    assert record_seed("/a/x.jpg", (1, 2, 3, 4)) != record_seed("/a/y.jpg", (1, 2, 3, 4))
    assert record_seed("/a/x.jpg", (1, 2, 3, 4)) != record_seed("/a/x.jpg", (1, 2, 3, 5))
    assert record_seed("/a/x.jpg", None, seed=1) != record_seed("/a/x.jpg", None, seed=2)


def test_old_photo_is_a_grey_or_sepia_faded_print():
    photo = smooth_photo()
    tones = set()
    for seed in range(8):
        out = apply_condition(photo, "old-photo", seed=seed).astype(float)
        r, g, b = out[..., 0], out[..., 1], out[..., 2]
        if np.array_equal(r, g) and np.array_equal(g, b):
            tones.add("grey")
        else:  # one grey value per pixel, tinted: every channel a fixed share of red (up to rounding)
            assert np.abs(g - SEPIA[1] * r).max() <= 1.0 and np.abs(b - SEPIA[2] * r).max() <= 1.0
            tones.add("sepia")
        assert out[..., 0].std() < 0.8 * cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).std()  # faded: less contrast
        assert out.min() > 0  # lifted blacks
    assert tones == {"grey", "sepia"}


def high_frequency_energy(image: np.ndarray, cutoff: float) -> float:
    """Power of the grey image's spectrum above ``cutoff`` cycles per pixel (either axis)."""
    grey = image.astype(float).mean(axis=2)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[0]), np.fft.fftfreq(grey.shape[1]), indexing="ij")
    return float(power[(np.abs(fy) > cutoff) | (np.abs(fx) > cutoff)].sum())


def test_low_res_removes_the_detail_a_small_face_cannot_hold():
    photo = random_image(200, 200, seed=1)  # white noise: energy at every frequency
    out = apply_condition(photo, "low-res", (0, 0, 200, 200), seed=0)
    assert out.shape == photo.shape
    # the face shrinks to at most 32 px of 200: no detail finer than that grid's Nyquist frequency
    # survives (under 0.1 % of the energy measured; the bilinear upscaling leaks a little)
    cutoff = 0.5 * 32 / 200
    assert high_frequency_energy(out, cutoff) < 0.01 * high_frequency_energy(photo, cutoff)
    # the strength follows the face: a 24 px face in the same photo is left as it is
    assert np.array_equal(apply_condition(photo, "low-res", (50, 50, 74, 74), seed=0), photo)


def test_dark_is_darker_and_keeps_the_order_of_brightness():
    photo = smooth_photo()
    out = apply_condition(photo, "dark", seed=0).astype(float)
    assert out.mean() < 0.65 * photo.mean()
    assert np.corrcoef(out.ravel(), photo.astype(float).ravel())[0, 1] > 0.95


def test_unknown_condition_is_named():
    with pytest.raises(ValueError, match="'foggy'.*old-photo"):
        apply_condition(smooth_photo(), "foggy")


def people(ages, genders, races=None):
    races = races or [None] * len(ages)
    return [AnnotationRecord(image=f"p{i}.jpg", age=a, gender=g, race=r, group_id=f"person{i}")
            for i, (a, g, r) in enumerate(zip(ages, genders, races))]


def test_subgroups_hold_the_right_rows():
    records = people([3, 12, 12.5, 13, 19, 25, 69.5, 70, 95, None], list("FFMMFFMMFM"),
                     ["white", "black", "white", None, "asian", "white", "black", "white", "white", "asian"])
    masks = subgroup_masks(records)
    counts = {name: int(mask.sum()) for name, mask in masks.items()}
    assert counts == {"all": 10, "age 0-12": 3, "age 13-19": 2, "age 20-29": 1, "age 60-69": 1, "age 70+": 2,
                      "female": 5, "male": 5, "race: asian": 2, "race: black": 2, "race: white": 5}
    assert list(np.flatnonzero(masks["age 0-12"])) == [0, 1, 2]
    assert "age 30-39" not in masks  # empty subgroups are left out
    assert not any(name.startswith("race") for name in subgroup_masks(people([30, 40], ["F", "M"])))


def scores(errors, hits):
    errors, hits = np.asarray(errors, float), np.asarray(hits, float)
    return {"mae": errors, "cs5": (errors <= 5).astype(float), "group_accuracy": np.full(len(errors), np.nan),
            "gender_accuracy": hits}


def test_the_subgroup_built_to_lose_is_the_one_listed():
    rng = np.random.default_rng(0)
    ages = [8] * 30 + [25] * 30 + [45] * 30
    records = people(ages, ["F", "M"] * 45)
    base = rng.uniform(2, 8, len(ages))
    a = scores(base, np.ones(len(ages)))
    worse = base + np.where(np.array(ages) == 8, rng.uniform(3, 6, len(ages)), rng.normal(0, 0.2, len(ages)))
    b = scores(worse, np.ones(len(ages)))
    result = compare_subgroups(a, b, records, n_boot=300, min_people=20)
    assert set(result) == {"all", "age 0-12", "age 20-29", "age 40-49", "female", "male"}
    assert result["age 0-12"]["n_images"] == 30 and result["female"]["n_people"] == 45
    lost = {(name, fig) for name, fig, _ in worse_figures(result)}
    assert ("age 0-12", "mae") in lost
    assert not lost & {("age 20-29", "mae"), ("age 40-49", "mae")}
    assert all(fig == "mae" for _, fig in lost)  # equal gender answers are no loss
    table = "\n".join(subgroup_table(result, "peer", "ours"))
    assert "| age 0-12 | 30 | 30 |" in table and "✗" in table
    # fewer people than min_people: not compared (only "all" always is)
    assert set(compare_subgroups(a, b, records, n_boot=50, min_people=50)) == {"all"}


def test_verdict_reads_the_direction_of_each_figure():
    assert verdict("mae", {"ci95": [0.2, 1.0]}) == -1  # B's error is larger: worse
    assert verdict("mae", {"ci95": [-1.0, -0.2]}) == 1
    assert verdict("gender_accuracy", {"ci95": [-0.05, -0.01]}) == -1  # B's accuracy is lower: worse
    assert verdict("gender_accuracy", {"ci95": [-0.05, 0.01]}) == 0
