"""Incremental training: the merge job folds the counts of new labelled documents into a published model.

Naive Bayes models are counts, and counts add up: a model of days 1..N plus the counts of day
N+1 is the model of days 1..N+1. The counts of the new data (the *delta*) are produced by the
ordinary training jobs over the new partition only; :func:`run_merge_model` adds them to the
base model and writes the merged model's tables and summaries into a staging directory.

Identifiers of the merged model:

* **Terms** keep their ids: a term of the base model has the same ``term_id`` in the merged
  model; terms the base never saw are appended after the base's last id (dense, in sorted term
  order among themselves). Term ids are therefore stable across model versions, but no longer
  in sorted term order once a model has been merged: compare vocabularies by term, not by id.
* **Classes** are renumbered in sorted label order whenever a new label appears (and keep their
  ids otherwise, since the base's ids are already in that order). Prediction breaks ties toward
  the lower class id, which equals scikit-learn's ``predict`` only when ids follow the sorted
  labels; classes are few, so rewriting their ids costs nothing, while appending them would make
  tie-breaking depend on the order in which labels first appeared. Class ids are therefore NOT
  stable across versions: map them by label.

Lineage: each model's manifest lists the input folders (partitions) whose documents its counts
hold, across all its ancestors. A folder is folded in at most once.
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.common.errors import ConfigError, NotRetryableError
from nbknn.common.provenance import code_version
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.model_report import write_model_report
from nbknn.naive_bayes.staging import forget_staged_manifest, summary_uri
from nbknn.naive_bayes.term_counts import term_counts_summary, write_sharded_tables
from nbknn.naive_bayes.vocabulary import number_terms


class AlreadyFoldedError(NotRetryableError):
    """The new data is already part of the base model: adding it again would double-count it."""


class IncompatibleBaseError(NotRetryableError):
    """The base model's counts cannot be added to the new ones (different tokeniser, pruned terms)."""


# --- lineage (pure) --------------------------------------------------------------------------


def folder_uri(uri: str) -> str:
    """A folder URI in one canonical spelling, so that lineage entries compare as strings.

    Spark reports local files as ``file:/a/b`` and percent-encodes some characters; the Airflow
    side writes ``file:///a/b``. Both become ``file:///a/b``; a trailing '/' is dropped.
    """
    parsed = urlparse(uri)
    path = unquote(parsed.path).rstrip("/") or "/"
    if not parsed.scheme:
        return path
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def check_not_folded(new_folders: list[str], folded: list[dict], base_version: str) -> None:
    """Refuse new data whose folders overlap a folder already folded into the base model.

    ``folded`` is the base manifest's ``lineage.partitions``: dicts with ``uri`` and the
    ``version`` (and ``run_id``) that folded it. A folder overlaps when it is the same, lies
    inside, or contains the other.
    """
    for new in sorted(folder_uri(f) for f in new_folders):
        for entry in folded:
            old = folder_uri(entry["uri"])
            if _contains(old, new) or _contains(new, old):
                raise AlreadyFoldedError(
                    f"the input folder {new} is already part of model {base_version}: {old} was folded "
                    f"in by model version {entry.get('version')} (run {entry.get('run_id')}); adding it "
                    "again would count its documents twice"
                )


def check_compatible(base_manifest: dict, tokenizer: dict, min_term_count: int) -> None:
    """The base's counts and the new counts must come from the same tokeniser, unpruned."""
    if not contract.same_tokenizer(base_manifest["tokenizer"], tokenizer):
        raise IncompatibleBaseError(
            f"base model {base_manifest['version']} was tokenised with {base_manifest['tokenizer']}, "
            f"the new data with {tokenizer}: counts of different tokens cannot be added"
        )
    for name, value in (("base model", base_manifest.get("min_term_count", 1)), ("new data", min_term_count)):
        if value != 1:
            raise IncompatibleBaseError(
                f"incremental training needs min_term_count=1 (the {name} has {value}): the counts of "
                "pruned terms are lost, so a sum of pruned models differs from a model of the union"
            )


def merged_class_ids(base_labels: dict[str, int], delta_labels: dict[str, int]) -> dict[str, int]:
    """The merged model's class id of every label: its rank in sorted label order.

    Args:
        base_labels, delta_labels: ``{label: class_id}`` of the base and of the new data.

    Returns:
        ``{label: class_id}`` over the union of the labels. The base's ids are unchanged unless a
        new label sorts before some of its labels.
    """
    return {label: class_id for class_id, label in enumerate(sorted(set(base_labels) | set(delta_labels)))}


def merged_priors(
    base: list[tuple[int, str, int]], delta: list[tuple[int, str, int]]
) -> tuple[list[tuple[int, str, int]], dict[int, int], dict[int, int]]:
    """Add document counts per label.

    Args:
        base, delta: (class_id, label, doc_count) rows of the base model and of the new data.

    Returns:
        (priors, base_remap, delta_remap): merged (class_id, label, doc_count) rows in class id
        order, and the old -> new class id map of each side.
    """
    ids = merged_class_ids({l: c for c, l, _ in base}, {l: c for c, l, _ in delta})
    totals = {label: 0 for label in ids}
    for _, label, doc_count in (*base, *delta):
        totals[label] += doc_count
    priors = [(class_id, label, totals[label]) for label, class_id in sorted(ids.items(), key=lambda item: item[1])]
    return priors, {c: ids[l] for c, l, _ in base}, {c: ids[l] for c, l, _ in delta}


