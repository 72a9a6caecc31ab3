"""The model report's page and selection picture (pixels, not just a file); the top terms are
tested against scikit-learn in tests/spark/test_nb_model_report.py."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from nbknn.naive_bayes.model_report import (
    CHOSEN_COLOUR,
    CURVE_COLOURS,
    model_report_html,
    selection_png,
)


def summary():
    """Two model types x two fit_prior values: the mean rises with alpha for multinomial and falls
    for complement; the chosen point is multinomial's largest alpha."""
    alphas = [0.01, 0.1, 1.0, 10.0]
    points = []
    for model_type, sign in (("multinomial", 1), ("complement", -1)):
        for fit_prior in (True, False):
            for i, alpha in enumerate(alphas):
                mean = 0.5 + sign * 0.1 * i - (0.0 if fit_prior else 0.05)
                folds = [mean - 0.02, mean + 0.02]
                points.append({"model_type": model_type, "alpha": alpha, "fit_prior": fit_prior,
                               "mean_f1_macro": mean, "fold_f1_macro": folds, "mean_accuracy": mean,
                               "fold_accuracy": folds, "mean_log_loss": 1 - mean, "fold_log_loss": folds})
    return {"metric": "f1_macro", "folds": 2, "best_index": 3, "best": points[3] | {}, "points": points}


def rgb_of(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def mask(image: np.ndarray, hex_colour: str, tolerance: int = 40) -> np.ndarray:
    return np.abs(image - rgb_of(hex_colour)).sum(axis=2) < tolerance


def test_selection_picture_draws_each_model_types_curves_and_circles_the_choice():
    with Image.open(io.BytesIO(selection_png(summary()))) as picture:
        image = np.asarray(picture.convert("RGB")).astype(int)
    # The panels meet a little right of the middle (the left one carries the y axis's labels).
    middle = int(image.shape[1] * 0.52)
    left, right = image[:, :middle], image[:, middle:]
    for half in (left, right):
        for colour in CURVE_COLOURS.values():
            assert mask(half, colour).sum() > 200
    # The chosen point is a multinomial one: circled in the left panel only.
    # (Exact colour: anti-aliased edges of the orange curve come near the red.)
    assert mask(left, CHOSEN_COLOUR, 6).sum() > 50 and mask(right, CHOSEN_COLOUR, 6).sum() == 0

    def slope(half):
        rows, cols = np.nonzero(mask(half, CURVE_COLOURS[True]))
        return np.polyfit(cols, rows, 1)[0]  # image rows grow downwards

    # Rising metric: the curve climbs (rows shrink) to the right; falling: it descends.
    assert slope(left) < -0.1 and slope(right) > 0.1


def test_page_shows_the_choice_the_table_and_escaped_terms():
    page = model_report_html(["<a>", "b"], [[("x&y", 2.0)], [("z", 1.0)]], 10.0, summary())
    assert "multinomial, alpha=10.0, fit_prior=True" in page
    assert page.count("<tr") == 1 + 16 + 1 + 2
    assert "&lt;a&gt;" in page and "x&amp;y" in page and 'src="selection.png"' in page
    assert "Selection was off" not in page


def test_page_without_selection_says_so_and_still_lists_the_top_terms():
    page = model_report_html(["<a>", "b"], [[("x&y", 2.0)], [("z", 1.0)]], 0.5)
    assert "Selection was off" in page and "selection.png" not in page and "Every grid point" not in page
    assert page.count("<tr") == 1 + 2 and "alpha=0.5" in page
    assert "&lt;a&gt;" in page and "x&amp;y" in page
