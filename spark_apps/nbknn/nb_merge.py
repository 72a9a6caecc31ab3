"""Incremental training: fold the counts of new labelled documents into a published model.

Naive Bayes models are counts, and counts add up: a model of days 1..N plus the counts of day
N+1 is the model of days 1..N+1. The counts of the new data (the *delta*) are produced by the
ordinary training jobs over the new partition only; this module adds them to the base model.

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

from nbknn.errors import NotRetryableError
from nbknn.nb_training import number_terms


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
    if base_manifest["tokenizer"] != tokenizer:
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
