"""The three steps of Naive Bayes training, each the body of one Spark application.

1. ``run_class_prior``: read and validate the input, quarantine bad records, write dict1 priors.
2. ``run_term_counts``: tokenise, count (class, term) pairs, number the vocabulary, plan shards,
   write the model tables into the staging model directory.
   (Incremental runs count only the new partition this way, into a *delta* model directory.)
2b. ``run_merge_model`` (incremental runs): add the delta's counts to a published base model and
   write the merged tables into the staging model directory (see :mod:`nbknn.nb_merge`).
3. ``publish_model``: write the manifest, then move the staging directory into place and point
   ``LATEST`` at it, each by one atomic rename.

Each step writes only its own outputs and overwrites them on a retry, so a killed or retried step
ends with the same data as an undisturbed one.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from nbknn import fs, model_layout, schemas
from nbknn.documents import (
    InputError,
    InputSpec,
    accepted_documents,
    check_reject_fraction,
    read_counts_from_rows,
    read_documents,
    write_rejects,
)
from nbknn.errors import ConfigError
from nbknn.nb_merge import (
    add_entries,
    check_compatible,
    check_not_folded,
    delta_entries_in_merged_ids,
    folder_uri,
    merge_vocabulary,
    merged_priors,
    remap_classes,
)
from nbknn.nb_training import (
    class_priors,
    class_priors_frame,
    class_term_counts,
    class_term_stats,
    classes_table,
    counts_by_reason_label_and_folder,
    number_terms,
    numbered_vocabulary_table,
    term_count_entries,
    tokenized_documents,
    vocabulary_counts,
    with_shard,
)
from nbknn.provenance import code_version
from nbknn.sharding import imbalance, plan_shards
from nbknn.tokenizer import TokenizerConfig

MODEL_TYPES = ("multinomial", "complement")
#: Largest vocabulary (terms seen) that the term counts job numbers on the driver: the same bound
#: as the one under which prediction ships the vocabulary to its tasks.
DEFAULT_MAX_DRIVER_TERMS = 5_000_000


def class_priors_uri(model_dir: str) -> str:
    return model_layout.work_uri(model_dir, "class_priors")


def summary_uri(model_dir: str, job: str) -> str:
    return model_layout.work_uri(model_dir, f"summaries/{job}.json")


def forget_staged_manifest(spark: SparkSession, model_dir: str) -> None:
    """Delete a manifest left in a staging directory by a publish attempt that was stopped before
    its rename: the tables are being counted again, and publishing must describe the new ones."""
    fs.delete(spark, model_layout.manifest_uri(model_dir))


def run_class_prior(
    spark: SparkSession, spec: InputSpec, model_dir: str, rejects_uri: str, max_reject_fraction: float
) -> dict:
    """Validate the input and count documents per class; returns (and stores) the job summary."""
    forget_staged_manifest(spark, model_dir)
    documents = read_documents(spark, spec, labelled=True)
    rows = counts_by_reason_label_and_folder(documents).collect()
    counts = read_counts_from_rows((row["reject_reason"], row["count"]) for row in rows)
    # The folders the documents came from: the partitions this model's counts will hold.
    folders = sorted({folder_uri(row["folder"]) for row in rows if row["reject_reason"] is None})
    if counts.rejected:
        write_rejects(documents, rejects_uri)
    else:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
    check_reject_fraction(counts, max_reject_fraction, rejects_uri)
    if counts.accepted == 0:
        raise InputError(f"no record of {spec.uri} was accepted; see the rejects at {rejects_uri}")
    priors = class_priors([(row["label"], row["count"]) for row in rows if row["reject_reason"] is None])
    class_priors_frame(spark, priors).coalesce(1).write.mode("overwrite").parquet(class_priors_uri(model_dir))
    summary = {
        "job": "class_prior",
        "input": _input_summary(spec),
        "records": counts.to_dict(),
        "rejects_uri": rejects_uri if counts.rejected else None,
        "classes": len(priors),
        "partitions": folders,
        "code_version": code_version(),
    }
    fs.write_json_atomic(spark, summary_uri(model_dir, "class_prior"), summary)
    return summary


def run_term_counts(
    spark: SparkSession,
    spec: InputSpec,
    model_dir: str,
    tokenizer: TokenizerConfig,
    min_term_count: int = 1,
    num_shards: int | None = None,
    max_entries_per_shard: int | None = None,
    max_driver_terms: int = DEFAULT_MAX_DRIVER_TERMS,
) -> dict:
    """Count every (class, term) pair and write classes/, vocabulary/ and term_counts/shard=S/.

    Vocabularies of at most ``max_driver_terms`` terms are numbered on the driver, larger ones
    in Spark (same term ids either way)."""
    if min_term_count < 1:
        raise ConfigError(f"min_term_count must be >= 1 (got {min_term_count})")
    forget_staged_manifest(spark, model_dir)
    priors_frame = spark.read.schema(schemas.CLASS_PRIORS).parquet(class_priors_uri(model_dir))
    priors = sorted(tuple(row) for row in priors_frame.collect())
    accepted = accepted_documents(read_documents(spark, spec, labelled=True))

    # Materialised once: the vocabulary and dict2 are both built from it.
    class_terms_uri = model_layout.work_uri(model_dir, "class_terms")
    class_term_counts(tokenized_documents(accepted, tokenizer)).write.mode("overwrite").parquet(class_terms_uri)
    class_terms = spark.read.parquet(class_terms_uri)
    # One small job over the (label, term) table: the labels seen and, when every term is kept,
    # each class's entries and term total (then equal to dict2's, without joining it first).
    label_stats = {
        row["label"]: (row["entries"], row["term_total"])
        for row in class_terms.groupBy("label")
        .agg(F.count(F.lit(1)).alias("entries"), F.sum("count").alias("term_total"))
        .collect()
    }
    _check_labels_known(set(label_stats), priors)

    vocabulary_uri = model_layout.vocabulary_uri(model_dir)
    all_terms = vocabulary_counts(class_terms, 1)
    # A vocabulary that fits the driver is numbered there (one small collect and one write); a
    # larger one by the distributed range numbering (several jobs over the vocabulary).
    collected = all_terms.limit(max_driver_terms + 1).toArrow()
    if collected.num_rows <= max_driver_terms:
        numbered_table = numbered_vocabulary_table(collected, min_term_count)
        terms_seen, vocabulary_size = collected.num_rows, numbered_table.num_rows
        numbered = spark.createDataFrame(numbered_table, schemas.VOCABULARY).coalesce(1) if vocabulary_size else None
    else:
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
                model_layout.work_uri(model_dir, "vocabulary_sorted"),
            )
    if vocabulary_size == 0:
        raise InputError(
            f"no term of the accepted documents reaches min_term_count={min_term_count}: the model would be empty"
        )
    numbered.write.mode("overwrite").parquet(vocabulary_uri)
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(vocabulary_uri)

    entries = term_count_entries(class_terms, priors_frame, vocabulary)
    known_stats = None
    if min_term_count == 1:
        class_id_of = {label: class_id for class_id, label, _ in priors}
        known_stats = {class_id_of[label]: stats for label, stats in label_stats.items()}
    stats, plan = _write_sharded_tables(
        spark, model_dir, priors, entries, num_shards, max_entries_per_shard, known_stats
    )
    summary = {
        "job": "term_counts",
        "input": _input_summary(spec),
        "tokenizer": tokenizer.to_dict(),
        "min_term_count": min_term_count,
        "vocabulary_size": vocabulary_size,
        "terms_below_min_count": terms_seen - vocabulary_size,
        "entries": sum(entries_ for entries_, _ in stats.values()),
        "tokens": sum(total for _, total in stats.values()),
        "documents": sum(doc_count for _, _, doc_count in priors),
        "shards": plan.to_list(),
        "shard_imbalance": round(imbalance(plan), 6),
        "code_version": code_version(),
    }
    fs.write_json_atomic(spark, summary_uri(model_dir, "term_counts"), summary)
    return summary


def _write_sharded_tables(
    spark: SparkSession,
    model_dir: str,
    priors: list[tuple[int, str, int]],
    entries,
    num_shards: int | None,
    max_entries_per_shard: int | None,
    stats: dict[int, tuple[int, int]] | None = None,
):
    """Plan the shards from the entries per class; write term_counts/shard=S/ and classes/.

    ``stats``: (entries, term_total) per class id when the caller knows them already; else they
    are counted from ``entries``."""
    if stats is None:
        stats = {row["class_id"]: (row["entries"], row["term_total"]) for row in class_term_stats(entries).collect()}
    plan = plan_shards(
        {class_id: stats.get(class_id, (0, 0))[0] for class_id, _, _ in priors},
        num_shards=num_shards,
        max_entries_per_shard=max_entries_per_shard,
    )
    (
        with_shard(entries, spark, plan)
        .write.mode("overwrite")
        .partitionBy("shard")
        .parquet(model_layout.term_counts_uri(model_dir))
    )
    classes_table(spark, priors, stats, plan).coalesce(1).write.mode("overwrite").parquet(
        model_layout.classes_uri(model_dir)
    )
    return stats, plan


def run_merge_model(
    spark: SparkSession,
    base_dir: str,
    delta_dir: str,
    model_dir: str,
    num_shards: int | None = None,
    max_entries_per_shard: int | None = None,
) -> dict:
    """Add the counts of ``delta_dir`` (built by the two jobs above over new data only) to the
    published model at ``base_dir``; write the merged model's tables and summaries to ``model_dir``.

    Shards are always planned afresh from the merged entries (the tables are rewritten anyway, and
    so the layout equals a full run's over the same data). Refuses (not retryable) a delta whose
    folders the base already holds, or whose tokeniser differs from the base's.
    """
    if model_dir.rstrip("/") in (base_dir.rstrip("/"), delta_dir.rstrip("/")):
        raise ConfigError(f"the merged model must go to a directory of its own (got {model_dir})")
    forget_staged_manifest(spark, model_dir)
    base_manifest = fs.read_json(spark, model_layout.manifest_uri(base_dir))
    delta_prior = fs.read_json(spark, summary_uri(delta_dir, "class_prior"))
    delta_terms = fs.read_json(spark, summary_uri(delta_dir, "term_counts"))
    check_compatible(base_manifest, delta_terms["tokenizer"], delta_terms["min_term_count"])
    base_lineage = base_manifest.get("lineage") or {}
    check_not_folded(delta_prior["partitions"], base_lineage.get("partitions", []), base_manifest["version"])

    def classes_of(directory: str) -> list[tuple[int, str, int]]:
        frame = spark.read.schema(schemas.CLASSES).parquet(model_layout.classes_uri(directory))
        return sorted((row["class_id"], row["label"], row["doc_count"]) for row in frame.collect())

    base_classes = classes_of(base_dir)
    if [label for _, label, _ in base_classes] != sorted(label for _, label, _ in base_classes):
        raise ConfigError(f"class ids of base model {base_dir} are not in sorted label order")
    priors, base_remap, delta_remap = merged_priors(base_classes, classes_of(delta_dir))

    base_vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(model_layout.vocabulary_uri(base_dir))
    base_size = base_manifest["counts"]["vocabulary_size"]
    stored = base_vocabulary.agg(F.count(F.lit(1)).alias("n"), F.max("term_id").alias("max_id")).first()
    if stored["n"] != base_size or (stored["max_id"] if stored["max_id"] is not None else -1) != base_size - 1:
        raise ConfigError(
            f"vocabulary of base model {base_dir} must hold dense term ids 0..{base_size - 1} "
            f"(got {stored['n']} terms, largest id {stored['max_id']})"
        )
    delta_vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(model_layout.vocabulary_uri(delta_dir))
    vocabulary_uri = model_layout.vocabulary_uri(model_dir)
    merge_vocabulary(
        spark, base_vocabulary, delta_vocabulary, base_size, model_layout.work_uri(model_dir, "new_terms_sorted")
    ).write.mode("overwrite").parquet(vocabulary_uri)
    vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(vocabulary_uri)
    vocabulary_size = vocabulary.count()

    def entries_of(directory: str):
        return spark.read.parquet(model_layout.term_counts_uri(directory)).select("class_id", "term_id", "count")

    entries = add_entries(
        remap_classes(entries_of(base_dir), spark, base_remap),
        remap_classes(delta_entries_in_merged_ids(entries_of(delta_dir), delta_vocabulary, vocabulary), spark, delta_remap),
    )
    # Materialised once: shard statistics and the sharded write both read it.
    merged_uri = model_layout.work_uri(model_dir, "merged_entries")
    entries.write.mode("overwrite").parquet(merged_uri)
    entries = spark.read.schema(schemas.TERM_COUNTS).parquet(merged_uri)
    stats, plan = _write_sharded_tables(spark, model_dir, priors, entries, num_shards, max_entries_per_shard)

    prior_summary = {**delta_prior, "classes": len(priors)}
    terms_summary = {
        "job": "term_counts",
        "input": delta_terms["input"],
        "tokenizer": delta_terms["tokenizer"],
        "min_term_count": 1,
        "vocabulary_size": vocabulary_size,
        "terms_below_min_count": 0,
        "entries": sum(entries_ for entries_, _ in stats.values()),
        "tokens": sum(total for _, total in stats.values()),
        "documents": sum(doc_count for _, _, doc_count in priors),
        "shards": plan.to_list(),
        "shard_imbalance": round(imbalance(plan), 6),
        "code_version": code_version(),
    }
    merge_summary = {
        "job": "merge",
        "parent_version": base_manifest["version"],
        "parent_partitions": base_lineage.get("partitions", []),
        "added": {
            "documents": delta_terms["documents"],
            "tokens": delta_terms["tokens"],
            "new_classes": sorted(set(label for _, label, _ in priors) - {l for _, l, _ in base_classes}),
            "new_terms": vocabulary_size - base_size,
        },
        "code_version": code_version(),
    }
    fs.write_json_atomic(spark, summary_uri(model_dir, "class_prior"), prior_summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, "term_counts"), terms_summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, "merge"), merge_summary)
    return merge_summary


def publish_model(
    spark: SparkSession,
    staging_dir: str,
    version_dir: str,
    latest_uri: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
) -> dict:
    """Write the manifest, rename staging into place, point LATEST at the version; returns the manifest.

    A rerun after a kill at any point converges: a staging directory that is still there is
    (re)published; a version already in place with no staging left only needs LATEST.
    """
    validate_model_params(model_type, alpha)
    if fs.exists(spark, staging_dir):
        staged_manifest = model_layout.manifest_uri(staging_dir)
        if fs.exists(spark, staged_manifest):
            # An earlier attempt wrote the manifest and was stopped before the rename; it may
            # already have deleted the job summaries that the manifest is built from.
            manifest = fs.read_json(spark, staged_manifest)
        else:
            manifest = build_manifest(spark, staging_dir, version, model_type, alpha, fit_prior, lineage)
            fs.write_json_atomic(spark, staged_manifest, manifest)
        fs.delete(spark, model_layout.work_uri(staging_dir, ""))
        # A rerun of a cleared run that had published already swaps its new build in.
        fs.publish_dir(spark, staging_dir, version_dir)
    elif fs.exists(spark, model_layout.manifest_uri(version_dir)):
        manifest = fs.read_json(spark, model_layout.manifest_uri(version_dir))
    else:
        raise FileNotFoundError(f"nothing to publish: neither {staging_dir} nor {version_dir} exists")
    fs.write_text_atomic(spark, latest_uri, version + "\n")
    return manifest


def validate_model_params(model_type: str, alpha: float) -> None:
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model_type must be one of {MODEL_TYPES} (got {model_type!r})")
    if not alpha > 0:
        raise ConfigError(f"alpha must be > 0 (got {alpha})")


def build_manifest(
    spark: SparkSession,
    staging_dir: str,
    version: str,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    lineage: dict,
) -> dict:
    prior = fs.read_json(spark, summary_uri(staging_dir, "class_prior"))
    terms = fs.read_json(spark, summary_uri(staging_dir, "term_counts"))
    merge_uri = summary_uri(staging_dir, "merge")
    merge = fs.read_json(spark, merge_uri) if fs.exists(spark, merge_uri) else None
    return {
        "format_version": model_layout.MANIFEST_FORMAT_VERSION,
        "kind": "naive_bayes",
        "version": version,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {"type": model_type, "alpha": alpha, "fit_prior": fit_prior},
        "tokenizer": terms["tokenizer"],
        "input": prior["input"],
        "records": prior["records"],
        "rejects_uri": prior["rejects_uri"],
        "counts": {
            "documents": terms["documents"],
            "classes": prior["classes"],
            "vocabulary_size": terms["vocabulary_size"],
            "entries": terms["entries"],
            "tokens": terms["tokens"],
            "terms_below_min_count": terms["terms_below_min_count"],
        },
        "min_term_count": terms["min_term_count"],
        "num_shards": len(terms["shards"]),
        "shards": terms["shards"],
        "shard_imbalance": terms["shard_imbalance"],
        "tables": {
            "classes": "classes",
            "vocabulary": "vocabulary",
            "term_counts": "term_counts",
        },
        "lineage": lineage_of(lineage, prior, merge, version),
        "code_version": terms["code_version"],
    }


def lineage_of(run_lineage: dict, prior_summary: dict, merge_summary: dict | None, version: str) -> dict:
    """The manifest's lineage: the run's own record (from the plan) plus ``parent_version`` and
    ``partitions``, every input folder whose documents the model counts, across its ancestry,
    each with the version (and run) that folded it in."""
    lineage = dict(run_lineage)
    parent_partitions = merge_summary["parent_partitions"] if merge_summary else []
    lineage["parent_version"] = merge_summary["parent_version"] if merge_summary else None
    lineage["partitions"] = [
        *parent_partitions,
        *(
            {"uri": folder, "version": version, "run_id": run_lineage.get("run_id")}
            for folder in prior_summary.get("partitions", [])
        ),
    ]
    return lineage


def _check_labels_known(seen: set[str], priors: list[tuple[int, str, int]]) -> None:
    """Every label seen now must have been counted by the class prior job over the same input."""
    known = {label for _, label, _ in priors}
    unknown = sorted(seen - known)
    if unknown:
        raise InputError(
            f"labels {unknown[:5]} were not counted by the class prior job: the input changed "
            "between the two jobs; rerun the training from the start"
        )


def _input_summary(spec: InputSpec) -> dict:
    return {
        "uri": spec.uri,
        "format": spec.format,
        "columns": {"id": spec.id_column, "label": spec.label_column, "text": spec.text_column},
    }
