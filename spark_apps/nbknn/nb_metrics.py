"""Classification metrics from an aggregated confusion table (no per-document data needed).

A prediction run with labelled input aggregates (true label, predicted label, count) in Spark;
the table has at most (labels x labels) rows however many documents were scored, and every
metric below is a function of it. Definitions follow scikit-learn's ``accuracy_score``,
``precision_recall_fscore_support`` (zero_division=0) and ``f1_score(average="macro")``: the
labels are the sorted union of the true and the predicted labels.
"""

from __future__ import annotations

import html
import io
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


# Tick labels longer than this are shortened on the picture (the report's table and
# metrics.json keep them whole): the margins are sized for them, see confusion_png.
PICTURE_LABEL_CHARS = 40
_TICK_FONT_PT = 7


def confusion_png(labels: list[str], matrix, title: str = "Confusion matrix") -> bytes:
    """A PNG picture of the confusion matrix (rows: true label, columns: predicted).

    Drawn on a bare ``Figure`` (no pyplot: no global figure registry on the driver). The margins
    are computed from the longest tick label instead of by ``tight_layout``, which renders every
    text once more to measure it. Labels and title are user data, so mathtext parsing is off:
    a label such as ``$x^$`` must not fail the run, nor ``$5 to $10`` turn into italics.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    n = len(labels)
    tick_labels = [_shortened(str(label)) for label in labels] if n <= 80 else []
    longest = max((len(label) for label in tick_labels), default=0)
    # Inches: the axis title and tick marks, plus ~0.6 em per character of the tick labels.
    margin = 0.55 + 0.6 * _TICK_FONT_PT / 72 * longest
    size = min(3 + 0.35 * n, 28) + margin
    figure = Figure(figsize=(size, size))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=margin / size, bottom=margin / size, right=1 - 0.9 / size, top=1 - 0.45 / size)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    if tick_labels:
        axes.set_xticks(range(n), tick_labels, rotation=90, fontsize=_TICK_FONT_PT, parse_math=False)
        axes.set_yticks(range(n), tick_labels, fontsize=_TICK_FONT_PT, parse_math=False)
    if n <= 20:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(n):
            for j in range(n):
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=_TICK_FONT_PT,
                          parse_math=False, color="white" if matrix[i, j] > threshold else "black")
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    axes.set_title(title, parse_math=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _shortened(label: str) -> str:
    return label if len(label) <= PICTURE_LABEL_CHARS else label[: PICTURE_LABEL_CHARS - 1] + "…"


def report_html(metrics: dict, picture_name: str, title: str) -> str:
    """A small self-contained HTML page: headline numbers, per-class table, the confusion picture
    (linked by its file name, which sits beside the page)."""
    esc = html.escape
    rows = "\n".join(
        f"<tr><td>{esc(label)}</td><td>{m['precision']:.4f}</td><td>{m['recall']:.4f}</td>"
        f"<td>{m['f1']:.4f}</td><td>{m['support']}</td></tr>"
        for label, m in metrics["per_class"].items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .headline td {{ font-size: 1.2em; }}
</style></head><body>
<h1>{esc(title)}</h1>
<table class="headline">
<tr><th>labelled documents</th><th>accuracy</th><th>macro-F1</th><th>macro precision</th><th>macro recall</th></tr>
<tr><td>{metrics['documents']}</td><td>{metrics['accuracy']:.4f}</td><td>{metrics['macro_f1']:.4f}</td>
<td>{metrics['macro_precision']:.4f}</td><td>{metrics['macro_recall']:.4f}</td></tr>
</table>
<h2>Per class</h2>
<table>
<tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{rows}
</table>
<h2>Confusion matrix</h2>
<p>Rows: true label; columns: predicted label.</p>
<img src="{esc(picture_name)}" alt="confusion matrix">
</body></html>
"""
