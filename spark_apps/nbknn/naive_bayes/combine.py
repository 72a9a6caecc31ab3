"""Combining every shard's scores into the predictions and the report: the last step of prediction.

``run_combine`` checks that every shard of the model scored the current vectors, picks each
document's best class over the shards (:func:`combine_scores`: the maximum over the shards, the
log-sum-exp merged from the shards' own, the top-n), publishes the predictions and then the report
(metrics when the input has labels, always the counts; the DAG's ``report`` task draws its
pictures and page). Its summary is a
:class:`nbknn.contract.PredictionSummary`.

Completeness. The vectors summary carries a random ``write_id``; each shard's summary records the
``write_id`` it scored, the model version, its class ids and its document count. The combiner
refuses to run unless every shard of the manifest has a summary that matches the current vectors
and the manifest; and in the data, a document not scored by exactly ``num_shards`` shards fails
the job (``combine_scores``).

Frame written:

    predictions  doc_id, class_id, label (predicted), probability[, top_n][, top_terms], true_label

``top_terms`` (optional, off by default): each document's terms that weighed most for its class
against the runner-up (:mod:`nbknn.naive_bayes.prediction_terms`).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from nbknn import contract
from nbknn.common import fs
from nbknn.common.provenance import code_version
from nbknn.contract import scores_shard_uri
from nbknn.naive_bayes.model_reader import class_labels, model_summary, read_model_manifest, read_vocabulary
from nbknn.naive_bayes.outputs import (
    IncompleteScores,
    publish_output,
    read_output_summary,
    small_output_columns,
    summary_uri,
)
from nbknn.naive_bayes.prediction_terms import top_term_ids, weighted_candidates, with_term_strings
from nbknn.naive_bayes.quality_history import HistoryTarget
from nbknn.naive_bayes.report import publish_report
from nbknn.naive_bayes.scoring_checks import check_top_n


def _log_sum_exp(values: Column, maximum: Column) -> Column:
    """log(sum(exp(values))) of an array column, shifted by its maximum (as scipy's logsumexp)."""
    shifted_sum = F.aggregate(values, F.lit(0.0), lambda acc, x: acc + F.exp(x - maximum))
    # All -inf (no class with a finite score): the shift would be nan; the sum is exp(-inf) = 0.
    return F.when(maximum == float("-inf"), F.lit(float("-inf"))).otherwise(maximum + F.log(shifted_sum))


def combine_scores(scores: DataFrame, labels: list[str], num_shards: int, top_n: int, top_terms: int = 0,
                   vocabulary: DataFrame | None = None) -> DataFrame:
    """Per document: the best class over all shards, its posterior, optional top-n and top terms.

    ``scores``: the union of every shard's scores frame. ``labels``: label of each class id
    (index = class id). The winner is the maximum of (score, -class id) over the shards, so ties
    go to the lower class id; its posterior is exp(best_score - log-sum-exp over all classes), the
    log-sum-exp merged from the shards' own. A document not scored by exactly ``num_shards``
    shards fails the job: its answer would silently ignore some classes. A one-shard model needs
    no merge: each scores row already is its document's answer (no shuffle). ``top_terms`` needs
    scores written with top terms and the model's ``vocabulary`` (term_id, term).
    """
    check_top_n(top_n)
    check_top_n(top_terms)
    if top_terms and vocabulary is None:
        raise ValueError("top_terms needs the model's vocabulary")
    per_document = (_single_shard(scores, top_n, top_terms) if num_shards == 1
                    else _merged_shards(scores, num_shards, top_n, top_terms))
    labels_array = F.lit(labels)
    columns = [
        "doc_id",
        F.col("class_id"),
        F.element_at(labels_array, F.col("class_id") + 1).alias("label"),
        F.col("probability"),
    ]
    if top_n:
        top = F.slice(F.array_sort("candidates"), 1, top_n)
        columns.append(F.transform(top, lambda c: _top_n_entry(c, labels_array)).alias("top_n"))
    if top_terms:
        columns.append("top_terms")
    columns.append("true_label")
    predictions = per_document.select(*columns)
    if top_terms:
        return with_term_strings(predictions, vocabulary)
    # Merged shards come out of a shuffle in no fixed order: sorted, a retried run writes the same
    # files. One shard's rows are not shuffled: they keep the input's order, the same on every
    # run, and skip a sort that took 6.5 % of the JVM's time in x20's prediction.
    return predictions if num_shards == 1 else predictions.sortWithinPartitions("doc_id")


def _top_n_entry(candidate: Column, labels_array: Column) -> Column:
    """One entry of the top-n list: class id, its label and its posterior."""
    return F.struct(
        candidate["class_id"].alias("class_id"),
        F.element_at(labels_array, candidate["class_id"] + 1).alias("label"),
        F.exp(-candidate["neg_score"] - F.col("log_evidence")).alias("probability"),
    )


def _candidates(classes: Column, scores: Column) -> Column:
    """A shard's top classes as structs that sort ascending by (-score, class id): descending
    score, ties to the lower class id."""
    return F.transform(
        F.arrays_zip(classes.alias("top_classes"), scores.alias("top_scores")),
        lambda t: F.struct((-t["top_scores"]).alias("neg_score"), t["top_classes"].alias("class_id")),
    )


def _single_shard(scores: DataFrame, top_n: int, top_terms: int) -> DataFrame:
    """combine_scores' per-document columns when the model has one shard."""
    columns = [
        "doc_id",
        F.col("best_class").alias("class_id"),
        F.exp(F.col("best_score") - F.col("log_sum_exp")).alias("probability"),
        F.col("log_sum_exp").alias("log_evidence"),
        F.col("label").alias("true_label"),
    ]
    if top_n:
        columns.append(_candidates(F.col("top_classes"), F.col("top_scores")).alias("candidates"))
    if top_terms:
        # The shard's candidates are already ranked best first.
        ranked = weighted_candidates(F.col("top_classes"), F.col("top_scores"), F.col("top_weights"))
        columns.append(top_term_ids(F.col("term_ids"), F.col("counts"), ranked, top_terms).alias("top_terms"))
    return scores.select(*columns)


def _merged_shards(scores: DataFrame, num_shards: int, top_n: int, top_terms: int) -> DataFrame:
    """combine_scores' per-document columns merged over the shards (one shuffle by doc_id)."""
    aggregates = [
        F.max(F.struct(F.col("best_score").alias("score"), (-F.col("best_class")).alias("neg_class"))).alias("best"),
        F.max("log_sum_exp").alias("lse_max"),
        F.collect_list("log_sum_exp").alias("lses"),
        F.count(F.lit(1)).alias("parts"),
        F.first("label", ignorenulls=True).alias("true_label"),
    ]
    if top_n:
        aggregates.append(
            F.flatten(F.collect_list(_candidates(F.col("top_classes"), F.col("top_scores")))).alias("candidates")
        )
    if top_terms:
        # The winner and the runner-up overall are the first two of every shard's two best.
        weighted = weighted_candidates(F.col("top_classes"), F.col("top_scores"), F.col("top_weights"))
        aggregates += [
            F.array_sort(F.flatten(F.collect_list(weighted))).alias("ranked"),
            F.first("term_ids").alias("term_ids"),
            F.first("counts").alias("counts"),
        ]
    grouped = scores.groupBy("doc_id").agg(*aggregates).withColumn(
        "log_evidence", _log_sum_exp(F.col("lses"), F.col("lse_max"))
    )
    complete = F.col("parts") == num_shards
    probability = F.when(complete, F.exp(F.col("best.score") - F.col("log_evidence"))).otherwise(
        F.raise_error(
            F.concat(
                F.lit("document "), F.col("doc_id"), F.lit(" was scored by "), F.col("parts").cast("string"),
                F.lit(f" shard(s), expected {num_shards}"),
            )
        )
    )
    columns = ["doc_id", (-F.col("best.neg_class")).cast("int").alias("class_id"), probability.alias("probability"),
               "log_evidence", "true_label"]
    if top_n:
        columns.append("candidates")
    if top_terms:
        columns.append(top_term_ids(F.col("term_ids"), F.col("counts"), F.col("ranked"), top_terms).alias("top_terms"))
    return grouped.select(*columns)


def check_scores_complete(
    spark: SparkSession, manifest: dict, vectors_summary: dict, scores_dir: str, top_n: int, top_terms: int = 0
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
        if top_terms and not summary.get("top_terms"):
            problems.append(f"shard {shard}: scored without the term weights top_terms needs")
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
    history: HistoryTarget | None = None,
    top_terms: int = 0,
) -> dict:
    """Combine the shard scores into predictions; write the report (and the run's row into the
    quality ``history`` when given and the input has labels); returns the run summary."""
    manifest = read_model_manifest(spark, model_dir)
    vectors_summary = read_output_summary(spark, vectors_uri, "the vectors")
    shard_summaries = check_scores_complete(spark, manifest, vectors_summary, scores_dir, top_n, top_terms)
    labels = class_labels(spark, model_dir, manifest)
    predictions = combine_scores(_all_scores(spark, manifest, scores_dir), labels, manifest["num_shards"], top_n,
                                 top_terms, read_vocabulary(spark, model_dir) if top_terms else None)
    # true_label stays in the schema (null when the input has no labels): the predictions' columns
    # do not depend on the data, nor on the prediction path.
    labelled = vectors_summary["vectors"]["labelled"] > 0

    temp_uri = fs.temporary_sibling(predictions_uri)
    predictions.write.parquet(temp_uri)
    confusion, counts = confusion_and_counts(spark, temp_uri, labelled, vectors_summary["records"])
    summary = prediction_summary(
        "nb_combine", model_dir, manifest, top_n, counts, confusion, vectors_summary["vectors"],
        vectors_summary["rejects_uri"], predictions_uri,
        [{"shard": s["shard"], **s["memory"]} for s in shard_summaries],
        path=contract.PER_SHARD, vectoriser=vectors_summary["vectoriser"],
        duplicate_ids=vectors_summary["duplicate_ids"], top_terms=top_terms,
    )
    publish_output(spark, temp_uri, predictions_uri, summary)
    return publish_report(spark, summary, confusion, labels, manifest["version"], report_uri, history)


def prediction_summary(job: str, model_dir: str, manifest: dict, top_n: int, counts: dict, confusion: list[tuple],
                       vectors: dict, rejects_uri: str | None, predictions_uri: str, shard_memory: list,
                       **path) -> dict:
    """The run summary either prediction path writes (contract.PredictionSummary, less its metrics);
    ``path``: how the run predicted (path, path_reason, vectoriser, duplicate_ids, top_terms)."""
    return {
        "job": job,
        "model": model_summary(model_dir, manifest),
        "num_shards": manifest["num_shards"],
        "top_n": top_n,
        "counts": counts,
        "vectors": vectors,
        "rejects_uri": rejects_uri,
        "predictions_uri": predictions_uri,
        "predicted_by_label": predicted_by_label(confusion),
        "shard_memory": shard_memory,
        "code_version": code_version(),
        **path,
    }


def _all_scores(spark: SparkSession, manifest: dict, scores_dir: str) -> DataFrame:
    """The union of every shard's scores, in shard order."""
    scores = None
    for entry in manifest["shards"]:
        frame = spark.read.parquet(scores_shard_uri(scores_dir, entry["shard"]))
        scores = frame if scores is None else scores.unionByName(frame)
    return scores


#: The predictions' columns their summary counts.
SUMMARY_COLUMNS = StructType([StructField(name, StringType()) for name in ("doc_id", "true_label", "label")])


def confusion_and_counts(spark: SparkSession, written_uri: str, labelled: bool, records: dict,
                         small=None) -> tuple[list[tuple], dict]:
    """The (true label, label, count) rows of the predictions written at ``written_uri`` and the
    run's reconciled counts. ``small``: the output's :data:`SUMMARY_COLUMNS` in Arrow, when the
    caller has read them already."""
    confusion = _confusion(spark, written_uri, labelled, small)
    return confusion, _reconciled_counts(records, confusion)


def _confusion(spark: SparkSession, written_uri: str, labelled: bool, small) -> list[tuple]:
    """(true label, predicted label, count) of the written predictions; true label None without
    labels. Counted on the driver when the output is small (as for the duplicate ids)."""
    columns = ["true_label", "label"] if labelled else ["label"]
    if small is None:
        small = small_output_columns(spark, written_uri, SUMMARY_COLUMNS)
    if small is not None:
        counted = small.group_by(columns).aggregate([([], "count_all")]).to_pylist()
        rows = [(*(row[column] for column in columns), row["count_all"]) for row in counted]
    else:
        written = spark.read.schema(SUMMARY_COLUMNS).parquet(written_uri)
        rows = [tuple(row) for row in written.groupBy(*columns).count().collect()]
    return rows if labelled else [(None, label, count) for label, count in rows]


def _reconciled_counts(records: dict, confusion: list[tuple]) -> dict:
    """The run's record counts; every accepted record must have been predicted."""
    predicted = sum(count for _, _, count in confusion)
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
    if "blank_lines" in records:  # neither read nor rejected: read + blank_lines is the line count
        counts["blank_lines"] = records["blank_lines"]
    if "labels_changed" in records:  # accepted true labels the label policy changed, by change
        counts["labels_changed"] = records["labels_changed"]
    return counts


def predicted_by_label(confusion) -> dict[str, int]:
    totals: dict[str, int] = {}
    for _, predicted, count in confusion:
        totals[predicted] = totals.get(predicted, 0) + count
    return dict(sorted(totals.items()))
