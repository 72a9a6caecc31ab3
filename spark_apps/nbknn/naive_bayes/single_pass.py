"""Prediction in one pass: read, validate, vectorise, score against the whole model, combine, publish.

For a model whose scoring form fits one broadcast (:func:`nbknn.contract.choose_prediction_path`)
the per-shard path's three applications (vectorize, one pass per shard, combine) and the two
intermediate outputs (vectors, scores) cost more than the work itself: every application starts
a JVM and plans its first query. Here the whole model is loaded as one shard, so each document's
answer comes out of its own row, and the predictions and report are the ones the per-shard path
publishes: the model's answers do not depend on how its classes are grouped.

One job writes the predictions. Its Python step receives each Arrow batch of token lists (the
JVM tokenises), counts the known terms and scores them in the same call
(:func:`score_token_batches`): the vectors are never materialised nor sent back to the JVM. The
duplicate-id check runs after scoring, over the small per-document results rather than over
whole records with their texts; every copy of a shared id is dropped there and counted.

Same guarantees as the per-shard path: bad records go to the rejects with their reason, counts
reconcile (read = rejected + predicted), nothing is published when the reject fraction is
exceeded, and the predictions and the report are each published by one rename.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.inputs.documents import (
    InputSpec,
    accepted_documents,
    observe_read_totals,
    observed_blank_lines,
    read_documents,
    read_totals,
)
from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column
from nbknn.naive_bayes import scoring
from nbknn.naive_bayes.combine import combine_scores, confusion_and_counts, prediction_summary
from nbknn.naive_bayes.model_reader import load_whole_model, read_classes, read_model_manifest
from nbknn.naive_bayes.outputs import publish_output
from nbknn.naive_bayes.report import publish_report
from nbknn.naive_bayes.scoring_checks import check_top_n
from nbknn.naive_bayes.shard_pass import SCORES_SCHEMA, model_memory, score_arrow_batch, scores_batch
from nbknn.naive_bayes.vectorize import (
    DEFAULT_MAX_LOOKUP_TERMS,
    broadcast_lookup,
    fits_in_row_lookup,
    known_terms,
    quarantine,
    vector_frame,
    with_duplicate_ids_rejected,
)

#: The scores frame plus each document's vector totals (observed, then dropped before the write).
SCORED_SCHEMA = SCORES_SCHEMA + ", tokens long, known_tokens long, known_terms int"


def run_predict_single_pass(
    spark: SparkSession,
    spec: InputSpec,
    model_dir: str,
    predictions_uri: str,
    report_uri: str,
    rejects_uri: str,
    max_reject_fraction: float,
    top_n: int = 0,
    path_reason: str = "",
    max_lookup_terms: int = DEFAULT_MAX_LOOKUP_TERMS,
) -> dict:
    """Predict every accepted document of ``spec`` with the whole model; returns the run summary."""
    check_top_n(top_n)
    manifest = read_model_manifest(spark, model_dir)
    tokenizer = TokenizerConfig.from_dict(manifest["tokenizer"])
    classes = read_classes(spark, model_dir, manifest)
    labels = classes[0]
    model = load_whole_model(spark, model_dir, manifest, classes)
    documents = read_documents(spark, spec, labelled=False)
    temp_uri = fs.temporary_sibling(predictions_uri)
    try:
        written = _write_predictions(spark, documents, manifest, tokenizer, model_dir, model, labels, top_n,
                                     temp_uri, max_lookup_terms)
        # Read again only when some record was rejected, to quarantine it with its reason.
        records, duplicates = quarantine(spark, spec, with_duplicate_ids_rejected(documents), written["totals"],
                                         rejects_uri, max_reject_fraction)
        confusion, counts = confusion_and_counts(spark.read.parquet(temp_uri), written["labelled"],
                                                 records.to_dict())
    except Exception:
        fs.delete(spark, temp_uri)
        raise
    summary = prediction_summary(
        "nb_predict", model_dir, manifest, top_n, counts, confusion, written["vector_stats"],
        rejects_uri if records.rejected else None, predictions_uri, [{"shard": "all", **model_memory(model)}],
        path=contract.SINGLE_PASS, path_reason=path_reason, vectoriser=written["vectoriser"],
        duplicate_ids=duplicates,
    )
    publish_output(spark, temp_uri, predictions_uri, summary)
    return publish_report(spark, summary, confusion, labels, manifest["version"], report_uri)


def _write_predictions(spark, documents, manifest, tokenizer, model_dir, model, labels, top_n, temp_uri,
                       max_lookup_terms) -> dict:
    """Vectorise, score, drop duplicated ids and combine in the job that writes ``temp_uri``."""
    observed, totals = observe_read_totals(documents)
    broadcasts = [spark.sparkContext.broadcast(model)]
    try:
        vectoriser, scored, lookup = scored_documents(spark, accepted_documents(observed), manifest, tokenizer,
                                                      model_dir, broadcasts[0], top_n, max_lookup_terms)
        broadcasts += [lookup] if lookup is not None else []
        unique, observation = unique_ids_observed(scored)
        # One shard holding every class: each scores row already is its document's answer.
        combine_scores(unique, labels, 1, top_n).write.parquet(temp_uri)
    finally:
        for broadcast in broadcasts:
            broadcast.destroy()
    stats = {key: int(value or 0) for key, value in observation.get.items()}
    duplicates = stats.pop("duplicates")
    read, accepted = read_totals(totals)
    return {"totals": (read, accepted - duplicates, observed_blank_lines(totals)), "vector_stats": stats,
            "vectoriser": vectoriser, "labelled": stats["labelled"] > 0}


def scored_documents(spark, accepted: DataFrame, manifest: dict, tokenizer: TokenizerConfig, model_dir: str,
                     model_broadcast, top_n: int, max_lookup_terms: int):
    """(vectoriser, lazy frame of SCORED_SCHEMA, the lookup's broadcast or None) of ``accepted``.

    With a vocabulary of at most ``max_lookup_terms`` terms, each batch of token lists is counted
    and scored in one Python call; a larger one is joined in Spark first (see
    :func:`nbknn.naive_bayes.vectorize.vector_frame`) and its vectors scored."""
    if fits_in_row_lookup(manifest, max_lookup_terms):
        lookup = broadcast_lookup(spark, model_dir)
        tokens = accepted.select("doc_id", "label", tokens_column(F.col("text"), tokenizer).alias("tokens"))
        body = partial(score_token_batches, lookup_broadcast=lookup, model_broadcast=model_broadcast, top_n=top_n)
        return "in_row_lookup", tokens.mapInArrow(body, SCORED_SCHEMA), lookup
    vectoriser, vectors, _ = vector_frame(spark, accepted, manifest, tokenizer, model_dir, max_lookup_terms)
    body = partial(_score_vector_batches, model_broadcast=model_broadcast, top_n=top_n)
    return vectoriser, vectors.mapInArrow(body, SCORED_SCHEMA), None


def score_token_batches(batches, lookup_broadcast, model_broadcast, top_n: int):
    """mapInArrow body: each Arrow batch of (doc_id, label, tokens) scored against the model."""
    lookup, model = lookup_broadcast.value, model_broadcast.value
    if lookup.vocabulary_size > model.vocabulary_size:
        raise ValueError(f"the vocabulary has {lookup.vocabulary_size} term ids, the model {model.vocabulary_size}")
    for batch in batches:
        known = known_terms(batch.column("tokens"), lookup)
        X = sp.csr_array((known.counts.astype(np.float64), known.term_ids, known.offsets),
                         shape=(batch.num_rows, model.vocabulary_size))
        scores = scores_batch(batch.column("doc_id"), batch.column("label"), scoring.shard_result(model, X, top_n))
        cumulative = np.concatenate([[0], np.cumsum(known.counts)])
        yield _with_vector_totals(scores, known.tokens, cumulative[known.offsets[1:]] - cumulative[known.offsets[:-1]],
                                  np.diff(known.offsets))


def _score_vector_batches(batches, model_broadcast, top_n: int):
    """mapInArrow body: each Arrow batch of vectors (the joined vocabulary's) scored against the model."""
    model = model_broadcast.value
    for batch in batches:
        scores = score_arrow_batch(batch, model, top_n)
        counts = batch.column("counts")
        known_tokens = np.asarray(pa.compute.list_value_length(counts), dtype=np.int64)
        offsets = np.asarray(counts.offsets, dtype=np.int64)
        values = np.concatenate([[0], np.cumsum(np.asarray(counts.values, dtype=np.int64)[offsets[0]:offsets[-1]])])
        rebased = offsets - offsets[0]
        yield _with_vector_totals(scores, np.asarray(batch.column("tokens"), dtype=np.int64),
                                  values[rebased[1:]] - values[rebased[:-1]], known_tokens)


def _with_vector_totals(scores: pa.RecordBatch, tokens, known_tokens, known_terms_per_row) -> pa.RecordBatch:
    """``scores`` with the columns SCORED_SCHEMA adds: tokens, known tokens and known terms per document."""
    columns = scores.columns + [pa.array(np.asarray(tokens, dtype=np.int64)),
                                pa.array(np.asarray(known_tokens, dtype=np.int64)),
                                pa.array(np.asarray(known_terms_per_row, dtype=np.int32))]
    return pa.RecordBatch.from_arrays(columns, names=scores.schema.names + ["tokens", "known_tokens", "known_terms"])


def unique_ids_observed(scored: DataFrame) -> tuple[DataFrame, Observation]:
    """The scored documents whose id no other accepted record shares, and an Observation of
    their totals (documents, labelled, without_known_term, tokens, known_tokens) and of the
    records dropped as ``duplicates`` (every copy of a shared id), read after the action.

    The window shuffles the per-document results (an id, a few numbers), not the texts. Every
    copy is dropped: answering for one of several records nobody can tell apart would be a guess
    (the rejects, written from the input, name them; see with_duplicate_ids_rejected)."""
    flagged = scored.withColumn("_copies", F.count(F.lit(1)).over(Window.partitionBy("doc_id")))
    unique = F.col("_copies") == 1
    observation = Observation("predicted")
    observed = flagged.observe(
        observation,
        F.count_if(~unique).alias("duplicates"),
        F.count_if(unique).alias("documents"),
        F.count_if(unique & F.col("label").isNotNull()).alias("labelled"),
        F.count_if(unique & (F.col("known_terms") == 0)).alias("without_known_term"),
        F.sum(F.when(unique, F.col("tokens"))).alias("tokens"),
        F.sum(F.when(unique, F.col("known_tokens"))).alias("known_tokens"),
    )
    return observed.where(unique).drop("_copies", "tokens", "known_tokens", "known_terms"), observation