# --- transforms ------------------------------------------------------------------------------


def merge_vocabulary(spark: SparkSession, base: DataFrame, delta: DataFrame, base_size: int, scratch_uri: str) -> DataFrame:
    """(term_id, term, total_count, doc_freq) of the merged model.

    Base terms keep their ids; totals and document frequencies add up (the documents of the
    base and of the new data are distinct). New terms get ids ``base_size, base_size + 1, ...``
    in sorted term order.
    """
    joined = base.select("term_id", "term", "total_count", "doc_freq").join(
        delta.select("term", F.col("total_count").alias("new_total"), F.col("doc_freq").alias("new_doc_freq")),
        "term",
        "full_outer",
    )
    old = joined.where(F.col("term_id").isNotNull()).select(
        "term_id",
        "term",
        (F.col("total_count") + F.coalesce("new_total", F.lit(0))).cast("long").alias("total_count"),
        (F.col("doc_freq") + F.coalesce("new_doc_freq", F.lit(0))).cast("long").alias("doc_freq"),
    )
    new_terms = joined.where(F.col("term_id").isNull()).select(
        "term", F.col("new_total").alias("total_count"), F.col("new_doc_freq").alias("doc_freq")
    )
    appended = number_terms(spark, new_terms, scratch_uri).select(
        (F.col("term_id") + F.lit(base_size)).cast("int").alias("term_id"), "term", "total_count", "doc_freq"
    )
    return old.unionByName(appended)


def remap_classes(entries: DataFrame, spark: SparkSession, remap: dict[int, int]) -> DataFrame:
    """(class_id, term_id, count) with class ids replaced through ``remap`` (small: broadcast)."""
    mapping = spark.createDataFrame(sorted(remap.items()), "class_id int, new_class_id int")
    return entries.join(F.broadcast(mapping), "class_id").select(
        F.col("new_class_id").alias("class_id"), "term_id", "count"
    )


def delta_entries_in_merged_ids(delta_entries: DataFrame, delta_vocabulary: DataFrame, merged_vocabulary: DataFrame) -> DataFrame:
    """The new data's (class_id, term_id, count) with term ids translated through the term strings."""
    return (
        delta_entries.join(delta_vocabulary.select("term_id", "term"), "term_id")
        .join(merged_vocabulary.select("term", F.col("term_id").alias("merged_term_id")), "term")
        .select("class_id", F.col("merged_term_id").alias("term_id"), "count")
    )


def add_entries(base_entries: DataFrame, delta_entries: DataFrame) -> DataFrame:
    """dict2 of the merged model: counts of equal (class_id, term_id) pairs added."""
    return (
        base_entries.unionByName(delta_entries)
        .groupBy("class_id", "term_id")
        .agg(F.sum("count").cast("long").alias("count"))
    )


# --- the job ---------------------------------------------------------------------------------


def run_merge_model(
    spark: SparkSession,
    base_dir: str,
    delta_dir: str,
    model_dir: str,
    num_shards: int | None = None,
    max_entries_per_shard: int | None = None,
    report_alpha: float | None = None,
) -> dict:
    """Add the counts of ``delta_dir`` (built by the class prior and term counts jobs over new
    data only) to the published model at ``base_dir``; write the merged model's tables and
    summaries to ``model_dir``.

    Shards are always planned afresh from the merged entries (the tables are rewritten anyway, and
    so the layout equals a full run's over the same data). Refuses (not retryable) a delta whose
    folders the base already holds, or whose tokeniser differs from the base's. With
    ``report_alpha``, also writes the merged model's report/ (each class's top terms at that alpha).
    """
    if model_dir.rstrip("/") in (base_dir.rstrip("/"), delta_dir.rstrip("/")):
        raise ConfigError(f"the merged model must go to a directory of its own (got {model_dir})")
    forget_staged_manifest(spark, model_dir)
    base_manifest = fs.read_json(spark, contract.manifest_uri(base_dir))
    delta_prior = fs.read_json(spark, summary_uri(delta_dir, "class_prior"))
    delta_terms = fs.read_json(spark, summary_uri(delta_dir, "term_counts"))
    check_compatible(base_manifest, delta_terms["tokenizer"], delta_terms["min_term_count"])
    base_partitions = (base_manifest.get("lineage") or {}).get("partitions", [])
    check_not_folded(delta_prior["partitions"], base_partitions, base_manifest["version"])

    base_classes = read_base_classes(spark, base_dir)
    priors, base_remap, delta_remap = merged_priors(base_classes, read_classes(spark, delta_dir))
    base_size = base_manifest["counts"]["vocabulary_size"]
    base_vocabulary = read_base_vocabulary(spark, base_dir, base_size)
    delta_vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(delta_dir))
    vocabulary = write_merged_vocabulary(spark, base_vocabulary, delta_vocabulary, base_size, model_dir)
    vocabulary_size = vocabulary.count()
    entries = write_merged_entries(
        spark, base_dir, delta_dir, model_dir, base_remap, delta_remap, delta_vocabulary, vocabulary
    )
    stats, plan = write_sharded_tables(spark, model_dir, priors, entries, num_shards, max_entries_per_shard)

    prior_summary = {**delta_prior, "classes": len(priors)}
    terms_summary = term_counts_summary(
        delta_terms["input"], delta_terms["tokenizer"], 1, vocabulary_size, 0, priors, stats, plan
    )
    merge_summary = merge_job_summary(
        base_manifest["version"], base_partitions, delta_terms, base_classes, priors, vocabulary_size - base_size
    )
    if report_alpha is not None:
        # The merged model's report: its top terms are those of the merged counts.
        terms_summary["report"] = write_model_report(spark, model_dir, report_alpha)
    fs.write_json_atomic(spark, summary_uri(model_dir, "class_prior"), prior_summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, "term_counts"), terms_summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, "merge"), merge_summary)
    return merge_summary


