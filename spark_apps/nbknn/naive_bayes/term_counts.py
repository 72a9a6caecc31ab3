"""The term counts job (dict2): count (class, term) pairs, number the vocabulary, plan the shards
and write the model tables (classes/, vocabulary/, term_counts/shard=S/). The vocabulary is
numbered by :mod:`nbknn.naive_bayes.vocabulary`, the shards planned by :mod:`nbknn.naive_bayes.sharding`.

The model is counts only. Probabilities are derived when a shard is loaded for prediction, which
keeps models additive: counts of new labelled data can be folded into an existing model.
Tokenising happens in the JVM; the per-document counting runs in Arrow batches
(``mapInArrow``, vectorised in pyarrow, no per-token Python code).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.common.errors import ConfigError
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import InputError, InputSpec, accepted_documents, read_documents
from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.model_report import write_model_report
from nbknn.naive_bayes.sharding import ShardPlan, imbalance, plan_shards
from nbknn.naive_bayes.staging import forget_staged_manifest, input_summary, read_class_priors, summary_uri
from nbknn.naive_bayes.vocabulary import DEFAULT_MAX_DRIVER_TERMS, term_and_label_totals, write_vocabulary

# --- counting ---------------------------------------------------------------------------------


def tokenized_documents(accepted: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """(label, doc_row, tokens): doc_row tells documents apart even when their ids repeat."""
    return accepted.select(
        "label",
        F.monotonically_increasing_id().alias("doc_row"),
        tokens_column(F.col("text"), tokenizer).alias("tokens"),
    )


CLASS_TERMS_SCHEMA = "label string, term string, count long, doc_freq long"
CLASS_TERMS_ARROW_SCHEMA = pa.schema(
    [("label", pa.string()), ("term", pa.string()), ("count", pa.int64()), ("doc_freq", pa.int64())]
)


#: Largest (label, term) key space of a batch counted in dense arrays; a larger one is sorted.
DENSE_CLASS_TERM_KEYS = 1 << 24


def batch_class_term_counts(labels: pa.Array, tokens: pa.Array) -> pa.RecordBatch:
    """(label, term, count, doc_freq) of one Arrow batch of documents, aggregated in the batch.

    labels: string array (n,), no nulls; tokens: list<string> array (n,), one document per row (a
    null list counts as empty). ``count`` is the term's occurrences in the batch's documents of
    the label, ``doc_freq`` the number of those documents that contain it: both add up over
    batches. Terms and labels are numbered once per batch (dictionary encoding); the counting is
    then on integers: each document's distinct terms are its row of a sparse matrix with the
    duplicates summed, and the (label, term) totals are bin counts.
    """
    if labels.null_count:
        raise ValueError("every document of a training batch must have a label")
    n = len(tokens)
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    terms = pc.dictionary_encode(pc.list_flatten(tokens))
    n_terms = len(terms.dictionary)
    if n_terms == 0:
        return pa.RecordBatch.from_pylist([], schema=CLASS_TERMS_ARROW_SCHEMA)
    per_document = sp.csr_matrix(
        (np.ones(len(terms), dtype=np.int64), terms.indices.to_numpy(zero_copy_only=False).astype(np.int32),
         np.concatenate([[0], np.cumsum(lengths)])),
        shape=(n, n_terms),
    )
    per_document.sum_duplicates()
    classes = pc.dictionary_encode(labels)
    class_of_entry = np.repeat(classes.indices.to_numpy(zero_copy_only=False).astype(np.int64),
                               np.diff(per_document.indptr))
    keys = class_of_entry * n_terms + per_document.indices
    key_space = len(classes.dictionary) * n_terms
    if key_space <= DENSE_CLASS_TERM_KEYS:
        doc_freq = np.bincount(keys, minlength=key_space)
        count = np.bincount(keys, weights=per_document.data, minlength=key_space)
        keys = np.flatnonzero(doc_freq)
        doc_freq, count = doc_freq[keys], count[keys]
    else:
        keys, inverse = np.unique(keys, return_inverse=True)
        doc_freq = np.bincount(inverse)
        count = np.bincount(inverse, weights=per_document.data)
    return pa.RecordBatch.from_arrays(
        [
            classes.dictionary.take(pa.array(keys // n_terms)).cast(pa.string()),
            terms.dictionary.take(pa.array(keys % n_terms)).cast(pa.string()),
            pa.array(count.astype(np.int64)),
            pa.array(doc_freq.astype(np.int64)),
        ],
        schema=CLASS_TERMS_ARROW_SCHEMA,
    )


def count_class_terms_of_batches(batches):
    """The ``mapInArrow`` function of :func:`class_term_counts`: one partial count per batch."""
    for batch in batches:
        yield batch_class_term_counts(batch.column("label"), batch.column("tokens"))


def class_term_counts(tokenized: DataFrame) -> DataFrame:
    """(label, term, count, doc_freq): occurrences of the term in the class, and its documents.

    Each Arrow batch of documents is counted per (document, term) and then per (label, term)
    inside its Python task (:func:`batch_class_term_counts`); the partial counts of the batches
    meet in one shuffle by (label, term). ``tokenized``: label, tokens (array<string>).
    """
    return (
        tokenized.select("label", "tokens")
        .mapInArrow(count_class_terms_of_batches, CLASS_TERMS_SCHEMA)
        .groupBy("label", "term")
        .agg(F.sum("count").alias("count"), F.sum("doc_freq").alias("doc_freq"))
    )


def term_count_entries(class_terms: DataFrame, classes: DataFrame, vocabulary: DataFrame) -> DataFrame:
    """dict2: (class_id, term_id, count) over the kept vocabulary, plus ``shard`` when ``classes``
    has that column (then the one broadcast of the classes places every entry in its shard too)."""
    shard = ["shard"] if "shard" in classes.columns else []
    return (
        class_terms.join(F.broadcast(classes.select("label", "class_id", *shard)), "label")
        .join(vocabulary.select("term", "term_id"), "term")
        .select("class_id", "term_id", F.col("count").cast("long"), *shard)
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
    """dict2 (class_id, term_id, count) with its shard column."""
    shard_map = spark.createDataFrame(sorted(plan.shard_of.items()), "class_id int, shard int")
    return entries.join(F.broadcast(shard_map), "class_id").select("class_id", "term_id", "count", "shard")


# --- the job ---------------------------------------------------------------------------------


def run_term_counts(
    spark: SparkSession,
    spec: InputSpec,
    model_dir: str,
    tokenizer: TokenizerConfig,
    min_term_count: int = 1,
    num_shards: int | None = None,
    max_entries_per_shard: int | None = None,
    max_driver_terms: int = DEFAULT_MAX_DRIVER_TERMS,
    report_alpha: float | None = None,
) -> dict:
    """Count every (class, term) pair and write classes/, vocabulary/ and term_counts/shard=S/;
    with ``report_alpha``, also the model's report/ (each class's top terms at that alpha).

    Vocabularies of at most ``max_driver_terms`` terms are numbered on the driver, larger ones
    in Spark (same term ids either way)."""
    if min_term_count < 1:
        raise ConfigError(f"min_term_count must be >= 1 (got {min_term_count})")
    forget_staged_manifest(spark, model_dir)
    priors = read_class_priors(spark, model_dir)
    accepted = accepted_documents(read_documents(spark, spec, labelled=True))

    # The (label, term) table feeds both the vocabulary and dict2: it is kept in the executors'
    # storage (memory, spilling to disk) while this job runs, not written out and read back.
    class_terms = class_term_counts(tokenized_documents(accepted, tokenizer)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One job: the pass over the documents, then every term's and every label's totals.
        totals = term_and_label_totals(class_terms, max_driver_terms, len(priors))
        term_totals, label_stats = totals if totals is not None else (None, label_term_stats(class_terms))
        _check_labels_known(set(label_stats), priors)
        vocabulary, terms_seen, vocabulary_size = write_vocabulary(
            spark, class_terms, model_dir, min_term_count, term_totals
        )
        if min_term_count == 1:
            stats, plan = write_tables_of_known_stats(
                spark, model_dir, priors, label_stats, class_terms, vocabulary, num_shards, max_entries_per_shard
            )
        else:
            classes = spark.createDataFrame(priors, schemas.CLASS_PRIORS)
            entries = term_count_entries(class_terms, classes, vocabulary)
            stats, plan = write_sharded_tables(spark, model_dir, priors, entries, num_shards, max_entries_per_shard)
    finally:
        class_terms.unpersist()
    summary = term_counts_summary(
        input_summary(spec),
        tokenizer.to_dict(),
        min_term_count,
        vocabulary_size,
        terms_seen - vocabulary_size,
        priors,
        stats,
        plan,
    )
    if report_alpha is not None:
        summary["report"] = write_model_report(spark, model_dir, report_alpha)
    fs.write_json_atomic(spark, summary_uri(model_dir, "term_counts"), summary)
    return summary


def write_tables_of_known_stats(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    label_stats: dict[str, tuple[int, int]],
    class_terms: DataFrame,
    vocabulary: DataFrame,
    num_shards: int | None,
    max_entries_per_shard: int | None,
) -> tuple[dict[int, tuple[int, int]], ShardPlan]:
    """:func:`write_sharded_tables` when every term is kept: each class's entries and term total
    are then its label's (``label_stats``), known before dict2 is built, so the shards are planned
    first and dict2 joins one small table that gives both the class id and the shard."""
    class_id_of = {label: class_id for class_id, label, _ in priors}
    stats = {class_id_of[label]: label_stat for label, label_stat in label_stats.items()}
    plan = plan_for(priors, stats, num_shards, max_entries_per_shard)
    classes = spark.createDataFrame(
        [(label, class_id, plan.shard_of[class_id]) for class_id, label, _ in priors],
        "label string, class_id int, shard int",
    )
    write_term_count_shards(term_count_entries(class_terms, classes, vocabulary), plan, model_dir)
    write_classes(spark, model_dir, priors, stats, plan)
    return stats, plan


def label_term_stats(class_terms: DataFrame) -> dict[str, tuple[int, int]]:
    """``{label: (entries, term_total)}`` in one job over the (label, term) table: the labels seen
    and, when every term is kept, each class's entries and term total (then equal to dict2's,
    without joining it first). Needed when the vocabulary is too large for the driver; otherwise
    :func:`nbknn.naive_bayes.vocabulary.term_and_label_totals` gives them with the term totals."""
    return {
        row["label"]: (row["entries"], row["term_total"])
        for row in class_terms.groupBy("label")
        .agg(F.count(F.lit(1)).alias("entries"), F.sum("count").alias("term_total"))
        .collect()
    }


def _check_labels_known(seen: set[str], priors: list[tuple[int, str, int]]) -> None:
    """Every label seen now must have been counted by the class prior job over the same input."""
    known = {label for _, label, _ in priors}
    unknown = sorted(seen - known)
    if unknown:
        raise InputError(
            f"labels {unknown[:5]} were not counted by the class prior job: the input changed "
            "between the two jobs; rerun the training from the start"
        )


def write_sharded_tables(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    entries: DataFrame,
    num_shards: int | None,
    max_entries_per_shard: int | None,
    stats: dict[int, tuple[int, int]] | None = None,
) -> tuple[dict[int, tuple[int, int]], ShardPlan]:
    """Plan the shards from the entries per class; write term_counts/shard=S/ and classes/.

    ``stats``: (entries, term_total) per class id when the caller knows them already; else they
    are counted from ``entries``. Returns the stats and the shard plan."""
    if stats is None:
        stats = {row["class_id"]: (row["entries"], row["term_total"]) for row in class_term_stats(entries).collect()}
    plan = plan_for(priors, stats, num_shards, max_entries_per_shard)
    write_term_count_shards(with_shard(entries, spark, plan), plan, model_dir)
    write_classes(spark, model_dir, priors, stats, plan)
    return stats, plan


def plan_for(
    priors: list[tuple[int, str, int]],
    stats: dict[int, tuple[int, int]],
    num_shards: int | None,
    max_entries_per_shard: int | None,
) -> ShardPlan:
    """The shard plan of every class of ``priors`` by its entries (a class with none has 0)."""
    return plan_shards(
        {class_id: stats.get(class_id, (0, 0))[0] for class_id, _, _ in priors},
        num_shards=num_shards,
        max_entries_per_shard=max_entries_per_shard,
    )


def write_term_count_shards(entries_with_shard: DataFrame, plan: ShardPlan, model_dir: str) -> None:
    """Write dict2 (class_id, term_id, count, shard) as term_counts/shard=S/: one partition per
    shard, sorted for compact loading."""
    (
        entries_with_shard.repartition(plan.num_shards, "shard")
        .sortWithinPartitions("shard", "class_id", "term_id")
        .select("class_id", "term_id", "count", "shard")
        .write.mode("overwrite")
        .partitionBy("shard")
        .parquet(contract.term_counts_uri(model_dir))
    )


def write_classes(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    stats: dict[int, tuple[int, int]],
    plan: ShardPlan,
) -> None:
    """Write classes/ (dict1 of the model) in one file."""
    classes_table(spark, priors, stats, plan).coalesce(1).write.mode("overwrite").parquet(
        contract.classes_uri(model_dir)
    )


def term_counts_summary(
    input_: dict,
    tokenizer: dict,
    min_term_count: int,
    vocabulary_size: int,
    terms_below_min_count: int,
    priors: list[tuple[int, str, int]],
    stats: dict[int, tuple[int, int]],
    plan: ShardPlan,
) -> dict:
    """The term counts job's summary (the model's tables in numbers), from which the manifest is built."""
    return {
        "job": "term_counts",
        "input": input_,
        "tokenizer": tokenizer,
        "min_term_count": min_term_count,
        "vocabulary_size": vocabulary_size,
        "terms_below_min_count": terms_below_min_count,
        "entries": sum(entries for entries, _ in stats.values()),
        "tokens": sum(total for _, total in stats.values()),
        "documents": sum(doc_count for _, _, doc_count in priors),
        "shards": plan.to_list(),
        "shard_imbalance": round(imbalance(plan), 6),
        "code_version": code_version(),
    }
