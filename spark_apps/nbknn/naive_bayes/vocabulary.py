"""The vocabulary of a model: every term kept, numbered by its rank in sorted term order.

Term ids are ranks in sorted order, as CountVectorizer gives them. A vocabulary small enough to
collect is numbered on the driver, a larger one in Spark; both give the same ids.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.inputs.documents import InputError
from nbknn.naive_bayes import schemas

#: Largest vocabulary (terms seen) that the term counts job numbers on the driver: the same bound
#: as the one under which prediction ships the vocabulary to its tasks.
DEFAULT_MAX_DRIVER_TERMS = 5_000_000


def vocabulary_counts(class_terms: DataFrame, min_term_count: int = 1) -> DataFrame:
    """(term, total_count, doc_freq) of the terms seen at least ``min_term_count`` times."""
    return (
        class_terms.groupBy("term")
        .agg(F.sum("count").alias("total_count"), F.sum("doc_freq").alias("doc_freq"))
        .where(F.col("total_count") >= min_term_count)
    )


def number_terms(spark: SparkSession, vocabulary: DataFrame, scratch_uri: str) -> DataFrame:
    """Give every term its rank in sorted order as ``term_id`` (as CountVectorizer does).

    A global row_number would pull every term into one task. Instead the sorted vocabulary is
    written once with its range-partition number; each partition's terms are all smaller than the
    next partition's, so a term's id is the size of the partitions before it plus its rank inside
    its own partition. Writing first pins the partitioning: recomputing a sort may draw different
    range boundaries.
    """
    (
        vocabulary.orderBy("term")
        .withColumn("_part", F.spark_partition_id())
        .write.mode("overwrite")
        .parquet(scratch_uri)
    )
    staged = spark.read.parquet(scratch_uri)
    sizes = sorted(staged.groupBy("_part").count().collect())
    offsets, running = [], 0
    for part, size in sizes:
        offsets.append((part, running))
        running += size
    offsets_frame = spark.createDataFrame(offsets, "_part int, _offset long")
    rank = F.row_number().over(Window.partitionBy("_part").orderBy("term"))
    numbered = staged.join(F.broadcast(offsets_frame), "_part").select(
        (F.col("_offset") + rank - 1).cast("int").alias("term_id"),
        "term",
        F.col("total_count").cast("long"),
        F.col("doc_freq").cast("long"),
    )
    return numbered


def numbered_vocabulary_table(term_totals: pa.Table, min_term_count: int = 1) -> pa.Table:
    """:func:`number_terms` on the driver, for a vocabulary small enough to collect.

    term_totals: (term, total_count, doc_freq), one row per term. Returns the terms seen at least
    ``min_term_count`` times as (term_id, term, total_count, doc_freq), ``term_id`` = rank in
    sorted order. Arrow sorts strings by their UTF-8 bytes, i.e. by code point, like Spark,
    Python and scikit-learn: the ids are the ones the distributed numbering gives.
    """
    kept = term_totals.filter(pc.greater_equal(term_totals.column("total_count"), min_term_count))
    kept = kept.sort_by([("term", "ascending")])
    return pa.table(
        {
            "term_id": pa.array(np.arange(kept.num_rows, dtype=np.int32)),
            "term": kept.column("term").cast(pa.string()),
            "total_count": kept.column("total_count").cast(pa.int64()),
            "doc_freq": kept.column("doc_freq").cast(pa.int64()),
        }
    )


def term_and_label_totals(class_terms: DataFrame, max_terms: int, max_labels: int) -> tuple[pa.Table, dict] | None:
    """Per-term totals and per-label statistics of the (label, term) table in one job, on the driver.

    Returns ``(term_totals, label_stats)``: term_totals (term, total_count, doc_freq), one row per
    term seen; label_stats ``{label: (entries, term_total)}``, entries being the label's distinct
    terms. Both come from one aggregation over two grouping sets (by term, by label), so the
    table is scanned once for both. Returns None, having fetched at most ``max_terms +
    max_labels + 1`` rows, when there are more rows than that: the vocabulary is then too large
    for the driver.
    """
    limit = max_terms + max_labels
    rows = (
        class_terms.groupingSets([["term"], ["label"]], "term", "label")
        .agg(
            F.sum("count").alias("total_count"),
            F.sum("doc_freq").alias("doc_freq"),
            F.count(F.lit(1)).alias("entries"),
            F.grouping("term").alias("by_label"),
        )
        .limit(limit + 1)
        .toArrow()
    )
    if rows.num_rows > limit:
        return None
    by_label = pc.equal(rows.column("by_label"), 1)
    label_stats = entries_and_totals(rows.filter(by_label), "label", "entries", "total_count")
    terms = rows.filter(pc.invert(by_label)).select(["term", "total_count", "doc_freq"])
    return terms, label_stats


def entries_and_totals(table: pa.Table, key: str, entries: str, total: str) -> dict:
    """``{key: (entries, term_total)}`` from one row per key of ``table``: the per-class (or
    per-label) statistics the shard plan and the classes' table need."""
    return dict(zip(table.column(key).to_pylist(),
                    zip(table.column(entries).to_pylist(), table.column(total).to_pylist())))


