"""The report of a model trained with selection: the selection table, the metric against alpha for
each model type (a PNG picture), and each class's top terms, written into the model's ``report/``
directory (published with the model).

Top terms explain a class: the terms whose smoothed log-probability in the class most exceeds their
log-probability in all the other classes together,

    ratio[c, t] = log((n[c, t] + a) / (T[c] + a V)) - log((A[t] - n[c, t] + a) / (S - T[c] + a V))

with the counts n, the class totals T, the term totals A, the grand total S, V terms and the chosen
alpha a: the multinomial weight of the class against the complement's, the quantity both model
types compare. Only terms the class has seen are ranked (an unseen term's ratio is negative).
"""

from __future__ import annotations

import html
import io

import numpy as np
import scipy.sparse as sp

from nbknn.contract import SELECTION_METRICS

REPORT_DIR = "report"
SELECTION_PNG_NAME = "selection.png"
MODEL_REPORT_HTML_NAME = "report.html"
# Colours of the fit_prior curves, and the chosen point's marker.
CURVE_COLOURS = {True: "#3b75af", False: "#e08a2c"}
CHOSEN_COLOUR = "#c0392b"
TOP_TERMS = 10


def top_terms(counts: sp.csr_array, terms, alpha: float, k: int = TOP_TERMS) -> list[list[tuple[str, float]]]:
    """Per class (rows of ``counts``, (C, V) term counts), its ``k`` terms of largest ratio
    (module docstring), as (term, ratio), largest first; ties by term id."""
    counts = sp.csr_array(counts, dtype=np.float64)
    vocabulary_size = counts.shape[1]
    class_total = np.asarray(counts.sum(axis=1)).ravel()
    term_total = np.asarray(counts.sum(axis=0)).ravel()
    grand_total = class_total.sum()
    result = []
    for c in range(counts.shape[0]):
        start, end = counts.indptr[c], counts.indptr[c + 1]
        ids, n = counts.indices[start:end], counts.data[start:end]
        inside = np.log(n + alpha) - np.log(class_total[c] + alpha * vocabulary_size)
        outside = np.log(term_total[ids] - n + alpha) - np.log(grand_total - class_total[c] + alpha * vocabulary_size)
        ratio = inside - outside
        order = np.lexsort((ids, -ratio))[:k]
        result.append([(str(terms[ids[i]]), float(ratio[i])) for i in order])
    return result


def selection_png(summary: dict) -> bytes:
    """Mean metric against alpha (log scale), one panel per model type, one curve per fit_prior,
    the range over the folds shaded, the chosen point circled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric, points = summary["metric"], summary["points"]
    model_types = list(dict.fromkeys(row["model_type"] for row in points))
    figure = Figure(figsize=(5.5 * len(model_types), 4.2))
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(1, len(model_types), sharey=True, squeeze=False)[0]
    best = summary["best"]
    for axes, model_type in zip(axes_list, model_types):
        for fit_prior in dict.fromkeys(row["fit_prior"] for row in points):
            rows = sorted((r for r in points if r["model_type"] == model_type and r["fit_prior"] == fit_prior),
                          key=lambda r: r["alpha"])
            alphas = [r["alpha"] for r in rows]
            colour = CURVE_COLOURS[fit_prior]
            axes.plot(alphas, [r[f"mean_{metric}"] for r in rows], marker="o", color=colour,
                      label=f"fit_prior={fit_prior}")
            axes.fill_between(alphas, [min(r[f"fold_{metric}"]) for r in rows],
                              [max(r[f"fold_{metric}"]) for r in rows], color=colour, alpha=0.15, linewidth=0)
        if best["model_type"] == model_type:
            chosen = points[summary["best_index"]]
            axes.plot([chosen["alpha"]], [chosen[f"mean_{metric}"]], marker="o", markersize=14, fillstyle="none",
                      markeredgewidth=2, color=CHOSEN_COLOUR, linestyle="none", label="chosen")
        axes.set_xscale("log")
        axes.set_xlabel("alpha")
        axes.set_title(model_type)
        axes.grid(color="#ddd")
        axes.legend(fontsize=8)
    axes_list[0].set_ylabel(f"mean {metric} over {summary['folds']} folds")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def model_report_html(summary: dict, labels: list[str], explanations: list[list[tuple[str, float]]]) -> str:
    """The page: the chosen point, the picture, the table (best first) and every class's top terms."""
    metric = summary["metric"]
    best = summary["best"]
    order = sorted(range(len(summary["points"])), key=lambda g: summary["points"][g][f"mean_{metric}"],
                   reverse=metric != "log_loss")
    head = "".join(f"<th>{html.escape(name)}</th>" for name in ("model type", "alpha", "fit_prior",
                                                                  *(f"mean {m}" for m in SELECTION_METRICS)))
    rows = "".join(
        "<tr{}>{}</tr>".format(
            ' class="chosen"' if g == summary["best_index"] else "",
            "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                summary["points"][g]["model_type"], summary["points"][g]["alpha"], summary["points"][g]["fit_prior"],
                *(f"{summary['points'][g][f'mean_{m}']:.4f}" for m in SELECTION_METRICS))),
        )
        for g in order
    )
    terms = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(', '.join(term for term, _ in top))}</td></tr>"
        for label, top in zip(labels, explanations)
    )
    chosen = html.escape(f"{best['model_type']}, alpha={best['alpha']}, fit_prior={best['fit_prior']}")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Model selection</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} tr.chosen{{background:#fde2df;font-weight:bold}}
img{{max-width:100%}}</style></head><body>
<h1>Model selection</h1>
<p>Chosen by mean {html.escape(metric)} over {summary['folds']} folds: <b>{chosen}</b></p>
<img src="{SELECTION_PNG_NAME}" alt="mean {html.escape(metric)} against alpha">
<h2>Every grid point</h2>
<table><tr>{head}</tr>{rows}</table>
<h2>Top terms of each class</h2>
<p>By the log-probability ratio of the term in the class against all other classes (alpha={best['alpha']}).</p>
<table><tr><th>class</th><th>terms</th></tr>{terms}</table>
</body></html>
"""
