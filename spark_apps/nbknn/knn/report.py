"""The picture of a knn_neighbors run: how far the r-th neighbour is, for every rank r.

One aggregation over the published neighbours gives, per rank, the 10th, 50th and 90th percentile
of the distance (Spark's ``percentile_approx``); the picture draws the median with the 10-90 %
band, and for annoy the recall@k measured on the sample in its title. A flat curve says the
neighbours are hardly nearer than the rest (the data has no structure at this k, or the vectors are
too sparse); a wide band, that queries differ a lot in how crowded their surroundings are.
"""

from __future__ import annotations

import io

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn.common import fs
from nbknn.contract import join_uri

DISTANCE_PNG_NAME = "distance_by_rank.png"
QUANTILES = (0.1, 0.5, 0.9)
# Ranks drawn at most: every rank up to this k, an even spread of them above it.
MAX_PLOTTED_RANKS = 50


def plotted_ranks(k: int) -> list[int]:
    """The ranks (1-based) drawn for ``k`` neighbours: all of them, or an even spread with 1 and k."""
    if k <= MAX_PLOTTED_RANKS:
        return list(range(1, k + 1))
    step = (k - 1) / (MAX_PLOTTED_RANKS - 1)
    return sorted({1 + round(i * step) for i in range(MAX_PLOTTED_RANKS)})


def distance_quantiles(neighbors: DataFrame, ranks: list[int]) -> dict:
    """Per rank: the 10/50/90 % distance over the queries that have a neighbour at that rank."""
    columns = [
        F.percentile_approx(F.try_element_at("distances", F.lit(rank)), list(QUANTILES)).alias(f"r{rank}")
        for rank in ranks
    ]
    row = neighbors.agg(*columns).first()
    present = [rank for rank in ranks if row[f"r{rank}"] is not None]
    return {
        "ranks": present,
        **{name: [float(row[f"r{rank}"][i]) for rank in present] for i, name in enumerate(("p10", "median", "p90"))},
    }


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


def publish_distance_picture(
    spark: SparkSession, neighbors_uri: str, report_dir: str, k: int, metric: str, mode: str, queries: int,
    recall: dict | None,
) -> dict:
    """Draw the picture from the published neighbours and put it into ``report_dir`` whole: written
    beside its place, the old one removed, the new one renamed in (a reader never sees half a
    picture). Returns the summary's ``distance_by_rank`` entry: the picture's URI and the numbers."""
    stats = distance_quantiles(spark.read.parquet(neighbors_uri), plotted_ranks(k))
    picture = distance_png(stats, metric, picture_title(k, metric, mode, queries, recall))
    target = join_uri(report_dir, DISTANCE_PNG_NAME)
    temp = fs.temporary_sibling(target)
    fs.write_bytes(spark, temp, picture)
    fs.delete(spark, target)
    fs.rename(spark, temp, target)
    fs.remove_abandoned_siblings(spark, target)  # pictures of killed attempts
    return {"uri": target, **{key: [round(v, 6) for v in values] if key != "ranks" else values
                              for key, values in stats.items()}}
