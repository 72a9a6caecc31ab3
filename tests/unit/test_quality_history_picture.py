"""The quality-history picture draws the rows' values: each run's accuracy and macro-F1 are found
in the rendered PNG at the pixel where the axes put that value, in the line's own colour; model
changes and the run order come from the rows (no Spark: the rows are built here)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from nbknn.naive_bayes.quality_history import QualityRow, history_figure, history_png, history_series
from nbknn.naive_bayes.report_pictures import report_html

ACCURACY_RGB = np.array([0x3B, 0x75, 0xAF])
MACRO_F1_RGB = np.array([0xE0, 0x7B, 0x39])


def row(key: str, date: str | None, version: str, accuracy: float, macro_f1: float) -> QualityRow:
    return QualityRow(run_key=key, run_date=date, model_version=version, documents=100, accuracy=accuracy,
                      macro_f1=macro_f1, per_class_f1={"a": macro_f1})


ROWS = [
    row("r3", "2026-11-03T06:00:00+00:00", "20261102T000000Z-bbbb", 0.62, 0.31),
    row("r1", "2026-11-01T06:00:00+00:00", "20261031T000000Z-aaaa", 0.91, 0.70),
    row("r2", "2026-11-02T06:00:00+00:00", "20261031T000000Z-aaaa", 0.88, 0.64),
    row("r4", "2026-11-04T06:00:00+00:00", "20261102T000000Z-bbbb", 0.95, 0.83),
]


def sorted_rows() -> list[QualityRow]:
    return sorted(ROWS, key=QualityRow.sort_key)


def test_rows_are_plotted_in_date_order_with_the_model_changes():
    series = history_series(sorted_rows())
    assert series["labels"] == ["2026-11-01 06:00", "2026-11-02 06:00", "2026-11-03 06:00", "2026-11-04 06:00"]
    assert series["accuracy"] == [0.91, 0.88, 0.62, 0.95]
    assert series["macro_f1"] == [0.70, 0.64, 0.31, 0.83]
    assert series["model_changes"] == [(0, "20261031T000000Z-aaaa"), (2, "20261102T000000Z-bbbb")]


def near_colour(rgb: np.ndarray, x: float, y: float, colour: np.ndarray, radius: int = 2) -> bool:
    """Whether a pixel of ``colour`` lies within ``radius`` of display point (x, y) (origin bottom left)."""
    height = rgb.shape[0]
    column, line = int(round(x)), int(round(height - y))
    patch = rgb[line - radius:line + radius + 1, column - radius:column + radius + 1]
    return bool((np.abs(patch - colour).sum(axis=2) < 40).any())


def test_the_png_draws_each_runs_accuracy_and_macro_f1_where_the_axes_put_them():
    rows = sorted_rows()
    figure = history_figure(rows, current_run_key="r4")
    figure.canvas.draw()
    axes = figure.axes[0]
    with Image.open(io.BytesIO(history_png(rows, current_run_key="r4"))) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    assert rgb.shape[:2] == (420, 900)
    for i, r in enumerate(rows):
        for value, colour, other in ((r.accuracy, ACCURACY_RGB, r.macro_f1), (r.macro_f1, MACRO_F1_RGB, r.accuracy)):
            x, y = axes.transData.transform((i, value))
            assert near_colour(rgb, x, y, colour), (r.run_key, value)
            # ... and not at the other series' value (the test can tell the lines apart).
            x, y = axes.transData.transform((i, other))
            assert not near_colour(rgb, x, y, colour, radius=1), (r.run_key, "other", other)
    # The axis spans the values only: a drop of 0.3 is a third of the height, not lost in 0..1.
    low, high = axes.get_ylim()
    assert low > 0.2 and high < 1.0


def test_a_single_run_draws_one_point_per_series():
    figure = history_figure([ROWS[1]])
    lines = figure.axes[0].get_lines()
    assert [list(line.get_ydata()) for line in lines] == [[0.91], [0.70]]


def test_the_page_shows_the_history_picture_only_when_there_is_a_history():
    metrics = {"documents": 3, "accuracy": 1.0, "macro_f1": 1.0, "macro_precision": 1.0, "macro_recall": 1.0,
               "per_class": {"a": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 3}}}
    assert "quality_history.png" not in report_html(metrics, "confusion_matrix.png", "t")
    page = report_html(metrics, "confusion_matrix.png", "t",
                       history={"picture": "quality_history.png", "runs": 7, "uri": "file:///d/_quality_history"})
    assert 'src="quality_history.png"' in page and "7 evaluated run(s) in file:///d/_quality_history" in page
