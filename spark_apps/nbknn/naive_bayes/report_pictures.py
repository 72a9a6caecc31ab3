"""The pictures and the page of an nb_predict report, drawn from its ``metrics.json`` alone.

Pure Python (matplotlib, no Spark): the Spark applications publish the report's numbers
(:mod:`nbknn.naive_bayes.report`) and the DAG's ``report`` task draws these files beside them
(``nbknn_airflow.report_pages``), so no Spark driver waits on the drawing.
"""

from __future__ import annotations

import html
import io

import numpy as np

from nbknn.contract import CLASS_F1_PNG_NAME, CONFUSION_PNG_NAME, QUALITY_HISTORY_PNG_NAME, REPORT_HTML_NAME
from nbknn.naive_bayes.quality_history import QualityRow, history_png

# Tick labels longer than this are shortened on the picture (the report's table and
# metrics.json keep them whole): the margins are sized for them, see confusion_png.
PICTURE_LABEL_CHARS = 40
_TICK_FONT_PT = 7
# Counts are written in the cells up to this many classes (beyond, they would not be legible).
COUNTS_UP_TO_CLASSES = 60
# Largest side of the picture: the page shows it whole (it is also scaled to the page's width).
MAX_PICTURE_INCHES = 16


def confusion_layout(labels: list[str], matrix) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(labels by descending support, counts in that order, row-normalised shares).

    Ordered by support so that the large classes sit together at the top left; each row is divided
    by its class's support, so a class of 5 documents shows its errors as clearly as one of 1 000
    (a linear scale over raw counts leaves every small class invisible). A row without support
    (a class only ever predicted) stays 0."""
    counts = np.asarray(matrix, dtype=np.int64)
    support = counts.sum(axis=1)
    order = sorted(range(len(labels)), key=lambda i: (-support[i], str(labels[i])))
    counts = counts[np.ix_(order, order)]
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    return [labels[i] for i in order], counts, shares


def confusion_png(labels: list[str], matrix, title: str = "Confusion matrix") -> bytes:
    """A PNG picture of the confusion matrix (rows: true label with its support, columns: predicted),
    ordered by support and coloured by the share of each true class (:func:`confusion_layout`), with
    the counts written in the non-empty cells while they are legible.

    Drawn on a bare ``Figure`` (no pyplot: no global figure registry on the driver). The margins
    are computed from the longest tick label instead of by ``tight_layout``, which renders every
    text once more to measure it. Labels and title are user data, so mathtext parsing is off:
    a label such as ``$x^$`` must not fail the run, nor ``$5 to $10`` turn into italics.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels, counts, shares = confusion_layout(labels, matrix)
    n = len(labels)
    support = counts.sum(axis=1)
    row_labels = [f"{_shortened(str(label))} ({support[i]})" for i, label in enumerate(labels)] if n <= 80 else []
    column_labels = [_shortened(str(label)) for label in labels] if n <= 80 else []
    longest = max((len(label) for label in row_labels), default=0)
    # Inches: the axis title and tick marks, plus ~0.6 em per character of the tick labels.
    margin = 0.55 + 0.6 * _TICK_FONT_PT / 72 * longest
    size = min(3 + 0.3 * n, MAX_PICTURE_INCHES - margin) + margin
    figure = Figure(figsize=(size, size))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=margin / size, bottom=margin / size, right=1 - 0.9 / size, top=1 - 0.45 / size)
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("share of the true class")
    if row_labels:
        axes.set_xticks(range(n), column_labels, rotation=90, fontsize=_TICK_FONT_PT, parse_math=False)
        axes.set_yticks(range(n), row_labels, fontsize=_TICK_FONT_PT, parse_math=False)
    if n <= COUNTS_UP_TO_CLASSES:
        _write_counts(axes, counts, shares, fontsize=_TICK_FONT_PT if n <= 20 else 5)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label (documents)")
    axes.set_title(title, parse_math=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def class_f1_png(per_class: dict, title: str = "F1 per class") -> bytes:
    """A PNG bar chart of every class's F1 (horizontal bars, 0 to 1), largest class first as in the
    confusion matrix, each bar labelled with the class's support: which classes the model serves
    badly, and whether they are the small ones. Classes without support (only ever predicted) are
    left out: their F1 is 0 by definition and says nothing of the class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = sorted(((label, m) for label, m in per_class.items() if m["support"] > 0),
                  key=lambda item: (-item[1]["support"], str(item[0])))
    n = len(rows)
    longest = max((len(_shortened(str(label))) for label, _ in rows), default=0)
    margin = 0.4 + 0.6 * _TICK_FONT_PT / 72 * longest
    height = min(1.2 + 0.16 * n, MAX_PICTURE_INCHES)
    width = 7 + margin
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=margin / width, right=1 - 0.9 / width, top=1 - 0.45 / height, bottom=0.55 / height)
    axes = figure.add_subplot()
    f1 = [m["f1"] for _, m in rows]
    axes.barh(range(n), f1, color="#3b75af", height=0.8)
    axes.set_ylim(n - 0.5, -0.5)
    axes.set_xlim(0, 1)
    axes.set_yticks(range(n), [_shortened(str(label)) for label, _ in rows], fontsize=_TICK_FONT_PT,
                    parse_math=False)
    for i, (_, m) in enumerate(rows):
        axes.text(1.01, i, str(m["support"]), va="center", fontsize=_TICK_FONT_PT, transform=axes.get_yaxis_transform(),
                  parse_math=False)
    axes.text(1.01, 1.0, "support", fontsize=_TICK_FONT_PT, transform=axes.transAxes, va="bottom")
    axes.set_xlabel("F1")
    axes.grid(axis="x", color="#ddd")
    axes.set_axisbelow(True)
    axes.set_title(title, parse_math=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _write_counts(axes, counts: np.ndarray, shares: np.ndarray, fontsize: int) -> None:
    """The count of every non-empty cell, white on the dark ones, centred in its cell.

    Drawn as one collection of glyph outlines, each distinct number laid out once: a text artist
    per cell took about 1 ms to lay out and draw, 0.4 s of the driver's time at 20 classes."""
    from matplotlib.collections import PathCollection
    from matplotlib.textpath import TextPath
    from matplotlib.transforms import Affine2D

    cells = list(zip(*np.nonzero(counts)))
    if not cells:
        return
    texts = [str(counts[i, j]) for i, j in cells]
    outlines = {}
    for text in set(texts):
        path = TextPath((0, 0), text, size=fontsize)
        box = path.get_extents()
        outlines[text] = path.transformed(Affine2D().translate(-box.x0 - box.width / 2, -box.y0 - box.height / 2))
    glyphs = PathCollection(
        [outlines[text] for text in texts],
        offsets=[(j, i) for i, j in cells],
        offset_transform=axes.transData,
        # Outlines in points, scaled to the picture's pixels at whatever resolution it is saved.
        transform=Affine2D().scale(1 / 72) + axes.figure.dpi_scale_trans,
        facecolors=["white" if shares[i, j] > 0.5 else "black" for i, j in cells],
        edgecolors="none",
    )
    axes.add_collection(glyphs, autolim=False)


def _shortened(label: str) -> str:
    return label if len(label) <= PICTURE_LABEL_CHARS else label[: PICTURE_LABEL_CHARS - 1] + "…"


def report_html(metrics: dict, picture_name: str, title: str, chart_name: str = CLASS_F1_PNG_NAME,
                history: dict | None = None) -> str:
    """A small self-contained HTML page: headline numbers, the quality history over runs (when
    ``history``: its picture's file name, rows and folder), the F1 chart, per-class table, the
    confusion picture (the pictures linked by their file names, which sit beside the page)."""
    esc = html.escape
    history_section = "" if history is None else (
        f"""<h2>Quality over runs</h2>
<p>Accuracy and macro-F1 of the {history['runs']} evaluated run(s) in {esc(history['uri'])}, this one circled.</p>
<img src="{esc(history['picture'])}" alt="quality history" style="max-width: 100%; height: auto">
""")
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
{history_section}<h2>Per class</h2>
<img src="{esc(chart_name)}" alt="F1 per class" style="max-width: 100%; height: auto">
<table>
<tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{rows}
</table>
<h2>Confusion matrix</h2>
<p>Rows: true label (its number of documents), largest class first; columns: predicted label.
Colour: the share of the true class's documents; numbers: documents.</p>
<img src="{esc(picture_name)}" alt="confusion matrix" style="max-width: 100%; height: auto">
</body></html>
"""


def report_title(metrics: dict) -> str:
    return f"nb_predict, model {metrics['model_version']}: accuracy {metrics['accuracy']:.4f}"


def report_files(metrics: dict, history_rows: list[QualityRow] | None = None) -> list[tuple[str, bytes]]:
    """Every file the page shows, as (name, content), the page last so that it can be written
    last: the quality history's picture (when the run has a row in a history: ``history_rows``
    are that history's rows, in run order), the F1 chart, the confusion picture, the page."""
    title = report_title(metrics)
    files, history_page = [], None
    history = metrics.get("quality_history")
    if history is not None:
        rows = history_rows or []
        files.append((QUALITY_HISTORY_PNG_NAME, history_png(rows, history["run_key"])))
        history_page = {"picture": QUALITY_HISTORY_PNG_NAME, "runs": len(rows), "uri": history["uri"]}
    files.append((CLASS_F1_PNG_NAME, class_f1_png(metrics["per_class"], title)))
    files.append((CONFUSION_PNG_NAME, confusion_png(metrics["labels"], metrics["confusion_matrix"], title)))
    page = report_html(metrics, CONFUSION_PNG_NAME, title, history=history_page)
    files.append((REPORT_HTML_NAME, page.encode("utf-8")))
    return files
