"""The numbers of a knn_neighbors run's picture: one aggregation over the published neighbours
gives, per rank, the 10th, 50th and 90th percentile of the distance (Spark's
``percentile_approx``), kept in the run's summary. The picture is drawn from them without Spark
(:mod:`nbknn.knn.distance_picture`, by the DAG's ``report`` task).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn.knn.distance_picture import plotted_ranks

QUANTILES = (0.1, 0.5, 0.9)


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


def distance_by_rank(spark: SparkSession, neighbors_uri: str, k: int) -> dict:
    """The summary's ``distance_by_rank`` entry: the plotted ranks and their distance quantiles."""
    stats = distance_quantiles(spark.read.parquet(neighbors_uri), plotted_ranks(k))
    return {key: [round(v, 6) for v in values] if key != "ranks" else values for key, values in stats.items()}