def read_classes(spark: SparkSession, model_dir: str) -> list[tuple[int, str, int]]:
    """(class_id, label, doc_count) of a model's classes table, in class id order."""
    frame = spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(model_dir))
    return sorted((row["class_id"], row["label"], row["doc_count"]) for row in frame.collect())


def read_base_classes(spark: SparkSession, base_dir: str) -> list[tuple[int, str, int]]:
    """:func:`read_classes` of the base model, whose class ids must follow the sorted labels."""
    base_classes = read_classes(spark, base_dir)
    if [label for _, label, _ in base_classes] != sorted(label for _, label, _ in base_classes):
        raise ConfigError(f"class ids of base model {base_dir} are not in sorted label order")
    return base_classes


def read_base_vocabulary(spark: SparkSession, base_dir: str, base_size: int) -> DataFrame:
    """The base model's vocabulary, checked to hold the dense term ids 0..base_size-1 (new terms
    are appended after them)."""
    base_vocabulary = spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(base_dir))
    stored = base_vocabulary.agg(F.count(F.lit(1)).alias("n"), F.max("term_id").alias("max_id")).first()
    if stored["n"] != base_size or (stored["max_id"] if stored["max_id"] is not None else -1) != base_size - 1:
        raise ConfigError(
            f"vocabulary of base model {base_dir} must hold dense term ids 0..{base_size - 1} "
            f"(got {stored['n']} terms, largest id {stored['max_id']})"
        )
    return base_vocabulary


def write_merged_vocabulary(
    spark: SparkSession, base_vocabulary: DataFrame, delta_vocabulary: DataFrame, base_size: int, model_dir: str
) -> DataFrame:
    """Write the merged model's vocabulary/ (:func:`merge_vocabulary`); returns it as read back."""
    vocabulary_uri = contract.vocabulary_uri(model_dir)
    merge_vocabulary(
        spark, base_vocabulary, delta_vocabulary, base_size, contract.work_uri(model_dir, "new_terms_sorted")
    ).write.mode("overwrite").parquet(vocabulary_uri)
    return spark.read.schema(schemas.VOCABULARY).parquet(vocabulary_uri)


def read_entries(spark: SparkSession, model_dir: str) -> DataFrame:
    """dict2 of a model, (class_id, term_id, count), over all its shards."""
    return spark.read.parquet(contract.term_counts_uri(model_dir)).select("class_id", "term_id", "count")


def write_merged_entries(
    spark: SparkSession,
    base_dir: str,
    delta_dir: str,
    model_dir: str,
    base_remap: dict[int, int],
    delta_remap: dict[int, int],
    delta_vocabulary: DataFrame,
    vocabulary: DataFrame,
) -> DataFrame:
    """dict2 of the merged model in its class and term ids, written to the scratch space and read
    back: materialised once, since the shard statistics and the sharded write both read it."""
    entries = add_entries(
        remap_classes(read_entries(spark, base_dir), spark, base_remap),
        remap_classes(
            delta_entries_in_merged_ids(read_entries(spark, delta_dir), delta_vocabulary, vocabulary),
            spark,
            delta_remap,
        ),
    )
    merged_uri = contract.work_uri(model_dir, "merged_entries")
    entries.write.mode("overwrite").parquet(merged_uri)
    return spark.read.schema(schemas.TERM_COUNTS).parquet(merged_uri)


def merge_job_summary(
    base_version: str,
    base_partitions: list[dict],
    delta_terms: dict,
    base_classes: list[tuple[int, str, int]],
    priors: list[tuple[int, str, int]],
    new_terms: int,
) -> dict:
    """The merge job's summary: the base model (the parent in the manifest's lineage) and what
    the new data added to it."""
    return {
        "job": "merge",
        "parent_version": base_version,
        "parent_partitions": base_partitions,
        "added": {
            "documents": delta_terms["documents"],
            "tokens": delta_terms["tokens"],
            "new_classes": sorted(set(label for _, label, _ in priors) - {l for _, l, _ in base_classes}),
            "new_terms": new_terms,
        },
        "code_version": code_version(),
    }
