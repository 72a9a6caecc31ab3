"""One prediction pass over one model shard: every document's scores against the shard's classes.

``run_predict_shard`` loads the shard's counts, builds its compact scoring form on the driver
(:func:`nbknn.naive_bayes.model_reader.load_model_shard`), broadcasts it, scores every vector in
Arrow batches (one sparse product per batch, :func:`nbknn.naive_bayes.scoring.shard_result`) and
publishes the shard's scores with a summary that records which vectors and which model it scored.

Frame written (one per shard; the combiner's input):

    scores   doc_id string, label string, best_class int, best_score double, log_sum_exp double,
             top_classes array<int>, top_scores array<double>
             [with top terms: term_ids array<int>, counts array<int>, top_weights array<array<double>>
             (:mod:`nbknn.naive_bayes.prediction_terms`)]
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame, SparkSession

from nbknn.common import fs
from nbknn.common.provenance import code_version
from nbknn.naive_bayes import prediction_terms, scoring
from nbknn.naive_bayes.model_reader import ModelError, load_model_shard, model_summary, read_model_manifest
from nbknn.naive_bayes.outputs import publish_output, read_output_summary
from nbknn.naive_bayes.scoring_checks import check_top_n

SCORES_SCHEMA = (
    "doc_id string, label string, best_class int, best_score double, log_sum_exp double, "
    "top_classes array<int>, top_scores array<double>"
)
_ARROW_SCORES_FIELDS = (
    [
        ("doc_id", pa.string()),
        ("label", pa.string()),
        ("best_class", pa.int32()),
        ("best_score", pa.float64()),
        ("log_sum_exp", pa.float64()),
        ("top_classes", pa.list_(pa.int32())),
        ("top_scores", pa.list_(pa.float64())),
    ]
)
_ARROW_TERMS_FIELDS = [
    ("term_ids", pa.list_(pa.int32())),
    ("counts", pa.list_(pa.int32())),
    ("top_weights", pa.list_(pa.list_(pa.float64()))),
]


def scores_schema(top_terms: int) -> str:
    """The scores frame's schema: with top terms asked for, the columns the combiner explains from."""
    return f"{SCORES_SCHEMA}, {prediction_terms.SCORES_COLUMNS}" if top_terms else SCORES_SCHEMA


def csr_from_arrow(term_ids: pa.Array, counts: pa.Array, vocabulary_size: int) -> sp.csr_array:
    """(n, V) CSR term counts straight from two aligned Arrow list columns, without a row loop.

    An Arrow list column is already a CSR row structure: its offsets are the indptr and its
    flattened values the column indices.
    """
    if term_ids.null_count or counts.null_count:
        raise ValueError("term_ids and counts must not hold null lists")
    offsets = np.asarray(term_ids.offsets, dtype=np.int64)
    count_offsets = np.asarray(counts.offsets, dtype=np.int64)
    if not np.array_equal(np.diff(offsets), np.diff(count_offsets)):
        raise ValueError("term_ids and counts must have the same length in every row")
    # .values ignores the slice of a sliced array; the offsets do not.
    indices = np.asarray(term_ids.values)[offsets[0] : offsets[-1]]
    data = np.asarray(counts.values)[count_offsets[0] : count_offsets[-1]]
    indptr = offsets - offsets[0]
    if indices.size and (indices.min() < 0 or indices.max() >= vocabulary_size):
        raise ValueError(
            f"term ids must be in [0, {vocabulary_size}) (got {indices.min()}..{indices.max()}): "
            "the vectors were not made with this model's vocabulary"
        )
    return sp.csr_array(
        (data.astype(np.float64), indices.astype(np.int32), indptr.astype(np.int64)),
        shape=(len(term_ids), vocabulary_size),
    )


def _fixed_width_lists(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """(n, m) array as an Arrow list column of n lists of m values each."""
    n, m = matrix.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * m)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=value_type))


def score_arrow_batch(
    batch: pa.RecordBatch, model: scoring.ShardModel, top_n: int, top_terms: int = 0
) -> pa.RecordBatch:
    """Score one Arrow batch of vectors against a shard: one sparse product for the whole batch.
    With ``top_terms``, the shard's best classes (at least two) also carry their term weights."""
    term_ids, counts = batch.column("term_ids"), batch.column("counts")
    X = csr_from_arrow(term_ids, counts, model.vocabulary_size)
    return scored_batch(batch.column("doc_id"), batch.column("label"), X, model, top_n,
                        (term_ids, counts) if top_terms else None)


