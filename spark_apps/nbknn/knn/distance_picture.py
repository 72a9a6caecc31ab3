"""The picture of a knn_neighbors run, drawn from its summary alone: how far the r-th neighbour is,
for every rank r.

The Spark application computes the numbers (:mod:`nbknn.knn.report`: per rank, the 10th, 50th and
90th percentile of the distance) into its summary; the DAG's ``report`` task draws them without
Spark (``nbknn_airflow.report_pages``): the median with the 10-90 % band, and for annoy the
recall@k measured on the sample in its title. A flat curve says the neighbours are hardly nearer
than the rest (the data has no structure at this k, or the vectors are too sparse); a wide band,
that queries differ a lot in how crowded their surroundings are.
"""

from __future__ import annotations

import io

# Ranks drawn at most: every rank up to this k, an even spread of them above it.
MAX_PLOTTED_RANKS = 50


def plotted_ranks(k: int) -> list[int]:
    """The ranks (1-based) drawn for ``k`` neighbours: all of them, or an even spread with 1 and k."""
    if k <= MAX_PLOTTED_RANKS:
        return list(range(1, k + 1))
    step = (k - 1) / (MAX_PLOTTED_RANKS - 1)
    return sorted({1 + round(i * step) for i in range(MAX_PLOTTED_RANKS)})


def distance_png(stats: dict, metric: str, title: str) -> bytes:
    """A PNG line chart: the median distance by neighbour rank with the 10-90 % band shaded.

    Drawn on a bare ``Figure`` (no pyplot global state); the title is user data (paths, ids), so
    mathtext parsing is off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ranks = stats["ranks"]
    axes.fill_between(ranks, stats["p10"], stats["p90"], color="#3b75af", alpha=0.25, linewidth=0,
                      label="10-90 % of the queries")
    axes.plot(ranks, stats["median"], color="#3b75af", marker="o" if len(ranks) <= 20 else None, label="median")
    axes.set_xlabel("neighbour rank")
    axes.set_ylabel(f"{metric} distance")
    axes.set_ylim(bottom=min(0.0, min(stats["p10"], default=0.0)))
    axes.grid(color="#ddd")
    axes.set_axisbelow(True)
    axes.legend(loc="lower right")
    axes.set_title(title, parse_math=False, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def picture_title(k: int, metric: str, mode: str, queries: int, recall: dict | None) -> str:
    title = f"knn_neighbors: distance to the r-th of k={k} neighbours ({mode}, {queries} queries)"
    if recall:
        title += f"\nannoy recall@{k} = {recall['recall_at_k']:.4f} on {recall['sample_queries']} sampled queries"
    return title


def summary_picture(summary: dict) -> bytes | None:
    """The picture of a run from its ``report/summary.json`` (None when it has no distances)."""
    stats = summary.get("distance_by_rank")
    if not stats:
        return None
    title = picture_title(summary["k"], summary["metric"], summary["mode"], summary["query_vectors"], summary["annoy"])
    return distance_png(stats, summary["metric"], title)
