"""The three steps of Naive Bayes prediction, each the body of one Spark application.

1. ``run_vectorize``: read and validate the input (rejects, max_reject_fraction, duplicate ids),
   tokenise with the model's tokeniser, map terms to the model's term ids, write the vectors.
2. ``run_predict_shard`` (once per shard): load the shard's counts, build its compact scoring
   form on the driver, broadcast it, score every vector in Arrow batches, write the shard's scores.
3. ``run_combine``: check that every shard of the model scored the current vectors, pick each
   document's best class over the shards, write the predictions and the report (metrics + PNG
   when the input has labels; always the counts).

Publishing. Every output directory is written under a temporary sibling whose name starts with
'_' (skipped by Spark and Hadoop readers), completed with its ``_summary.json``, then renamed into
place (:func:`nbknn.fs.publish_dir`). A retry builds a fresh temporary directory and replaces its
own run's earlier output, so a reader sees a whole output or none, never a partial one.

Completeness. The vectors summary carries a random ``write_id``; each shard's summary records the
``write_id`` it scored, the model version, its class ids and its document count. The combiner
refuses to run unless every shard of the manifest has a summary that matches the current vectors
and the manifest; and in the data, a document not scored by exactly ``num_shards`` shards fails
the job (``combine_scores``).
"""

from __future__ import annotations

import uuid

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from nbknn import fs, model_layout, nb_scoring, schemas
from nbknn.documents import (
    InputError,
    InputSpec,
    ReadCounts,
    TooManyRejects,
    accepted_documents,
    check_reject_fraction,
    observe_read_totals,
    publish_rejects,
    published_rejects_by_reason,
    read_documents,
    read_totals,
    rejected_records,
)
from nbknn.errors import NotRetryableError
from nbknn.nb_metrics import classification_metrics, confusion_png, report_html
from nbknn.nb_prediction import (
    DEFAULT_MAX_LOOKUP_TERMS,
    DUPLICATE_ID,
    combine_scores,
    confusion_counts,
    document_vectors,
    document_vectors_joined,
    observe_vector_stats,
    shard_scores,
    vector_stats,
    vocabulary_lookup,
    with_duplicate_ids_rejected,
)
from nbknn.provenance import code_version
from nbknn.tokenizer import TokenizerConfig

SUMMARY_NAME = "_summary.json"
METRICS_NAME = "metrics.json"
CONFUSION_PNG_NAME = "confusion_matrix.png"
REPORT_HTML_NAME = "report.html"
REPORT_SUMMARY_NAME = "summary.json"
# How many duplicated ids a summary or an error message names.
EXAMPLES = 5


class ModelError(NotRetryableError, ValueError):
    """The model directory is missing, unpublished or inconsistent."""


class IncompleteScores(NotRetryableError):
    """Some shard of the model has not (or not completely, or not for these vectors) been scored.

    Retrying the combiner cannot help: the shard passes (or the whole run) must be rerun."""


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def summary_uri(output_uri: str) -> str:
    return _join(output_uri, SUMMARY_NAME)


def scores_shard_uri(scores_dir: str, shard: int) -> str:
    """Scores of one shard; the Airflow plan computes the same name (paths.nb_prediction_layout)."""
    return _join(scores_dir, f"shard={shard}")


# --- the model -------------------------------------------------------------------------------


def read_model_manifest(spark: SparkSession, model_dir: str) -> dict:
    """The manifest of a published model, checked for what prediction relies on."""
    uri = model_layout.manifest_uri(model_dir)
    if not fs.exists(spark, uri):
        raise ModelError(f"no model manifest at {uri}: the model does not exist or was not published completely")
    manifest = fs.read_json(spark, uri)
    if manifest.get("kind") != "naive_bayes":
        raise ModelError(f"{uri} is not a Naive Bayes model manifest (kind={manifest.get('kind')!r})")
    if manifest.get("format_version") != model_layout.MANIFEST_FORMAT_VERSION:
        raise ModelError(
            f"model manifest format {manifest.get('format_version')} is not supported "
            f"(expected {model_layout.MANIFEST_FORMAT_VERSION}) at {uri}"
        )
    shards = manifest["shards"]
    if [s["shard"] for s in shards] != list(range(manifest["num_shards"])):
        raise ModelError(
            f"manifest at {uri} lists shards {[s['shard'] for s in shards]}, expected 0..{manifest['num_shards'] - 1}"
        )
    return manifest


