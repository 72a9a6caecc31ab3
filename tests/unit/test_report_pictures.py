"""The per-class F1 chart of the prediction report draws the F1 values, not a blank: each bar's
length in pixels is proportional to its class's F1, largest class first."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from nbknn.naive_bayes.report_pictures import class_f1_png, report_html

BAR_RGB = np.array([0x3B, 0x75, 0xAF])


def bar_lengths(picture: bytes) -> list[int]:
    """Horizontal length in pixels of each bar, top to bottom."""
    with Image.open(io.BytesIO(picture)) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    bar = (np.abs(rgb - BAR_RGB).sum(axis=2) < 30)
    rows = np.flatnonzero(bar.any(axis=1))
    lengths, start = [], rows[0] if rows.size else None
    for previous, row in zip(rows, np.r_[rows[1:], -1]):
        if row != previous + 1:
            middle = (start + previous) // 2
            lengths.append(int(bar[middle].sum()))
            start = row
    return lengths


def test_bars_are_proportional_to_f1_largest_class_first():
    per_class = {
        "c": {"f1": 0.25, "support": 20},
        "a": {"f1": 1.0, "support": 40},
        "only_predicted": {"f1": 0.0, "support": 0},
        "b": {"f1": 0.5, "support": 30},
        "d": {"f1": 0.75, "support": 10},
    }
    lengths = bar_lengths(class_f1_png(per_class, "model $v1$"))
    assert len(lengths) == 4  # the class never true has no bar
    full = lengths[0]
    np.testing.assert_allclose(np.array(lengths) / full, [1.0, 0.5, 0.25, 0.75], atol=0.02)


def test_a_model_that_gets_nothing_right_draws_no_bar():
    per_class = {"a": {"f1": 0.0, "support": 5}, "b": {"f1": 0.0, "support": 3}}
    assert bar_lengths(class_f1_png(per_class)) == []


def test_the_page_shows_both_pictures():
    metrics = {"documents": 3, "accuracy": 1.0, "macro_f1": 1.0, "macro_precision": 1.0, "macro_recall": 1.0,
               "per_class": {"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}}}
    page = report_html(metrics, "confusion_matrix.png", "t")
    assert 'src="per_class_f1.png"' in page and 'src="confusion_matrix.png"' in page
