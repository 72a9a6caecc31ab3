"""Pure parts of Naive Bayes prediction: Arrow batch -> CSR, and metrics from a confusion table."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from nbknn.naive_bayes.metrics import classification_metrics
from nbknn.naive_bayes.report_pictures import confusion_png
from nbknn.naive_bayes.shard_pass import csr_from_arrow


def test_arrow_lists_become_the_csr_matrix_of_the_rows_even_when_sliced():
    term_ids = pa.array([[9], [0, 3], [], [1, 2, 4], [5]], pa.list_(pa.int32()))
    counts = pa.array([[7], [2, 1], [], [1, 1, 5], [3]], pa.list_(pa.int32()))
    X = csr_from_arrow(term_ids.slice(1, 3), counts.slice(1, 3), vocabulary_size=6)
    expected = np.array([[2, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 5, 0]], dtype=float)
    np.testing.assert_array_equal(X.toarray(), expected)
    assert X.shape == (3, 6)


def test_misaligned_or_foreign_vectors_are_refused():
    ids = pa.array([[0, 1]], pa.list_(pa.int32()))
    with pytest.raises(ValueError, match="same length in every row"):
        csr_from_arrow(ids, pa.array([[1]], pa.list_(pa.int32())), 5)
    with pytest.raises(ValueError, match=r"term ids must be in \[0, 1\) \(got 0\.\.1\)"):
        csr_from_arrow(ids, pa.array([[1, 1]], pa.list_(pa.int32())), 1)


def test_metrics_from_the_confusion_table_equal_sklearn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    rng = np.random.default_rng(3)
    # "never-predicted" is only true, "never-true" only predicted: both have a zero division.
    y_true = rng.choice(["a", "b", "c", "never-predicted"], size=400).tolist()
    y_pred = [t if rng.random() < 0.6 else rng.choice(["a", "b", "c", "never-true"]) for t in y_true]
    y_pred = [p if p != "never-predicted" else "a" for p in y_pred]
    table: dict = {}
    for t, p in zip(y_true, y_pred):
        table[(t, p)] = table.get((t, p), 0) + 1
    metrics = classification_metrics([(t, p, n) for (t, p), n in table.items()])

    labels = sorted(set(y_true) | set(y_pred))
    assert metrics["labels"] == labels
    assert metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-15)
    assert metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-15)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        got = metrics["per_class"][label]
        assert [got["precision"], got["recall"], got["f1"], got["support"]] == pytest.approx(
            [precision[i], recall[i], f1[i], support[i]], abs=1e-15
        )
    assert metrics["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=labels).tolist()


def test_metrics_need_a_labelled_document():
    with pytest.raises(ValueError, match="at least one labelled document"):
        classification_metrics([])


def test_confusion_layout_orders_by_support_and_shows_shares_of_each_true_class():
    from nbknn.naive_bayes.report_pictures import confusion_layout

    labels, counts, shares = confusion_layout(["small", "big", "never_true"], [[1, 3, 0], [10, 990, 0], [0, 0, 0]])
    assert labels == ["big", "small", "never_true"]
    assert counts.tolist() == [[990, 10, 0], [3, 1, 0], [0, 0, 0]]
    # The small class's errors show as plainly as the big class's successes.
    np.testing.assert_allclose(shares, [[0.99, 0.01, 0], [0.75, 0.25, 0], [0, 0, 0]])


def _matrix_cells(picture: bytes) -> np.ndarray:
    """(y, x) of the pixels drawn in the dark end of the colour scale (not black text), left of the
    colour bar (which takes the right quarter of the picture)."""
    with Image.open(io.BytesIO(picture)) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    r, b = rgb[..., 0], rgb[..., 2]
    dark = (b > 90) & (b > r + 60) & (r < 60)
    dark[:, int(0.75 * rgb.shape[1]):] = False
    return np.argwhere(dark)


def test_confusion_picture_draws_the_matrix_not_a_blank():
    labels = ["a", "b", "c", "d"]
    diagonal = _matrix_cells(confusion_png(labels, np.diag([40, 30, 20, 10])))
    column = _matrix_cells(confusion_png(labels, [[40, 0, 0, 0], [30, 0, 0, 0], [20, 0, 0, 0], [10, 0, 0, 0]]))
    assert len(_matrix_cells(confusion_png(labels, np.zeros((4, 4), dtype=int)))) == 0
    # Four full cells each; perfect predictions make a diagonal (down and to the right), all-'a'
    # predictions one column on the left.
    assert len(diagonal) > 4 * 1000 and len(column) > 4 * 1000
    assert np.corrcoef(diagonal[:, 0], diagonal[:, 1])[0, 1] > 0.9
    assert np.ptp(column[:, 1]) < np.ptp(column[:, 0]) / 3 and column[:, 1].max() < diagonal[:, 1].mean()


def _rgb(picture: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(picture)) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_confusion_picture_writes_each_count_centred_in_its_cell(monkeypatch):
    from scipy import ndimage

    from nbknn.naive_bayes import report_pictures

    labels, matrix = ["a", "b"], np.diag([40, 30])
    with_counts = _rgb(confusion_png(labels, matrix))
    monkeypatch.setattr(report_pictures, "COUNTS_UP_TO_CLASSES", 0)  # the same picture without the counts
    without_counts = _rgb(confusion_png(labels, matrix))
    written = (with_counts != without_counts).any(axis=2)
    # The two dark cells of the diagonal: the square dark regions (the colour bar's dark end is a
    # narrow one).
    regions, _ = ndimage.label((without_counts[..., 2] > 90) & (without_counts[..., 2] > without_counts[..., 0] + 60))
    cells = [box for box in ndimage.find_objects(regions)
             if abs((box[0].stop - box[0].start) - (box[1].stop - box[1].start)) <= 2 and box[0].stop - box[0].start > 40]
    assert len(cells) == 2, cells
    for rows, columns in cells:
        text = np.argwhere(written[rows, columns])
        assert len(text) > 20, "no count drawn in the cell"
        # Centred on the cell's centre, to within 2 pixels in each direction.
        centre = np.array([rows.stop - rows.start, columns.stop - columns.start]) / 2
        assert np.abs((text.min(axis=0) + text.max(axis=0) + 1) / 2 - centre).max() <= 2, (text.min(axis=0), text.max(axis=0), centre)
    # Nothing is written outside the two cells.
    assert written.sum() == sum(written[box].sum() for box in cells)


def test_confusion_picture_draws_any_label_text_as_it_is():
    # Labels are user data: mathtext in one would fail the report (matplotlib raises on "$\notamacro{$").
    labels = [r"$\notamacro{$", "cost $5 to $10", "x" * 300]
    picture = confusion_png(labels, np.eye(3, dtype=int) * 7, title="model $v1$")
    with Image.open(io.BytesIO(picture)) as image:
        assert image.format == "PNG" and image.width == image.height > 500