def number_vocabulary(
    spark: SparkSession,
    class_terms: DataFrame,
    model_dir: str,
    min_term_count: int,
    term_totals: pa.Table | None,
) -> tuple[DataFrame | None, int, int]:
    """(numbered vocabulary or None when no term is kept, terms seen, terms kept).

    ``term_totals``: every term's totals when they were collected to the driver
    (:func:`term_and_label_totals`); the vocabulary is then numbered there (one write). None: it
    is numbered by the distributed range numbering (several jobs over the vocabulary)."""
    if term_totals is not None:
        numbered_table = numbered_vocabulary_table(term_totals, min_term_count)
        terms_seen, vocabulary_size = term_totals.num_rows, numbered_table.num_rows
        numbered = spark.createDataFrame(numbered_table, schemas.VOCABULARY).coalesce(1) if vocabulary_size else None
        return numbered, terms_seen, vocabulary_size
    all_terms = vocabulary_counts(class_terms, 1)
    # Both sizes in one job (not one count() per frame).
    sizes = all_terms.agg(
        F.count(F.lit(1)).alias("terms"),
        F.count_if(F.col("total_count") >= min_term_count).alias("kept"),
    ).first()
    terms_seen, vocabulary_size = int(sizes["terms"]), int(sizes["kept"])
    numbered = None
    if vocabulary_size:
        numbered = number_terms(
            spark,
            all_terms.where(F.col("total_count") >= min_term_count),
            contract.work_uri(model_dir, "vocabulary_sorted"),
        )
    return numbered, terms_seen, vocabulary_size


def require_kept_terms(vocabulary_size: int, min_term_count: int) -> None:
    if vocabulary_size == 0:
        raise InputError(
            f"no term of the accepted documents reaches min_term_count={min_term_count}: the model would be empty"
        )


def write_vocabulary(
    spark: SparkSession,
    class_terms: DataFrame,
    model_dir: str,
    min_term_count: int,
    term_totals: pa.Table | None,
) -> tuple[DataFrame, int, int]:
    """Number the terms seen at least ``min_term_count`` times and write vocabulary/.

    ``term_totals``: as for :func:`number_vocabulary`. Returns the vocabulary as read back, the
    number of terms seen and the number kept."""
    numbered, terms_seen, vocabulary_size = number_vocabulary(
        spark, class_terms, model_dir, min_term_count, term_totals
    )
    require_kept_terms(vocabulary_size, min_term_count)
    vocabulary_uri = contract.vocabulary_uri(model_dir)
    numbered.write.mode("overwrite").parquet(vocabulary_uri)
    return spark.read.schema(schemas.VOCABULARY).parquet(vocabulary_uri), terms_seen, vocabulary_size