def _classes(spark: SparkSession, model_dir: str, manifest: dict):
    """(class_id, label, doc_count, term_total, shard) arrays in class id order, checked."""
    table = spark.read.schema(schemas.CLASSES).parquet(model_layout.classes_uri(model_dir)).toArrow()
    order = np.argsort(np.asarray(table.column("class_id")))
    class_ids = np.asarray(table.column("class_id"))[order]
    expected = manifest["counts"]["classes"]
    if not np.array_equal(class_ids, np.arange(expected)):
        raise ModelError(
            f"classes/ of {model_dir} must hold class ids 0..{expected - 1} (got {len(class_ids)} rows)"
        )
    labels = table.column("label").to_pylist()
    return (
        [labels[i] for i in order],
        np.asarray(table.column("doc_count"))[order],
        np.asarray(table.column("term_total"))[order],
        np.asarray(table.column("shard"))[order],
    )


def class_labels(spark: SparkSession, model_dir: str, manifest: dict) -> list[str]:
    return _classes(spark, model_dir, manifest)[0]


def load_model_shard(
    spark: SparkSession, model_dir: str, manifest: dict, shard: int, include_term_base: bool = False
) -> nb_scoring.ShardModel:
    """The compact scoring form of one shard, built on the driver from the model's counts.

    Only the shard's entries, the per-class vectors and (complement NB) the per-term totals are
    read. ``include_term_base=False`` leaves complement NB's per-document constant out of the
    broadcast model: it changes neither the winner nor the posteriors (see nb_scoring).
    """
    num_shards = manifest["num_shards"]
    if not 0 <= shard < num_shards:
        raise ModelError(f"shard must be in [0, {num_shards}) for model {manifest['version']} (got {shard})")
    _, doc_count, term_total, shard_of = _classes(spark, model_dir, manifest)
    class_ids = np.flatnonzero(shard_of == shard)
    listed = manifest["shards"][shard]["class_ids"]
    if class_ids.tolist() != sorted(listed):
        raise ModelError(
            f"shard {shard} of {model_dir}: classes/ assigns classes {class_ids.tolist()[:20]}, "
            f"the manifest lists {sorted(listed)[:20]}"
        )
    entries = (
        spark.read.schema(schemas.TERM_COUNTS)
        .parquet(model_layout.shard_uri(model_dir, shard))
        .toArrow()
    )
    expected_entries = manifest["shards"][shard]["entries"]
    if entries.num_rows != expected_entries:
        raise ModelError(
            f"shard {shard} of {model_dir} holds {entries.num_rows} entries, the manifest says {expected_entries}"
        )
    vocabulary_size = manifest["counts"]["vocabulary_size"]
    model = manifest["model"]
    term_total_all = None
    if model["type"] == "complement":
        vocabulary = (
            spark.read.schema(schemas.VOCABULARY)
            .parquet(model_layout.vocabulary_uri(model_dir))
            .select("term_id", "total_count")
            .toArrow()
        )
        term_total_all = np.zeros(vocabulary_size, dtype=np.float64)
        term_total_all[np.asarray(vocabulary.column("term_id"))] = np.asarray(vocabulary.column("total_count"))
    return nb_scoring.load_shard_model(
        class_ids=class_ids,
        doc_count_all=doc_count,
        term_total=term_total,
        entry_class=np.asarray(entries.column("class_id")),
        entry_term=np.asarray(entries.column("term_id")),
        entry_count=np.asarray(entries.column("count")),
        vocabulary_size=vocabulary_size,
        model_type=model["type"],
        alpha=float(model["alpha"]),
        fit_prior=bool(model["fit_prior"]),
        term_total_all=term_total_all,
        include_term_base=include_term_base,
    )


def model_memory(model: nb_scoring.ShardModel) -> dict:
    """The broadcast model's bytes, by what they scale with."""
    nbytes = nb_scoring.model_nbytes(model)
    entries = nb_scoring.entry_count(model)
    return {
        "entries": entries,
        "classes": model.n_classes,
        "bytes_entries": nbytes.entries,
        "bytes_per_class": nbytes.per_class,
        "bytes_per_term": nbytes.per_term,
        "bytes_total": nbytes.total,
        "bytes_per_entry": (nbytes.entries / entries) if entries else None,
    }


