"""The selection job: k-fold cross-validation of a grid of Naive Bayes models over the counts of the
model being trained, in Spark; the math is :mod:`nbknn.naive_bayes.selection`.

It runs after the term counts job, on the same input, against the staged model:

1. the accepted documents are vectorised against the staged vocabulary (the prediction's own
   vectoriser) and each gets its fold (:func:`fold_column`, the Spark spelling of
   :func:`nbknn.contract.fold_of`);
2. the documents are counted per (fold, class) and their terms per (fold, class, term) in Spark;
   the per-fold counts must add up to the staged model's counts exactly (else the input changed
   between the jobs, and the run is refused);
3. the per-fold counts (the size of the model times at most the number of folds) go to the tasks
   once; the documents are range-partitioned by fold so that a task holds one or two folds, and
   each task scores its documents with the model of the other folds at every grid point and
   emits additive tallies, summed on the driver;
4. the table (every point's per-fold and mean scores) and the chosen point are written as the
   job's summary, from which publishing takes the model's parameters and the manifest's table.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.common.errors import ConfigError
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import InputError, InputSpec, accepted_documents, read_documents
from nbknn.inputs.tokenizer import TokenizerConfig
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.model_report import write_model_report
from nbknn.naive_bayes.selection import FoldCounts, FoldTally, GridPoint, grid_points, selection_table, tally_fold
from nbknn.naive_bayes.staging import forget_staged_manifest, input_summary, summary_uri
from nbknn.naive_bayes.vectorize import document_vectors, vocabulary_lookup

TALLY_SCHEMA = (
    "fold int, point int, documents long, log_loss_sum double, tp array<long>, fp array<long>, fn array<long>"
)


def fold_column(doc_id: Column, folds: int) -> Column:
    """A document's fold in Spark: the same number as :func:`nbknn.contract.fold_of` in Python."""
    digits = F.substring(F.sha2(doc_id.cast("string"), 256), 1, contract.FOLD_HASH_HEX_DIGITS)
    return F.pmod(F.conv(digits, 16, 10).cast("long"), F.lit(folds)).cast("int")


def labelled_vectors(spark: SparkSession, spec: InputSpec, model_dir: str, folds: int):
    """(fold, class_id, term_ids, counts) of the accepted documents, the staged classes
    [(class_id, label, doc_count, term_total)] and the vocabulary's lookup (terms by id)."""
    terms_summary = fs.read_json(spark, summary_uri(model_dir, "term_counts"))
    tokenizer = TokenizerConfig.from_dict(terms_summary["tokenizer"])
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(model_dir))
    lookup = vocabulary_lookup(vocabulary.select("term_id", "term").toArrow())
    classes = sorted(
        (row["class_id"], row["label"], row["doc_count"], row["term_total"])
        for row in spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(model_dir)).collect()
    )
    labels = spark.createDataFrame([(c, label) for c, label, _, _ in classes], "class_id int, label string")
    broadcast = spark.sparkContext.broadcast(lookup)
    vectors = document_vectors(accepted_documents(read_documents(spark, spec, labelled=True)), broadcast, tokenizer)
    framed = vectors.join(F.broadcast(labels), "label", "left").select(
        fold_column(F.col("doc_id"), folds).alias("fold"), "doc_id", "class_id", "term_ids", "counts"
    )
    return framed, classes, lookup


def collect_fold_counts(vectors: DataFrame, classes: list, folds: int, vocabulary_size: int) -> FoldCounts:
    """Per-fold document and term counts of the vectors, checked against the staged model's."""
    if vectors.where(F.col("class_id").isNull()).limit(1).count():
        raise InputError("a document's label is not one of the model's classes: the input changed "
                         "since the counting jobs; rerun the training from the start")
    doc_counts = np.zeros((folds, len(classes)), dtype=np.int64)
    for row in vectors.groupBy("fold", "class_id").count().collect():
        doc_counts[row["fold"], row["class_id"]] = row["count"]
    entries = (
        vectors.select("fold", "class_id", F.explode(F.arrays_zip("term_ids", "counts")).alias("e"))
        .groupBy("fold", "class_id", F.col("e.term_ids").alias("term_id"))
        .agg(F.sum(F.col("e.counts").cast("long")).alias("count"))
        .toArrow()
    )
    counts = FoldCounts.from_entries(
        doc_counts,
        entries.column("fold").to_numpy(),
        entries.column("class_id").to_numpy(),
        entries.column("term_id").to_numpy(),
        entries.column("count").to_numpy(),
        vocabulary_size,
    )
    check_counts_match_model(counts, classes)
    return counts


def check_counts_match_model(counts: FoldCounts, classes: list) -> None:
    """The folds must add up to the model: same documents and tokens per class."""
    staged_docs = np.array([doc_count for _, _, doc_count, _ in classes])
    staged_terms = np.array([term_total for _, _, _, term_total in classes])
    counted_terms = np.asarray(counts.total_terms.sum(axis=1)).ravel()
    if not (np.array_equal(counts.total_docs, staged_docs) and np.array_equal(counted_terms, staged_terms)):
        raise InputError(
            "the documents read for selection do not add up to the staged model's counts "
            f"(documents {counts.total_docs.sum()} vs {staged_docs.sum()}, tokens {counted_terms.sum()} vs "
            f"{staged_terms.sum()}): the input changed since the counting jobs; rerun the training"
        )


