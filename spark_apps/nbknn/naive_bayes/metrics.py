"""Classification metrics from an aggregated confusion table (no per-document data needed).

A prediction run with labelled input aggregates (true label, predicted label, count) in Spark;
the table has at most (labels x labels) rows however many documents were scored, and every
metric below is a function of it. Definitions follow scikit-learn's ``accuracy_score``,
``precision_recall_fscore_support`` (zero_division=0) and ``f1_score(average="macro")``: the
labels are the sorted union of the true and the predicted labels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def confusion_matrix(rows: Iterable[tuple[str, str, int]]) -> tuple[list[str], np.ndarray]:
    """(labels, matrix) from (true, predicted, count) rows.

    Returns:
        labels: sorted union of the true and predicted labels (L,).
        matrix: (L, L) int64, ``matrix[i, j]`` documents of true label i predicted as j.
    """
    rows = [(str(t), str(p), int(n)) for t, p, n in rows]
    labels = sorted({t for t, _, _ in rows} | {p for _, p, _ in rows})
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for true, predicted, count in rows:
        if count < 0:
            raise ValueError(f"confusion counts must be >= 0 (got {count} for {true!r} -> {predicted!r})")
        matrix[index[true], index[predicted]] += count
    return labels, matrix


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # A label never predicted (or never true) has no precision (recall): 0, as zero_division=0.
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def classification_metrics(rows: Iterable[tuple[str, str, int]]) -> dict:
    """Accuracy, macro-F1, per-label precision/recall/F1/support and the confusion matrix."""
    labels, matrix = confusion_matrix(rows)
    total = int(matrix.sum())
    if total == 0:
        raise ValueError("classification_metrics needs at least one labelled document (got none)")
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1)
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, support.astype(np.float64))
    # F1 = 2 tp / (2 tp + fp + fn), written as scikit-learn's F-beta with beta = 1.
    f1 = _safe_ratio(2.0 * tp, 2.0 * tp + (predicted - tp) + (support - tp))
    return {
        "documents": total,
        "accuracy": float(tp.sum() / total),
        "macro_f1": float(f1.mean()),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "labels": labels,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
    }