# --- publishing ------------------------------------------------------------------------------


def _publish(spark: SparkSession, temp_uri: str, target_uri: str, summary: dict) -> None:
    fs.write_json_atomic(spark, summary_uri(temp_uri), summary)
    fs.publish_dir(spark, temp_uri, target_uri)


def _read_summary(spark: SparkSession, output_uri: str, what: str) -> dict:
    uri = summary_uri(output_uri)
    if not fs.exists(spark, uri):
        raise IncompleteScores(f"{what} at {output_uri} is missing or incomplete (no {SUMMARY_NAME})")
    return fs.read_json(spark, uri)


def _model_summary(model_dir: str, manifest: dict) -> dict:
    return {"dir": model_dir, "version": manifest["version"], **manifest["model"]}


# --- 1. vectorise ----------------------------------------------------------------------------


def run_vectorize(
    spark: SparkSession,
    spec: InputSpec,
    model_dir: str,
    vectors_uri: str,
    rejects_uri: str,
    max_reject_fraction: float,
    max_lookup_terms: int = DEFAULT_MAX_LOOKUP_TERMS,
) -> dict:
    """Validate the input and write its term-count vectors over the model's vocabulary.

    One pass over clean input: the records are parsed, validated, checked for duplicate ids and
    vectorised in the job that writes the vectors, which also counts them (read, accepted). Only
    when some record was rejected is the input read again, to quarantine the rejects (then
    counted by reason from the quarantine); the vectors are published after the reject fraction
    has been checked, and deleted unpublished when it is exceeded.

    Vocabularies of at most ``max_lookup_terms`` terms are shipped to the tasks and looked up
    inside each row (no shuffle); larger ones are joined in Spark (see nb_prediction)."""
    manifest = read_model_manifest(spark, model_dir)
    tokenizer = TokenizerConfig.from_dict(manifest["tokenizer"])
    documents = with_duplicate_ids_rejected(read_documents(spark, spec, labelled=False))
    temp_uri = fs.temporary_sibling(vectors_uri)
    try:
        vectoriser, stats, totals = _write_vectors(spark, documents, manifest, tokenizer, model_dir, temp_uri,
                                                   max_lookup_terms)
        counts, duplicates = _quarantine(spark, spec, documents, totals, rejects_uri, max_reject_fraction)
        if stats["documents"] != counts.accepted:
            raise AssertionError(f"wrote {stats['documents']} vectors for {counts.accepted} accepted records")
    except Exception:
        fs.delete(spark, temp_uri)
        raise
    summary = {
        "job": "nb_vectorize",
        "write_id": uuid.uuid4().hex,
        "model": _model_summary(model_dir, manifest),
        "input": {"uri": spec.uri, "format": spec.format},
        "records": counts.to_dict(),
        "duplicate_ids": duplicates,
        "rejects_uri": rejects_uri if counts.rejected else None,
        "vectoriser": vectoriser,
        "vectors": stats,
        "code_version": code_version(),
    }
    _publish(spark, temp_uri, vectors_uri, summary)
    return summary


def _write_vectors(spark, documents, manifest, tokenizer, model_dir, temp_uri, max_lookup_terms):
    """Write the accepted records' vectors to ``temp_uri``: (vectoriser, vector stats, read totals)."""
    observed, totals = observe_read_totals(documents)
    accepted = accepted_documents(observed)
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(model_layout.vocabulary_uri(model_dir))
    broadcast = None
    if manifest["counts"]["vocabulary_size"] <= max_lookup_terms:
        # The vocabulary goes to the tasks once (broadcast): every document is counted in its row.
        vectoriser = "in_row_lookup"
        lookup = vocabulary_lookup(vocabulary.select("term_id", "term").toArrow())
        broadcast = spark.sparkContext.broadcast(lookup)
        vectors = document_vectors(accepted, broadcast, tokenizer)
    else:
        vectoriser = "join"
        vectors = document_vectors_joined(accepted, vocabulary, tokenizer)
    vectors, observation = observe_vector_stats(vectors)
    try:
        vectors.write.parquet(temp_uri)
    finally:
        if broadcast is not None:
            broadcast.destroy()
    return vectoriser, vector_stats(observation), read_totals(totals)