def tally_batches(batches, counts_broadcast, points: list[GridPoint]):
    """mapInArrow body: gather a task's documents per fold, score each fold's at every grid point,
    emit one tally row per (fold, point)."""
    counts: FoldCounts = counts_broadcast.value
    by_fold: dict[int, list[pa.RecordBatch]] = {}
    for batch in batches:
        fold = batch.column("fold").to_numpy(zero_copy_only=False)
        for f in np.unique(fold):
            by_fold.setdefault(int(f), []).append(batch.filter(pa.array(fold == f)))
    for f, parts in sorted(by_fold.items()):
        X, y = batch_matrix(pa.Table.from_batches(parts), counts.vocabulary_size)
        tally = tally_fold(counts, f, X, y, points)
        yield tally_rows(f, tally)


def batch_matrix(table: pa.Table, vocabulary_size: int) -> tuple[sp.csr_array, np.ndarray]:
    """(X (n, V) term counts, y (n,) class ids) of a table of vectors."""
    term_ids = table.column("term_ids").combine_chunks()
    counts = table.column("counts").combine_chunks()
    lengths = term_ids.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    data = counts.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    indices = term_ids.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    X = sp.csr_array((data, indices, indptr), shape=(len(table), vocabulary_size))
    return X, table.column("class_id").to_numpy().astype(np.int64)


def tally_rows(fold: int, tally: FoldTally) -> pa.RecordBatch:
    points = tally.tp.shape[0]
    return pa.RecordBatch.from_pydict(
        {
            "fold": pa.array([fold] * points, pa.int32()),
            "point": pa.array(range(points), pa.int32()),
            "documents": pa.array([tally.documents] * points, pa.int64()),
            "log_loss_sum": pa.array(tally.log_loss_sum, pa.float64()),
            "tp": pa.array(list(tally.tp), pa.list_(pa.int64())),
            "fp": pa.array(list(tally.fp), pa.list_(pa.int64())),
            "fn": pa.array(list(tally.fn), pa.list_(pa.int64())),
        }
    )


def summed_tallies(rows, folds: int, points: int, classes: int) -> list[FoldTally]:
    """One tally per fold from the tasks' rows (a fold split over tasks adds up)."""
    tallies = [FoldTally.empty(points, classes) for _ in range(folds)]
    documents = {}
    for row in rows:
        tally = tallies[row["fold"]]
        tally.tp[row["point"]] += np.asarray(row["tp"])
        tally.fp[row["point"]] += np.asarray(row["fp"])
        tally.fn[row["point"]] += np.asarray(row["fn"])
        tally.log_loss_sum[row["point"]] += row["log_loss_sum"]
        if row["point"] == 0:
            documents[row["fold"]] = documents.get(row["fold"], 0) + row["documents"]
    for fold, n in documents.items():
        tallies[fold].documents = n
    return tallies


def run_selection(
    spark: SparkSession,
    spec: InputSpec,
    model_dir: str,
    folds: int,
    alphas: list[float],
    model_types: list[str],
    fit_priors: list[bool],
    metric: str,
) -> dict:
    """Score every grid point on every held-out fold of the staged model's documents; write and
    return the summary (the table and the chosen point)."""
    if folds < 2:
        raise ConfigError(f"selection needs at least 2 folds (got {folds})")
    if metric not in contract.SELECTION_METRICS:
        raise ConfigError(f"metric must be one of {contract.SELECTION_METRICS} (got {metric!r})")
    try:
        points = grid_points(model_types, alphas, fit_priors)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    forget_staged_manifest(spark, model_dir)
    vectors, classes, lookup = labelled_vectors(spark, spec, model_dir, folds)
    vocabulary_size = lookup.vocabulary_size
    vectors = vectors.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        counts = collect_fold_counts(vectors, classes, folds, vocabulary_size)
        counts_broadcast = spark.sparkContext.broadcast(counts)
        try:
            tasks = folds * max(1, math.ceil(vectors.rdd.getNumPartitions() / folds))
            rows = (
                vectors.repartitionByRange(tasks, "fold", "doc_id")
                .select("fold", "class_id", "term_ids", "counts")
                .mapInArrow(partial(tally_batches, counts_broadcast=counts_broadcast, points=points), TALLY_SCHEMA)
                .collect()
            )
        finally:
            counts_broadcast.destroy()
    finally:
        vectors.unpersist()
    table = selection_table(summed_tallies(rows, folds, len(points), len(classes)), points, metric)
    summary = {
        "job": contract.SELECTION_JOB,
        "input": input_summary(spec),
        "fold_documents": counts.doc_counts.sum(axis=1).tolist(),
        **table,
        "code_version": code_version(),
    }
    summary["report"] = write_model_report(spark, model_dir, summary["best"]["alpha"], summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, contract.SELECTION_JOB), summary)
    return summary