def scored_batch(doc_ids: pa.Array, labels: pa.Array, X, model: scoring.ShardModel, top_n: int,
                 term_lists: tuple[pa.Array, pa.Array] | None = None) -> pa.RecordBatch:
    """The scores frame's rows of documents given as the rows of ``X``; with ``term_lists`` (their
    term_ids and counts lists, X then holding each term once per row) the top-terms columns too."""
    top_terms = term_lists is not None
    result = scoring.shard_result(model, X, max(top_n, prediction_terms.CANDIDATES if top_terms else 0))
    columns = [
        doc_ids,
        labels,
        pa.array(result.best_class.astype(np.int32)),
        pa.array(result.best_score),
        pa.array(result.log_sum_exp),
        _fixed_width_lists(result.top_classes.astype(np.int32), pa.int32()),
        _fixed_width_lists(result.top_scores, pa.float64()),
    ]
    fields = list(_ARROW_SCORES_FIELDS)
    if top_terms:
        candidates = result.top_classes[:, : prediction_terms.CANDIDATES]
        columns += [*term_lists, prediction_terms.candidate_weights(model, X, candidates)]
        fields += _ARROW_TERMS_FIELDS
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _score_batches(batches, model_broadcast, top_n: int, top_terms: int):
    """mapInArrow body: the scores of each Arrow batch of vectors against the broadcast shard."""
    model = model_broadcast.value
    for batch in batches:
        yield score_arrow_batch(batch, model, top_n, top_terms)


def shard_scores(vectors: DataFrame, model_broadcast, top_n: int, top_terms: int = 0) -> DataFrame:
    """Scores of every document against the shard broadcast as ``model_broadcast`` (a ShardModel).

    Runs in Python workers through ``mapInArrow``: each Arrow batch (spark's
    ``arrow.maxRecordsPerBatch`` documents) becomes one CSR matrix and one sparse product.
    """
    check_top_n(top_n)
    check_top_n(top_terms)
    score = partial(_score_batches, model_broadcast=model_broadcast, top_n=top_n, top_terms=top_terms)
    return vectors.select("doc_id", "label", "term_ids", "counts").mapInArrow(score, scores_schema(top_terms))


def model_memory(model: scoring.ShardModel) -> dict:
    """The broadcast model's bytes, by what they scale with."""
    nbytes = scoring.model_nbytes(model)
    entries = scoring.entry_count(model)
    return {
        "entries": entries,
        "classes": model.n_classes,
        "bytes_entries": nbytes.entries,
        "bytes_per_class": nbytes.per_class,
        "bytes_per_term": nbytes.per_term,
        "bytes_total": nbytes.total,
        "bytes_per_entry": (nbytes.entries / entries) if entries else None,
    }


def run_predict_shard(
    spark: SparkSession, model_dir: str, vectors_uri: str, shard: int, scores_uri: str, top_n: int = 0,
    top_terms: int = 0,
) -> dict:
    """Score every vector against one shard's classes and write the shard's scores."""
    manifest = read_model_manifest(spark, model_dir)
    vectors_summary = read_output_summary(spark, vectors_uri, "the vectors")
    if vectors_summary["model"]["version"] != manifest["version"]:
        raise ModelError(
            f"the vectors at {vectors_uri} were made for model {vectors_summary['model']['version']}, "
            f"not {manifest['version']}"
        )
    model = load_model_shard(spark, model_dir, manifest, shard)
    memory = model_memory(model)
    broadcast = spark.sparkContext.broadcast(model)
    temp_uri = fs.temporary_sibling(scores_uri)
    try:
        shard_scores(spark.read.parquet(vectors_uri), broadcast, top_n, top_terms).write.parquet(temp_uri)
    finally:
        broadcast.destroy()
    documents = spark.read.parquet(temp_uri).count()
    if documents != vectors_summary["vectors"]["documents"]:
        raise AssertionError(
            f"shard {shard} scored {documents} documents of {vectors_summary['vectors']['documents']}"
        )
    summary = {
        "job": "nb_predict_shard",
        "shard": shard,
        "class_ids": model.class_ids.tolist(),
        "model": model_summary(model_dir, manifest),
        "vectors_write_id": vectors_summary["write_id"],
        "documents": documents,
        "top_n": top_n,
        "top_terms": top_terms,
        "memory": memory,
        "code_version": code_version(),
    }
    publish_output(spark, temp_uri, scores_uri, summary)
    return summary
