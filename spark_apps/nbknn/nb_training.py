"""Naive Bayes training as Spark transforms: class priors (dict1) and (class, term) counts (dict2).

The model is counts only. Probabilities are derived when a shard is loaded for prediction, which
keeps models additive: counts of new labelled data can be folded into an existing model.
Tokenising happens in the JVM; the per-document counting runs in Arrow batches
(``mapInArrow``, vectorised in pyarrow, no per-token Python code).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from nbknn import schemas
from nbknn.sharding import ShardPlan
from nbknn.tokenizer import TokenizerConfig, tokens_column

# --- class priors ----------------------------------------------------------------------------


def counts_by_reason_and_label(documents: DataFrame) -> DataFrame:
    """One pass over the input: records per (reject_reason, label); label is null for rejects."""
    return documents.groupBy("reject_reason", "label").count()


def counts_by_reason_label_and_folder(documents: DataFrame) -> DataFrame:
    """As :func:`counts_by_reason_and_label`, also per folder (the directory of the record's file):
    the folders are the partitions a model's counts come from (its lineage), in the same pass."""
    folder = F.regexp_extract(F.col("source"), r"^(.*)/[^/]*$", 1)
    return documents.groupBy("reject_reason", "label", folder.alias("folder")).count()


def class_priors(label_counts: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """(class_id, label, doc_count) with class ids in sorted label order (as numpy.unique sorts).

    Python sorts strings by code point, as Spark and scikit-learn do, so ids agree everywhere.
    """
    totals: dict[str, int] = {}
    for label, count in label_counts:
        totals[label] = totals.get(label, 0) + count
    return [(class_id, label, totals[label]) for class_id, label in enumerate(sorted(totals))]


def class_priors_frame(spark: SparkSession, priors: list[tuple[int, str, int]]) -> DataFrame:
    return spark.createDataFrame(priors, schemas.CLASS_PRIORS)


# --- term counts -----------------------------------------------------------------------------


def tokenized_documents(accepted: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """(label, doc_row, tokens): doc_row tells documents apart even when their ids repeat."""
    return accepted.select(
        "label",
        F.monotonically_increasing_id().alias("doc_row"),
        tokens_column(F.col("text"), tokenizer).alias("tokens"),
    )


CLASS_TERMS_SCHEMA = "label string, term string, count long, doc_freq long"


def batch_class_term_counts(labels: pa.Array, tokens: pa.Array) -> pa.RecordBatch:
    """(label, term, count, doc_freq) of one Arrow batch of documents, aggregated in the batch.

    labels: string array (n,); tokens: list<string> array (n,), one document per row (a null
    list counts as empty). ``count`` is the term's occurrences in the batch's documents of the
    label, ``doc_freq`` the number of those documents that contain it: both add up over batches.
    """
    n = len(tokens)
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(tokens)
    rows = pa.array(np.repeat(np.arange(n, dtype=np.int64), lengths))
    # use_threads=False: the task already has its core; Arrow's own pool would oversubscribe it.
    per_document = pa.table({"row": rows, "term": flat}).group_by(["row", "term"], use_threads=False).aggregate(
        [([], "count_all")]
    )
    per_document = per_document.append_column("label", labels.take(per_document.column("row")))
    per_class = per_document.group_by(["label", "term"], use_threads=False).aggregate(
        [("count_all", "sum"), ([], "count_all")]
    )
    return pa.RecordBatch.from_arrays(
        [
            per_class.column("label").combine_chunks().cast(pa.string()),
            per_class.column("term").combine_chunks().cast(pa.string()),
            per_class.column("count_all_sum").combine_chunks().cast(pa.int64()),
            per_class.column("count_all").combine_chunks().cast(pa.int64()),
        ],
        names=["label", "term", "count", "doc_freq"],
    )


def class_term_counts(tokenized: DataFrame) -> DataFrame:
    """(label, term, count, doc_freq): occurrences of the term in the class, and its documents.

    Each Arrow batch of documents is counted per (document, term) and then per (label, term)
    inside its Python task (:func:`batch_class_term_counts`); the partial counts of the batches
    meet in one shuffle by (label, term). ``tokenized``: label, tokens (array<string>).
    """

    def count(batches):
        for batch in batches:
            yield batch_class_term_counts(batch.column("label"), batch.column("tokens"))

    return (
        tokenized.select("label", "tokens")
        .mapInArrow(count, CLASS_TERMS_SCHEMA)
        .groupBy("label", "term")
        .agg(F.sum("count").alias("count"), F.sum("doc_freq").alias("doc_freq"))
    )


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


def term_count_entries(class_terms: DataFrame, classes: DataFrame, vocabulary: DataFrame) -> DataFrame:
    """dict2: (class_id, term_id, count) over the kept vocabulary."""
    return (
        class_terms.join(F.broadcast(classes.select("label", "class_id")), "label")
        .join(vocabulary.select("term", "term_id"), "term")
        .select("class_id", "term_id", F.col("count").cast("long"))
    )


def class_term_stats(entries: DataFrame) -> DataFrame:
    """(class_id, entries, term_total) per class present in dict2."""
    return entries.groupBy("class_id").agg(
        F.count(F.lit(1)).alias("entries"), F.sum("count").alias("term_total")
    )


def classes_table(
    spark: SparkSession,
    priors: list[tuple[int, str, int]],
    stats: dict[int, tuple[int, int]],
    plan: ShardPlan,
) -> DataFrame:
    """dict1 of the model: priors with term totals, entries and shard; a class whose documents
    have no kept term has zero entries and still gets a shard (it can still win on its prior)."""
    rows = []
    for class_id, label, doc_count in priors:
        entries, term_total = stats.get(class_id, (0, 0))
        rows.append((class_id, label, doc_count, term_total, entries, plan.shard_of[class_id]))
    return spark.createDataFrame(rows, schemas.CLASSES)


def with_shard(entries: DataFrame, spark: SparkSession, plan: ShardPlan) -> DataFrame:
    """dict2 with its shard column, one partition per shard, sorted for compact loading."""
    shard_map = spark.createDataFrame(sorted(plan.shard_of.items()), "class_id int, shard int")
    return (
        entries.join(F.broadcast(shard_map), "class_id")
        .repartition(plan.num_shards, "shard")
        .sortWithinPartitions("shard", "class_id", "term_id")
        .select("class_id", "term_id", "count", "shard")
    )