def _quarantine(spark, spec, documents, totals, rejects_uri, max_reject_fraction):
    """Publish the rejects (reading the input again only when there are any) and check their
    fraction: (ReadCounts, examples of duplicated ids)."""
    read, accepted = totals
    if read == accepted:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
        counts = ReadCounts(read=read, accepted=accepted, rejected_by_reason={})
        duplicates = []
    else:
        publish_rejects(rejected_records(documents), rejects_uri)
        # Counted from what was quarantined (small), not by reading the whole input once more.
        counts = ReadCounts(read=read, accepted=accepted,
                            rejected_by_reason=published_rejects_by_reason(spark, rejects_uri))
        if counts.rejected != read - accepted:
            # Retryable: a second attempt reads the input once more.
            raise RuntimeError(
                f"{spec.uri} changed while it was read: {read - accepted} of {read} records were rejected "
                f"when vectorised, {counts.rejected} were quarantined"
            )
        duplicates = _duplicate_examples(documents) if counts.rejected_by_reason.get(DUPLICATE_ID) else []
    try:
        check_reject_fraction(counts, max_reject_fraction, rejects_uri)
    except TooManyRejects as exc:
        if duplicates:
            raise TooManyRejects(f"{exc}; duplicated document ids include {duplicates}") from None
        raise
    if counts.accepted == 0:
        raise InputError(f"no record of {spec.uri} was accepted; see the rejects at {rejects_uri}")
    return counts, duplicates


def _duplicate_examples(documents) -> list[str]:
    """The first few duplicated ids, in order."""
    return [
        row["duplicate_of"]
        for row in documents.where(F.col("duplicate_of").isNotNull())
        .select("duplicate_of").distinct().orderBy("duplicate_of").limit(EXAMPLES).collect()
    ]


# --- 2. one shard's prediction pass ----------------------------------------------------------


def run_predict_shard(
    spark: SparkSession, model_dir: str, vectors_uri: str, shard: int, scores_uri: str, top_n: int = 0
) -> dict:
    """Score every vector against one shard's classes and write the shard's scores."""
    manifest = read_model_manifest(spark, model_dir)
    vectors_summary = _read_summary(spark, vectors_uri, "the vectors")
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
        shard_scores(spark.read.parquet(vectors_uri), broadcast, top_n).write.parquet(temp_uri)
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
        "model": _model_summary(model_dir, manifest),
        "vectors_write_id": vectors_summary["write_id"],
        "documents": documents,
        "top_n": top_n,
        "memory": memory,
        "code_version": code_version(),
    }
    _publish(spark, temp_uri, scores_uri, summary)
    return summary


# --- 3. combine and report -------------------------------------------------------------------


def check_scores_complete(
    spark: SparkSession, manifest: dict, vectors_summary: dict, scores_dir: str, top_n: int
) -> list[dict]:
    """Every shard of the model scored these vectors with this model (else IncompleteScores)."""
    problems, summaries = [], []
    for entry in manifest["shards"]:
        shard = entry["shard"]
        uri = summary_uri(scores_shard_uri(scores_dir, shard))
        if not fs.exists(spark, uri):
            problems.append(f"shard {shard}: no published scores")
            continue
        summary = fs.read_json(spark, uri)
        summaries.append(summary)
        if summary["model"]["version"] != manifest["version"]:
            problems.append(f"shard {shard}: scored with model {summary['model']['version']}")
        if summary["vectors_write_id"] != vectors_summary["write_id"]:
            problems.append(f"shard {shard}: scored an older version of the vectors")
        if summary["class_ids"] != sorted(entry["class_ids"]):
            problems.append(f"shard {shard}: scored classes {summary['class_ids'][:10]}, not the manifest's")
        if summary["documents"] != vectors_summary["vectors"]["documents"]:
            problems.append(
                f"shard {shard}: scored {summary['documents']} of {vectors_summary['vectors']['documents']} documents"
            )
        if summary["top_n"] < top_n:
            problems.append(f"shard {shard}: kept top {summary['top_n']} classes, {top_n} asked")
    if problems:
        raise IncompleteScores(
            f"the scores under {scores_dir} do not cover model {manifest['version']} "
            f"({manifest['num_shards']} shards) for the current vectors: " + "; ".join(problems)
        )
    return summaries


