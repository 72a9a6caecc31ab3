"""The report of a model, written into its ``report/`` directory (published with the model): each
class's top terms, and, when the run selected the model's parameters, the selection table and the
metric against alpha for each model type (a PNG picture). Without selection the page says so.

Top terms explain a class: the terms whose smoothed log-probability in the class most exceeds their
log-probability in all the other classes together,

    ratio[c, t] = log((n[c, t] + a) / (T[c] + a V)) - log((A[t] - n[c, t] + a) / (S - T[c] + a V))

with the counts n, the class totals T, the term totals A, the grand total S, V terms and the chosen
alpha a: the multinomial weight of the class against the complement's, the quantity both model
types compare. Only terms the class has seen are ranked (an unseen term's ratio is negative). They
are computed in Spark from the model's tables (:func:`class_top_terms`): only the top terms of each
class reach the driver.
"""

from __future__ import annotations

import html
import io

from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.contract import SELECTION_METRICS
from nbknn.naive_bayes import schemas

REPORT_DIR = "report"
SELECTION_PNG_NAME = "selection.png"
MODEL_REPORT_HTML_NAME = "report.html"
# Colours of the fit_prior curves, and the chosen point's marker.
CURVE_COLOURS = {True: "#3b75af", False: "#e08a2c"}
CHOSEN_COLOUR = "#c0392b"
TOP_TERMS = 10


def class_top_terms(spark: SparkSession, model_dir: str, alpha: float,
                    k: int = TOP_TERMS) -> tuple[list[str], list[list[tuple[str, float]]]]:
    """(labels in class id order, per class its ``k`` terms of largest ratio (module docstring) as
    (term, ratio), largest first, ties to the first term in sorted order), from the tables of the
    model in ``model_dir``."""
    classes = sorted(tuple(row) for row in spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(model_dir))
                     .select("class_id", "label", "term_total").collect())
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(model_dir))
    vocabulary_size = vocabulary.count()
    grand_total = float(sum(total for _, _, total in classes))
    totals = spark.createDataFrame([(c, float(t)) for c, _, t in classes], "class_id int, class_total double")
    entries = spark.read.schema(schemas.TERM_COUNTS).parquet(contract.term_counts_uri(model_dir))
    n, class_total, term_total = F.col("count").cast("double"), F.col("class_total"), F.col("total_count")
    inside = F.log(n + alpha) - F.log(class_total + alpha * vocabulary_size)
    outside = F.log(term_total - n + alpha) - F.log(grand_total - class_total + alpha * vocabulary_size)
    # Within a class the ratio grows with (n + a) / (A - n + a), one correctly rounded division:
    # ranking by it keeps the mathematical ties (e.g. 2/1 and 4/2 at a = 1) that the difference of
    # four logarithms may round apart. Ties go to the first term in sorted order, not the lower id:
    # a merged model numbers its new terms after the old ones, and its report must be the one a
    # full run would write.
    odds = (n + alpha) / (term_total - n + alpha)
    rank = F.row_number().over(Window.partitionBy("class_id").orderBy(F.desc("odds"), "term"))
    top = (
        entries.join(F.broadcast(totals), "class_id")
        .join(vocabulary.select("term_id", "term", "total_count"), "term_id")
        .withColumn("ratio", inside - outside)
        .withColumn("odds", odds)
        .withColumn("rank", rank)
        .where(F.col("rank") <= k)
        .select("class_id", "rank", "term", "ratio")
        .collect()
    )
    per_class = [[] for _ in classes]
    for row in sorted(top, key=lambda r: (r["class_id"], r["rank"])):
        per_class[row["class_id"]].append((row["term"], row["ratio"]))
    return [label for _, label, _ in classes], per_class


def write_model_report(spark: SparkSession, model_dir: str, alpha: float, selection: dict | None = None) -> dict:
    """Write the model's report/ (the page with each class's top terms at ``alpha``; with the
    ``selection`` job's summary, also its picture and table); returns what the job's summary and
    the manifest record of it."""
    labels, explanations = class_top_terms(spark, model_dir, alpha)
    report_dir = contract.join_uri(model_dir, REPORT_DIR)
    if selection is not None:
        fs.write_bytes(spark, contract.join_uri(report_dir, SELECTION_PNG_NAME), selection_png(selection))
    page = model_report_html(labels, explanations, alpha, selection)
    fs.write_bytes(spark, contract.join_uri(report_dir, MODEL_REPORT_HTML_NAME), page.encode("utf-8"))
    return {
        # Relative to the model's directory: the staging directory is renamed when published.
        "page": f"{REPORT_DIR}/{MODEL_REPORT_HTML_NAME}",
        "selection": selection is not None,
        "top_terms_alpha": alpha,
        "top_terms": {label: [term for term, _ in top] for label, top in zip(labels, explanations)},
    }


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


def model_report_html(labels: list[str], explanations: list[list[tuple[str, float]]], alpha: float,
                      summary: dict | None = None) -> str:
    """The page: every class's top terms; with the selection ``summary``, first the chosen point,
    the picture and the table (best first); without, a line saying selection was off."""
    terms = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(', '.join(term for term, _ in top))}</td></tr>"
        for label, top in zip(labels, explanations)
    )
    selection = _selection_html(summary) if summary is not None else (
        "<p>Selection was off: the model's type, alpha and fit_prior are the ones the training run was "
        "given (see the manifest). Train with <code>selection=kfold</code> to choose them by "
        "cross-validation.</p>"
    )
    title = "Model selection" if summary is not None else "Model report"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px}} tr.chosen{{background:#fde2df;font-weight:bold}}
img{{max-width:100%}}</style></head><body>
<h1>{title}</h1>
{selection}
<h2>Top terms of each class</h2>
<p>By the log-probability ratio of the term in the class against all other classes (alpha={alpha}).</p>
<table><tr><th>class</th><th>terms</th></tr>{terms}</table>
</body></html>
"""


def _selection_html(summary: dict) -> str:
    """The selection part of the page: the chosen point, the picture and every grid point."""
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
    chosen = html.escape(f"{best['model_type']}, alpha={best['alpha']}, fit_prior={best['fit_prior']}")
    return f"""<p>Chosen by mean {html.escape(metric)} over {summary['folds']} folds: <b>{chosen}</b></p>
<img src="{SELECTION_PNG_NAME}" alt="mean {html.escape(metric)} against alpha">
<h2>Every grid point</h2>
<table><tr>{head}</tr>{rows}</table>"""
