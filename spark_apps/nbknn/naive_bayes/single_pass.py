"""Prediction in one pass: read, validate, vectorise, score against the whole model, combine, publish.

For a model whose scoring form fits one broadcast (:func:`nbknn.contract.choose_prediction_path`)
the per-shard path's three applications (vectorize, one pass per shard, combine) and the two
intermediate outputs (vectors, scores) cost more than the work itself: every application starts
a JVM and plans its first query. Here the whole model is loaded as one shard, so each document's
answer comes out of its own row (no shuffle), and the predictions and report are the ones the
per-shard path publishes: the model's answers do not depend on how its classes are grouped.
With the vocabulary broadcast (the usual case), one Python call per Arrow batch counts the
documents' tokens and scores them: the term counts never go back to the JVM.

Same guarantees as the per-shard path: bad records go to the rejects with their reason, counts
reconcile (read = rejected + predicted), nothing is published when the reject fraction is
exceeded, and the predictions and the report are each published by one rename.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.inputs.documents import (
    InputSpec,
    accepted_documents,
    observe_read_totals,
    observed_blank_lines,
    observed_label_changes,
    read_documents,
    read_totals,
)
from nbknn.inputs.tokenizer import TokenizerConfig
from nbknn.naive_bayes.combine import SUMMARY_COLUMNS, combine_scores, confusion_and_counts, prediction_summary
from nbknn.naive_bayes.model_reader import load_whole_model, read_model_manifest, read_vocabulary
from nbknn.naive_bayes.outputs import publish_output
from nbknn.naive_bayes.quality_history import HistoryTarget
from nbknn.naive_bayes.report import publish_report
from nbknn.naive_bayes.scoring_checks import check_top_n
from nbknn.naive_bayes.shard_pass import model_memory, scored_batch, scores_schema, shard_scores
from nbknn.naive_bayes.vectorize import (
    DEFAULT_MAX_LOOKUP_TERMS,
    IN_ROW_LOOKUP,
    JOIN,
    document_vectors_joined,
    known_token_matrix,
    observe_vector_stats,
    quarantine,
    shipped_lookup,
    term_count_lists,
    tokenized_for_python,
    vector_stats,
    write_rejecting_duplicate_ids,
)


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
    history: HistoryTarget | None = None,
    top_terms: int = 0,
) -> dict:
    """Predict every accepted document of ``spec`` with the whole model; returns the run summary
    (an evaluated run adds its row to the quality ``history`` when given)."""
    manifest = read_model_manifest(spark, model_dir)
    tokenizer = TokenizerConfig.from_dict(manifest["tokenizer"])
    (labels, model), lookup, documents = _model_and_input(spark, spec, model_dir, manifest, max_lookup_terms)
    temp_uri = fs.temporary_sibling(predictions_uri)
    try:
        documents, written, small = write_rejecting_duplicate_ids(
            documents,
            partial(_write_predictions, spark, manifest=manifest, tokenizer=tokenizer, model_dir=model_dir,
                    model=model, labels=labels, tops=(top_n, top_terms), temp_uri=temp_uri, lookup=lookup),
            temp_uri, SUMMARY_COLUMNS)
        records, duplicates = quarantine(spark, spec, documents, written["totals"], rejects_uri, max_reject_fraction)
        confusion, counts = confusion_and_counts(spark, temp_uri, written["labelled"], records.to_dict(), small)
    except Exception:
        fs.delete(spark, temp_uri)
        raise
    summary = prediction_summary(
        "nb_predict", model_dir, manifest, top_n, counts, confusion, written["vector_stats"],
        rejects_uri if records.rejected else None, predictions_uri, [{"shard": "all", **model_memory(model)}],
        path=contract.SINGLE_PASS, path_reason=path_reason, vectoriser=written["vectoriser"],
        duplicate_ids=duplicates, top_terms=top_terms,
    )
    publish_output(spark, temp_uri, predictions_uri, summary)
    return publish_report(spark, summary, confusion, labels, manifest["version"], report_uri, history)


def _model_and_input(spark, spec, model_dir, manifest, max_lookup_terms):
    """((class labels, whole model), the vocabulary lookup to ship or None, the input's frame).

    The model's tables are read from two driver threads (by pyarrow when they are small, else by
    Spark jobs) while this one plans the input's read (about 0.2 s a run at x1, where such
    per-run costs are most of the time). A model that cannot be read is reported before an input
    that cannot, as when one came after the other."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="nb-model-read") as pool:
        model = pool.submit(load_whole_model, spark, model_dir, manifest)
        lookup = pool.submit(shipped_lookup, spark, manifest, model_dir, max_lookup_terms)
        try:
            documents = read_documents(spark, spec, labelled=False)
        finally:
            loaded = model.result(), lookup.result()
    return (*loaded, documents)