def run_combine(
    spark: SparkSession,
    model_dir: str,
    vectors_uri: str,
    scores_dir: str,
    predictions_uri: str,
    report_uri: str,
    top_n: int = 0,
) -> dict:
    """Combine the shard scores into predictions; write the report; returns the run summary."""
    manifest = read_model_manifest(spark, model_dir)
    vectors_summary = _read_summary(spark, vectors_uri, "the vectors")
    shard_summaries = check_scores_complete(spark, manifest, vectors_summary, scores_dir, top_n)
    labels = class_labels(spark, model_dir, manifest)
    scores = None
    for entry in manifest["shards"]:
        frame = spark.read.parquet(scores_shard_uri(scores_dir, entry["shard"]))
        scores = frame if scores is None else scores.unionByName(frame)
    predictions = combine_scores(scores, labels, manifest["num_shards"], top_n)
    labelled = vectors_summary["vectors"]["labelled"] > 0
    if not labelled:
        predictions = predictions.drop("true_label")

    temp_uri = fs.temporary_sibling(predictions_uri)
    predictions.write.parquet(temp_uri)
    written = spark.read.parquet(temp_uri)
    if labelled:
        confusion = [tuple(row) for row in confusion_counts(written).collect()]
    else:
        confusion = [(None, row["label"], row["count"]) for row in written.groupBy("label").count().collect()]
    predicted = sum(count for _, _, count in confusion)
    records = vectors_summary["records"]
    if predicted != records["accepted"]:
        raise AssertionError(f"predicted {predicted} documents, {records['accepted']} were accepted")

    counts = {
        "read": records["read"],
        "rejected": records["rejected"],
        "rejected_by_reason": records["rejected_by_reason"],
        "accepted": records["accepted"],
        "predicted": predicted,
        "reconciled": records["read"] == records["rejected"] + predicted,
    }
    summary = {
        "job": "nb_combine",
        "model": _model_summary(model_dir, manifest),
        "num_shards": manifest["num_shards"],
        "top_n": top_n,
        "counts": counts,
        "vectors": vectors_summary["vectors"],
        "rejects_uri": vectors_summary["rejects_uri"],
        "predictions_uri": predictions_uri,
        "predicted_by_label": _predicted_by_label(confusion),
        "shard_memory": [{"shard": s["shard"], **s["memory"]} for s in shard_summaries],
        "code_version": code_version(),
    }
    _publish(spark, temp_uri, predictions_uri, summary)

    metrics = None
    report_temp = fs.temporary_sibling(report_uri)
    fs.mkdirs(spark, report_temp)
    labelled_rows = [(t, p, n) for t, p, n in confusion if t is not None]
    if labelled_rows:
        metrics = classification_metrics(labelled_rows)
        metrics["unlabelled_documents"] = predicted - metrics["documents"]
        metrics["true_labels_unknown_to_model"] = sorted({t for t, _, _ in labelled_rows} - set(labels))
        metrics["model_version"] = manifest["version"]
        fs.write_json_atomic(spark, _join(report_temp, METRICS_NAME), metrics)
        title = f"nb_predict, model {manifest['version']}: accuracy {metrics['accuracy']:.4f}"
        fs.write_bytes(
            spark,
            _join(report_temp, CONFUSION_PNG_NAME),
            confusion_png(metrics["labels"], metrics["confusion_matrix"], title),
        )
        fs.write_bytes(
            spark,
            _join(report_temp, REPORT_HTML_NAME),
            report_html(metrics, CONFUSION_PNG_NAME, title).encode("utf-8"),
        )
    summary["metrics"] = (
        None
        if metrics is None
        else {
            "uri": _join(report_uri, METRICS_NAME),
            "picture_uri": _join(report_uri, CONFUSION_PNG_NAME),
            "html_uri": _join(report_uri, REPORT_HTML_NAME),
            "labelled_documents": metrics["documents"],
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
        }
    )
    fs.write_json_atomic(spark, _join(report_temp, REPORT_SUMMARY_NAME), summary)
    _publish(spark, report_temp, report_uri, summary)
    return summary


def _predicted_by_label(confusion) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _, predicted, count in confusion:
        totals[predicted] = totals.get(predicted, 0) + count
    return dict(sorted(totals.items()))
