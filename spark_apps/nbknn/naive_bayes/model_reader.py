"""Reading a published Naive Bayes model for prediction: its manifest, its classes and, on the
driver, the compact scoring form of one shard (:func:`nbknn.naive_bayes.scoring.load_shard_model`).

Everything read is checked against the manifest, so a model that was not published completely,
or whose tables disagree with each other, fails before any document is scored.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from nbknn import contract
from nbknn.common import fs
from nbknn.common.driver_parquet import read_driver_table
from nbknn.common.errors import NotRetryableError
from nbknn.naive_bayes import schemas, scoring


class ModelError(NotRetryableError, ValueError):
    """The model directory is missing, unpublished or inconsistent."""


def read_model_manifest(spark: SparkSession, model_dir: str) -> dict:
    """The manifest of a published model, checked for what prediction relies on."""
    uri = contract.manifest_uri(model_dir)
    if not fs.exists(spark, uri):
        raise ModelError(f"no model manifest at {uri}: the model does not exist or was not published completely")
    manifest = fs.read_json(spark, uri)
    if manifest.get("kind") != "naive_bayes":
        raise ModelError(f"{uri} is not a Naive Bayes model manifest (kind={manifest.get('kind')!r})")
    if manifest.get("format_version") != contract.MANIFEST_FORMAT_VERSION:
        raise ModelError(
            f"model manifest format {manifest.get('format_version')} is not supported "
            f"(expected {contract.MANIFEST_FORMAT_VERSION}) at {uri}"
        )
    shards = manifest["shards"]
    if [s["shard"] for s in shards] != list(range(manifest["num_shards"])):
        raise ModelError(
            f"manifest at {uri} lists shards {[s['shard'] for s in shards]}, expected 0..{manifest['num_shards'] - 1}"
        )
    return manifest


def model_summary(model_dir: str, manifest: dict) -> dict:
    """The model part of every prediction summary: where, which version, which parameters."""
    return {"dir": model_dir, "version": manifest["version"], **manifest["model"]}


def read_classes(spark: SparkSession, model_dir: str, manifest: dict):
    """(label, doc_count, term_total, shard) of every class, in class id order, checked."""
    table = read_model_table(spark, contract.classes_uri(model_dir), schemas.CLASSES, schemas.CLASSES.names)
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
    return read_classes(spark, model_dir, manifest)[0]


def load_model_shard(
    spark: SparkSession, model_dir: str, manifest: dict, shard: int, include_term_base: bool = False
) -> scoring.ShardModel:
    """The compact scoring form of one shard, built on the driver from the model's counts.

    Only the shard's entries, the per-class vectors and (complement NB) the per-term totals are
    read. ``include_term_base=False`` leaves complement NB's per-document constant out of the
    broadcast model: it changes neither the winner nor the posteriors (see nbknn.naive_bayes.scoring).
    """
    num_shards = manifest["num_shards"]
    if not 0 <= shard < num_shards:
        raise ModelError(f"shard must be in [0, {num_shards}) for model {manifest['version']} (got {shard})")
    _, doc_count, term_total, shard_of = read_classes(spark, model_dir, manifest)
    class_ids = _shard_class_ids(shard_of, shard, manifest, model_dir)
    entries = _read_entries(spark, contract.term_counts_shard_uri(model_dir, shard),
                            manifest["shards"][shard]["entries"], f"shard {shard} of {model_dir}")
    return _scoring_form(spark, model_dir, manifest, class_ids, doc_count, term_total, entries, include_term_base)


def load_whole_model(spark: SparkSession, model_dir: str, manifest: dict) -> tuple[list[str], scoring.ShardModel]:
    """(class labels, every class of the model as one shard's scoring form): the single-pass
    prediction path, which needs both from one read of classes/.

    Scores, winners and posteriors do not depend on how the classes are grouped into shards."""
    labels, doc_count, term_total, shard_of = read_classes(spark, model_dir, manifest)
    for shard in range(manifest["num_shards"]):
        _shard_class_ids(shard_of, shard, manifest, model_dir)
    expected = sum(entry["entries"] for entry in manifest["shards"])
    entries = _read_entries(spark, contract.term_counts_uri(model_dir), expected, model_dir)
    class_ids = np.arange(len(doc_count))
    return labels, _scoring_form(spark, model_dir, manifest, class_ids, doc_count, term_total, entries, False)


def _scoring_form(spark, model_dir, manifest, class_ids, doc_count, term_total, entries, include_term_base):
    """scoring.load_shard_model over the given classes and (class_id, term_id, count) entries."""
    vocabulary_size = manifest["counts"]["vocabulary_size"]
    model = manifest["model"]
    term_total_all = None
    if model["type"] == "complement":
        term_total_all = _read_term_total_all(spark, model_dir, vocabulary_size)
    return scoring.load_shard_model(
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


def read_model_table(spark: SparkSession, uri: str, schema: StructType, columns: list[str]) -> pa.Table:
    """``columns`` of one of the model's tables as an Arrow table: read by the driver when the
    table is small (:mod:`nbknn.common.driver_parquet`), else collected by Spark."""
    table = read_driver_table(spark, uri, columns)
    if table is None:
        table = spark.read.schema(schema).parquet(uri).select(*columns).toArrow()
    return table


def read_vocabulary_table(spark: SparkSession, model_dir: str, columns: list[str]) -> pa.Table:
    return read_model_table(spark, contract.vocabulary_uri(model_dir), schemas.VOCABULARY, columns)


def read_vocabulary(spark: SparkSession, model_dir: str):
    """The model's vocabulary as a Spark frame (term_id, term); nothing is collected."""
    return spark.read.schema(schemas.VOCABULARY).parquet(contract.vocabulary_uri(model_dir)).select("term_id", "term")


def _shard_class_ids(shard_of: np.ndarray, shard: int, manifest: dict, model_dir: str) -> np.ndarray:
    """The shard's class ids as classes/ assigns them, which must be the manifest's."""
    class_ids = np.flatnonzero(shard_of == shard)
    listed = manifest["shards"][shard]["class_ids"]
    if class_ids.tolist() != sorted(listed):
        raise ModelError(
            f"shard {shard} of {model_dir}: classes/ assigns classes {class_ids.tolist()[:20]}, "
            f"the manifest lists {sorted(listed)[:20]}"
        )
    return class_ids


def _read_entries(spark: SparkSession, uri: str, expected_entries: int, what: str):
    """(class_id, term_id, count) entries under ``uri`` as an Arrow table, as many as the manifest says."""
    entries = read_model_table(spark, uri, schemas.TERM_COUNTS, ["class_id", "term_id", "count"])
    if entries.num_rows != expected_entries:
        raise ModelError(f"{what} holds {entries.num_rows} entries, the manifest says {expected_entries}")
    return entries


def _read_term_total_all(spark: SparkSession, model_dir: str, vocabulary_size: int) -> np.ndarray:
    """(V,) every term's count over all classes, indexed by term id (complement NB only)."""
    vocabulary = read_vocabulary_table(spark, model_dir, ["term_id", "total_count"])
    term_total_all = np.zeros(vocabulary_size, dtype=np.float64)
    term_total_all[np.asarray(vocabulary.column("term_id"))] = np.asarray(vocabulary.column("total_count"))
    return term_total_all
