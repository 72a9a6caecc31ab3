"""The term counts job (dict2): count (class, term) pairs, number the vocabulary, plan the shards
and write the model tables (classes/, vocabulary/, term_counts/shard=S/). The vocabulary is
numbered by :mod:`nbknn.naive_bayes.vocabulary`, the shards planned by :mod:`nbknn.naive_bayes.sharding`.

A (label, term) table small enough for the driver (20 Newsgroups: 220 268 rows) is collected in
the job that counts it, and the model's tables are built and written from the driver: the joins,
shuffles and Spark writes of the distributed way cost more than the counting at that size.

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
from pyspark.sql.pandas.types import to_arrow_schema

from nbknn import contract
from nbknn.common import fs
from nbknn.common.driver_parquet import write_driver_table
from nbknn.common.errors import ConfigError
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import InputError, InputSpec, accepted_documents, read_documents
from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.model_report import write_model_report
from nbknn.naive_bayes.sharding import ShardPlan, imbalance, plan_shards
from nbknn.naive_bayes.staging import forget_staged_manifest, input_summary, read_class_priors, summary_uri
from nbknn.naive_bayes.vocabulary import (
    DEFAULT_MAX_DRIVER_TERMS,
    entries_and_totals,
    numbered_vocabulary_table,
    require_kept_terms,
    term_and_label_totals,
    write_vocabulary,
)

#: Largest (label, term) table the term counts job collects to the driver to build the model's
#: tables there (about 60 bytes a row in Arrow: 120 MB at the bound); a larger one is joined,
#: numbered and sharded in Spark.
DEFAULT_MAX_DRIVER_ENTRIES = 2_000_000

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


def classes_rows(
    priors: list[tuple[int, str, int]], stats: dict[int, tuple[int, int]], plan: ShardPlan
) -> list[tuple[int, str, int, int, int, int]]:
    """dict1 of the model: priors with term totals, entries and shard; a class whose documents
    have no kept term has zero entries and still gets a shard (it can still win on its prior)."""
    rows = []
    for class_id, label, doc_count in priors:
        entries, term_total = stats.get(class_id, (0, 0))
        rows.append((class_id, label, doc_count, term_total, entries, plan.shard_of[class_id]))
    return rows


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
    max_driver_entries: int = DEFAULT_MAX_DRIVER_ENTRIES,
) -> dict:
    """Count every (class, term) pair and write classes/, vocabulary/ and term_counts/shard=S/;
    with ``report_alpha``, also the model's report/ (each class's top terms at that alpha).

    A (label, term) table of at most ``max_driver_entries`` rows becomes the model's tables on
    the driver; a larger one in Spark, its vocabulary numbered on the driver when it has at most
    ``max_driver_terms`` terms. Every way gives the same tables."""
    if min_term_count < 1:
        raise ConfigError(f"min_term_count must be >= 1 (got {min_term_count})")
    forget_staged_manifest(spark, model_dir)
    priors = read_class_priors(spark, model_dir)
    accepted = accepted_documents(read_documents(spark, spec, labelled=True))

    # The (label, term) table feeds both the vocabulary and dict2: it is kept in the executors'
    # storage (memory, spilling to disk) while this job runs, not written out and read back. It
    # is kept before the attempt to collect it, so that a table too large for the driver is not
    # counted twice.
    class_terms = class_term_counts(tokenized_documents(accepted, tokenizer)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One job: the pass over the documents and, when the table is small, all of it.
        collected = collected_class_terms(class_terms, max_driver_entries)
        if collected is not None:
            written = write_tables_from_driver(
                spark, model_dir, priors, collected, min_term_count, num_shards, max_entries_per_shard
            )
        else:
            written = write_tables_in_spark(
                spark, model_dir, priors, class_terms, min_term_count, num_shards, max_entries_per_shard,
                max_driver_terms,
            )
    finally:
        class_terms.unpersist()
    stats, plan, terms_seen, vocabulary_size = written
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


#: What writing the model's tables returns: (entries, term_total) per class id, the shard plan,
#: the number of distinct terms seen and the number kept.
WrittenTables = tuple[dict[int, tuple[int, int]], ShardPlan, int, int]


def collected_class_terms(class_terms: DataFrame, max_rows: int) -> pa.Table | None:
    """The whole (label, term, count, doc_freq) table on the driver, or None (having fetched at
    most ``max_rows + 1`` rows) when it has more than ``max_rows`` rows."""
    if max_rows < 1:
        return None
    table = class_terms.limit(max_rows + 1).toArrow()
    return table if table.num_rows <= max_rows else None


def write_tables_from_driver(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    class_terms: pa.Table,
    min_term_count: int,
    num_shards: int | None,
    max_entries_per_shard: int | None,
) -> WrittenTables:
    """The model's tables built from the whole (label, term) table on the driver and written from
    there: no join, no shuffle, no further Spark job."""
    _check_labels_known(set(pc.unique(class_terms.column("label")).to_pylist()), priors)
    term_totals = (
        class_terms.group_by("term")
        .aggregate([("count", "sum"), ("doc_freq", "sum")])
        .select(["term", "count_sum", "doc_freq_sum"])
        .rename_columns(["term", "total_count", "doc_freq"])
    )
    vocabulary = numbered_vocabulary_table(term_totals, min_term_count)
    require_kept_terms(vocabulary.num_rows, min_term_count)
    entries = entries_table(class_terms, priors, vocabulary)
    by_class = entries.group_by("class_id").aggregate([("count", "count"), ("count", "sum")])
    stats = entries_and_totals(by_class, "class_id", "count_count", "count_sum")
    plan = plan_for(priors, stats, num_shards, max_entries_per_shard)
    # Written from the driver: a Spark write of a table already on the driver costs 0.2-0.7 s
    # (20 Newsgroups: 73 686 terms, 220 268 entries), the driver's write a few tens of ms.
    write_driver_table(spark, contract.vocabulary_uri(model_dir), vocabulary)
    write_term_count_shards_from_driver(spark, entries, plan, model_dir)
    write_classes(spark, model_dir, priors, stats, plan)
    return stats, plan, term_totals.num_rows, vocabulary.num_rows


def write_term_count_shards_from_driver(
    spark: SparkSession, entries: pa.Table, plan: ShardPlan, model_dir: str
) -> None:
    """term_counts/shard=S/ as :func:`write_term_count_shards` writes it, from dict2 on the
    driver: one file per shard that has entries, sorted by (class_id, term_id)."""
    shard_of_class = np.zeros(max(plan.shard_of) + 1, dtype=np.int32)
    for class_id, shard in plan.shard_of.items():
        shard_of_class[class_id] = shard
    entries = entries.sort_by([("class_id", "ascending"), ("term_id", "ascending")])
    shard = shard_of_class[entries.column("class_id").to_numpy()]
    shards = {f"shard={number}": entries.filter(pa.array(shard == number)) for number in range(plan.num_shards)}
    write_driver_table(
        spark, contract.term_counts_uri(model_dir), {name: part for name, part in shards.items() if part.num_rows}
    )


def entries_table(class_terms: pa.Table, priors: list[tuple[int, str, int]], vocabulary: pa.Table) -> pa.Table:
    """dict2 (class_id, term_id, count) of a (label, term, count) table on the driver: labels to
    their class ids, terms to their ids in ``vocabulary``; pairs of terms it lacks are dropped."""
    term_id = pc.index_in(class_terms.column("term"), value_set=vocabulary.column("term"))
    kept = pc.is_valid(term_id)
    label_order = pa.array([label for _, label, _ in priors], type=pa.string())
    class_ids = np.array([class_id for class_id, _, _ in priors], dtype=np.int32)
    label_index = pc.index_in(class_terms.column("label").filter(kept), value_set=label_order)
    return pa.table(
        {
            "class_id": pa.array(class_ids[label_index.to_numpy(zero_copy_only=False)], type=pa.int32()),
            "term_id": term_id.filter(kept).cast(pa.int32()),
            "count": class_terms.column("count").filter(kept).cast(pa.int64()),
        }
    )


def write_tables_in_spark(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    class_terms: DataFrame,
    min_term_count: int,
    num_shards: int | None,
    max_entries_per_shard: int | None,
    max_driver_terms: int,
) -> WrittenTables:
    """The model's tables from a (label, term) table too large for the driver; its vocabulary is
    numbered on the driver when it has at most ``max_driver_terms`` terms."""
    # One job: every term's and every label's totals.
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
    return stats, plan, terms_seen, vocabulary_size


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
    """Write classes/ (dict1 of the model) in one file, from the driver."""
    names = schemas.CLASSES.names
    rows = [dict(zip(names, row)) for row in classes_rows(priors, stats, plan)]
    table = pa.Table.from_pylist(rows, schema=to_arrow_schema(schemas.CLASSES))
    write_driver_table(spark, contract.classes_uri(model_dir), table)


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