def _write_predictions(spark, documents, manifest, tokenizer, model_dir, model, labels, tops, temp_uri,
                       lookup) -> dict:
    """Vectorise, score and combine in the job that writes the predictions to ``temp_uri``;
    ``tops``: (top_n, top_terms); ``lookup``: the vocabulary to ship to the tasks, None to join it."""
    top_n, top_terms = tops
    observed, totals = observe_read_totals(documents)
    accepted = accepted_documents(observed)
    broadcast = spark.sparkContext.broadcast(model)
    vocabulary_broadcast = None
    try:
        if lookup is not None:
            vectoriser = IN_ROW_LOOKUP
            vocabulary_broadcast = spark.sparkContext.broadcast(lookup)
            scores, observation = observe_vector_stats(
                token_scores(tokenized_for_python(accepted, tokenizer), vocabulary_broadcast, broadcast, top_n, top_terms),
                known_tokens=F.col("known_tokens"))
        else:
            vectoriser = JOIN
            vectors, observation = observe_vector_stats(
                document_vectors_joined(accepted, read_vocabulary(spark, model_dir), tokenizer))
            scores = shard_scores(vectors, broadcast, top_n, top_terms)
        # One shard holding every class: each scores row already is its document's answer.
        vocabulary = read_vocabulary(spark, model_dir) if top_terms else None
        combine_scores(scores, labels, 1, top_n, top_terms, vocabulary).write.parquet(temp_uri)
    finally:
        broadcast.destroy()
        if vocabulary_broadcast is not None:
            vocabulary_broadcast.destroy()
    stats = vector_stats(observation)
    return {"totals": (*read_totals(totals), observed_blank_lines(totals), observed_label_changes(totals)),
            "vector_stats": stats,
            "vectoriser": vectoriser, "labelled": stats["labelled"] > 0}


def token_scores(tokens: DataFrame, lookup_broadcast, model_broadcast, top_n: int, top_terms: int) -> DataFrame:
    """The shard scores of documents given as token lists (doc_id, label, tokens), each Arrow batch
    counted against the broadcast vocabulary lookup and scored in the same Python call: the
    documents' term counts never go back to the JVM. Two more columns for the vector totals:
    ``tokens`` (all tokens of the document) and ``known_tokens`` (those in the vocabulary)."""
    check_top_n(top_n)
    check_top_n(top_terms)
    score = partial(_score_token_batches, lookup_broadcast=lookup_broadcast, model_broadcast=model_broadcast,
                    top_n=top_n, top_terms=top_terms)
    return tokens.mapInArrow(score, f"{scores_schema(top_terms)}, {TOKEN_TOTALS_SCHEMA}")


TOKEN_TOTALS_SCHEMA = "tokens int, known_tokens long"


def _score_token_batches(batches, lookup_broadcast, model_broadcast, top_n: int, top_terms: int):
    """mapInArrow body of :func:`token_scores`: each batch's known tokens are scored as they come
    (a term seen twice counts twice); only top terms need each row's terms summed and listed."""
    lookup, model = lookup_broadcast.value, model_broadcast.value
    for batch in batches:
        X, lengths = known_token_matrix(batch.column("tokens"), lookup)
        known_tokens = np.diff(X.indptr)
        term_lists = None
        if top_terms:
            X.sum_duplicates()
            term_lists = term_count_lists(X)
        scores = scored_batch(batch.column("doc_id"), batch.column("label"), X, model, top_n, term_lists)
        yield pa.RecordBatch.from_arrays(
            [*scores.columns, pa.array(lengths.astype(np.int32)), pa.array(known_tokens.astype(np.int64))],
            names=[*scores.schema.names, "tokens", "known_tokens"])
