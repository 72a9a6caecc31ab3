"""The selection job: k-fold cross-validation of a grid of Naive Bayes models over the counts of the
model being trained, in Spark; the math is :mod:`nbknn.naive_bayes.selection`.

It runs after the term counts job (and after the merge job when incremental), on the same input,
against the staged model:

1. the accepted documents are tokenised in the JVM, each with its fold (:func:`fold_column`, the
   Spark spelling of :func:`nbknn.contract.fold_of`) and class; one pass through Python
   (:func:`vectorise_and_count_batches`) vectorises them against the staged vocabulary (the
   prediction's own vectoriser) and counts them, and both its outputs are cached;
2. the documents are counted per (fold, class) and their terms per (fold, class, term) in that
   pass: each task adds up its documents' counts in numpy (:class:`PartialFoldCounts`) and the
   driver sums the tasks' partial counts; for an incremental run the base model's stored per-fold
   counts are added (classes mapped by label; base term ids are the merged model's). The result is
   the model's ``fold_counts/``, published with it, and must add up to the staged model's counts
   exactly, every (class, term) (else the input changed between the jobs, or the base's fold
   counts are not its counts, and the run is refused);
3. an incremental run also reads the base model's documents again, from the input folders of its
   lineage, and checks that they are the ones its per-fold counts hold: exact scores need every
   document the model counts, the base's included;
4. the per-fold counts (the size of the model times at most the number of folds) go to the tasks
   once; each task scores the cached documents of its partition, fold by fold, with the model
   of the other folds at every grid point and emits additive tallies, summed on the driver (no
   shuffle: building a held-out model is cheap next to scoring its documents);
5. the table (every point's per-fold and mean scores) and the chosen point are written as the
   job's summary, from which publishing takes the model's parameters and the manifest's table
   and ``fold_counts`` record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial, reduce

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from nbknn import contract
from nbknn.common import fs
from nbknn.common.driver_parquet import write_driver_table
from nbknn.common.errors import ConfigError
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import InputError, InputSpec, accepted_documents, read_documents
from nbknn.inputs.tokenizer import TokenizerConfig, tokens_column
from nbknn.naive_bayes import schemas
from nbknn.naive_bayes.model_reader import read_vocabulary
from nbknn.naive_bayes.model_report import write_model_report
from nbknn.naive_bayes.selection import FoldCounts, FoldTally, GridPoint, grid_points, selection_table, tally_fold
from nbknn.naive_bayes.staging import forget_staged_manifest, input_summary, summary_uri
from nbknn.naive_bayes.vectorize import count_known_terms, vocabulary_lookup

TALLY_SCHEMA = (
    "fold int, point int, documents long, log_loss_sum double, tp array<long>, fp array<long>, fn array<long>"
)


def fold_column(doc_id: Column, folds: int) -> Column:
    """A document's fold in Spark: the same number as :func:`nbknn.contract.fold_of` in Python."""
    digits = F.substring(F.sha2(doc_id.cast("string"), 256), 1, contract.FOLD_HASH_HEX_DIGITS)
    return F.pmod(F.conv(digits, 16, 10).cast("long"), F.lit(folds)).cast("int")


def staged_model(spark: SparkSession, model_dir: str):
    """(tokenizer, classes [(class_id, label, doc_count, term_total)], vocabulary lookup) of the
    staged model."""
    terms_summary = fs.read_json(spark, summary_uri(model_dir, "term_counts"))
    tokenizer = TokenizerConfig.from_dict(terms_summary["tokenizer"])
    lookup = vocabulary_lookup(read_vocabulary(spark, model_dir).toArrow())
    classes = sorted(
        (row["class_id"], row["label"], row["doc_count"], row["term_total"])
        for row in spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(model_dir)).collect()
    )
    return tokenizer, classes, lookup


def labelled_tokens(
    spark: SparkSession, specs: list[InputSpec], tokenizer: TokenizerConfig, classes: list, folds: int
) -> DataFrame:
    """(source, fold, doc_id, class_id, tokens) of the accepted documents of every spec, tokenised
    in the JVM; ``source`` is the spec's position in ``specs``, ``class_id`` null for a label that
    is not one of the model's classes."""
    labels = spark.createDataFrame([(c, label) for c, label, _, _ in classes], "class_id int, label string")
    frames = []
    for source, spec in enumerate(specs):
        accepted = accepted_documents(read_documents(spark, spec, labelled=True))
        frames.append(
            accepted.join(F.broadcast(labels), "label", "left").select(
                F.lit(source).alias("source"), fold_column(F.col("doc_id"), folds).alias("fold"), "doc_id",
                "class_id", tokens_column(F.col("text"), tokenizer).alias("tokens"),
            )
        )
    return reduce(DataFrame.unionByName, frames)


UNKNOWN_LABEL = "a document's label is not one of the model's classes: the input changed " \
    "since the counting jobs; rerun the training from the start"

FOLD_DOCUMENTS_ARROW = pa.schema(
    [pa.field(f.name, pa.int32() if f.name != "doc_count" else pa.int64(), nullable=False)
     for f in schemas.FOLD_DOCUMENTS.fields]
)
FOLD_TERMS_ARROW = pa.schema(
    [pa.field(f.name, pa.int32() if f.name != "count" else pa.int64(), nullable=False) for f in schemas.FOLD_TERMS.fields]
)

#: ``term_id`` of the partial counts' rows that hold a (source, fold, class)'s documents or tokens.
DOCUMENTS, TOKENS = -1, -2
#: Largest folds x classes x vocabulary that a task or the driver adds up in one dense array of
#: counters (8 bytes each); larger models are added up by sorting their keys.
DENSE_KEYS = 1 << 23


def summed_by_key(keys: np.ndarray, weights: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys ascending, the sum of the weights of each), keys in [0, size)."""
    if keys.size == 0:
        return keys.astype(np.int64), np.zeros(0, dtype=np.int64)
    if size <= DENSE_KEYS:
        sums = np.bincount(keys, weights=weights, minlength=size)
        distinct = np.flatnonzero(sums)
        return distinct, sums[distinct].astype(np.int64)
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, np.bincount(inverse, weights=weights, minlength=distinct.size).astype(np.int64)


class PartialFoldCounts:
    """A task's counts of its documents, added up batch by batch (:meth:`add`) and emitted once
    (:meth:`rows`): per (fold, class, term) the tokens of the new documents (source 0), per
    (source, fold, class) the documents (term_id DOCUMENTS) and the known tokens (term_id
    TOKENS); documents whose label is not a class are counted in one row with class_id -1."""

    def __init__(self, folds: int, classes: int, vocabulary_size: int) -> None:
        self.folds, self.classes, self.vocabulary_size = folds, classes, vocabulary_size
        self.keys: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.unknown = 0
        self.totals: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, batch: pa.RecordBatch) -> None:
        """Count a batch of vectors: source, fold, class_id, term_ids, counts."""
        class_id = batch.column("class_id")
        self.unknown += class_id.null_count
        if class_id.null_count:
            batch = batch.filter(pc.is_valid(class_id))
        if batch.num_rows == 0:
            return
        folds, classes = self.folds, self.classes
        source = batch.column("source").to_numpy(zero_copy_only=False).astype(np.int64)
        fold = batch.column("fold").to_numpy(zero_copy_only=False).astype(np.int64)
        cls = batch.column("class_id").to_numpy(zero_copy_only=False).astype(np.int64)
        term_ids, counts = batch.column("term_ids"), batch.column("counts")
        lengths = pc.fill_null(pc.list_value_length(term_ids), 0).to_numpy(zero_copy_only=False)
        flat_terms = pc.list_flatten(term_ids).to_numpy(zero_copy_only=False).astype(np.int64)
        flat_counts = pc.list_flatten(counts).to_numpy(zero_copy_only=False).astype(np.float64)
        row = np.repeat(np.arange(batch.num_rows), lengths)
        tokens = np.bincount(row, weights=flat_counts, minlength=batch.num_rows)
        group = fold * classes + cls
        for src in np.unique(source):
            mine = source == src
            docs, toks = self.totals.setdefault(int(src), (np.zeros(folds * classes), np.zeros(folds * classes)))
            docs += np.bincount(group[mine], minlength=folds * classes)
            toks += np.bincount(group[mine], weights=tokens[mine], minlength=folds * classes)
        new = (source == 0)[row]
        self.keys.append(group[row[new]] * self.vocabulary_size + flat_terms[new])
        self.weights.append(flat_counts[new])

    def rows(self) -> pa.RecordBatch:
        """The task's counts as rows (source, fold, class_id, term_id, count)."""
        classes, vocabulary_size = self.classes, self.vocabulary_size
        entries, sums = summed_by_key(
            np.concatenate(self.keys) if self.keys else np.zeros(0, np.int64),
            np.concatenate(self.weights) if self.weights else np.zeros(0),
            self.folds * classes * vocabulary_size,
        )
        group, term = np.divmod(entries, vocabulary_size)
        parts = [(np.zeros(entries.size, np.int64), group // classes, group % classes, term, sums)]
        for src, (docs, toks) in sorted(self.totals.items()):
            (present,) = np.nonzero(docs)
            for marker, values in ((DOCUMENTS, docs), (TOKENS, toks)):
                parts.append((np.full(present.size, src), present // classes, present % classes,
                              np.full(present.size, marker), values[present].astype(np.int64)))
        if self.unknown:
            parts.append((np.zeros(1, np.int64), np.zeros(1, np.int64), np.full(1, -1), np.full(1, DOCUMENTS),
                          np.full(1, self.unknown)))
        columns = [np.concatenate(c) for c in zip(*parts)]
        return pa.RecordBatch.from_arrays(
            [pa.array(c.astype(np.int32)) for c in columns[:4]] + [pa.array(columns[4].astype(np.int64))],
            names=["source", "fold", "class_id", "term_id", "count"],
        )


#: ``kind`` of the rows of :func:`vectorise_and_count_batches`: a document's vector, or a
#: partial count (:class:`PartialFoldCounts`); the columns of the other kind are null.
VECTOR, PARTIAL_COUNT = 0, 1
VECTORS_AND_COUNTS_SCHEMA = (
    "kind int, source int, fold int, class_id int, term_ids array<int>, counts array<int>, term_id int, count long"
)


def vectorise_and_count_batches(batches, lookup_broadcast, folds: int, classes: int, vocabulary_size: int):
    """mapInArrow body: each batch of token lists vectorised against the vocabulary (emitted as
    VECTOR rows) and counted per fold; the task's partial counts follow as PARTIAL_COUNT rows.
    One pass of the documents through Python does both: counting the cached vectors again would
    ship them to Python a second time."""
    lookup = lookup_broadcast.value
    partial_counts = PartialFoldCounts(folds, classes, vocabulary_size)
    for batch in batches:
        term_ids, counts, _ = count_known_terms(batch.column("tokens"), lookup)
        vectors = pa.RecordBatch.from_arrays(
            [batch.column("source"), batch.column("fold"), batch.column("class_id"), term_ids, counts],
            names=["source", "fold", "class_id", "term_ids", "counts"],
        )
        partial_counts.add(vectors)
        yield _with_kind(vectors, VECTOR)
    yield _with_kind(partial_counts.rows(), PARTIAL_COUNT)


_KIND_COLUMNS = {
    "source": pa.int32(), "fold": pa.int32(), "class_id": pa.int32(), "term_ids": pa.list_(pa.int32()),
    "counts": pa.list_(pa.int32()), "term_id": pa.int32(), "count": pa.int64(),
}


def _with_kind(batch: pa.RecordBatch, kind: int) -> pa.RecordBatch:
    """``batch`` in VECTORS_AND_COUNTS_SCHEMA's columns: its own, the others null."""
    n = batch.num_rows
    columns = [pa.array(np.full(n, kind, dtype=np.int32))]
    for name, type_ in _KIND_COLUMNS.items():
        column = batch.column(name) if name in batch.schema.names else pa.nulls(n, type_)
        columns.append(column.cast(type_) if column.type != type_ else column)
    return pa.RecordBatch.from_arrays(columns, names=["kind", *_KIND_COLUMNS])


@dataclass
class CountedVectors:
    """What one pass over the documents counts (:func:`summed_partial_counts`)."""

    doc_counts: np.ndarray  # (F, C) documents of the new input (source 0)
    fold: np.ndarray  # the new input's (fold, class, term) entries, ascending, with their counts
    class_id: np.ndarray
    term_id: np.ndarray
    count: np.ndarray
    base_totals: dict[tuple[int, int], tuple[int, int]]  # {(fold, class): (documents, tokens)}, sources > 0


def vectors_and_counts(
    tokens: DataFrame, lookup_broadcast, folds: int, classes: int, vocabulary_size: int
) -> DataFrame:
    """The documents' vectors and the tasks' partial per-fold counts, in one pass through Python
    (:func:`vectorise_and_count_batches`); select a kind with :func:`of_kind`."""
    body = partial(vectorise_and_count_batches, lookup_broadcast=lookup_broadcast, folds=folds, classes=classes,
                   vocabulary_size=vocabulary_size)
    return tokens.select("source", "fold", "class_id", "tokens").mapInArrow(body, VECTORS_AND_COUNTS_SCHEMA)


def of_kind(rows: DataFrame, kind: int) -> DataFrame:
    """The VECTOR rows (source, fold, class_id, term_ids, counts) or the PARTIAL_COUNT rows
    (source, fold, class_id, term_id, count) of :func:`vectors_and_counts`."""
    if kind == VECTOR:
        return rows.where(F.col("kind") == VECTOR).select("source", "fold", "class_id", "term_ids", "counts")
    return rows.where(F.col("kind") == PARTIAL_COUNT).select("source", "fold", "class_id", "term_id", "count")


def summed_partial_counts(table: pa.Table, folds: int, classes: int, vocabulary_size: int) -> CountedVectors:
    """The driver's sum of the tasks' partial counts (:meth:`PartialFoldCounts.rows`)."""
    source, fold, class_id, term_id, counted = (
        table.column(name).to_numpy().astype(np.int64) for name in ("source", "fold", "class_id", "term_id", "count")
    )
    if (class_id < 0).any():
        raise InputError(UNKNOWN_LABEL)
    entry = term_id >= 0
    keys, sums = summed_by_key(
        (fold[entry] * classes + class_id[entry]) * vocabulary_size + term_id[entry],
        counted[entry].astype(np.float64),
        folds * classes * vocabulary_size,
    )
    group, terms = np.divmod(keys, vocabulary_size)
    doc_counts = np.zeros((folds, classes), dtype=np.int64)
    new_docs = (source == 0) & (term_id == DOCUMENTS)
    np.add.at(doc_counts, (fold[new_docs], class_id[new_docs]), counted[new_docs])
    base_totals: dict[tuple[int, int], list[int]] = {}
    # Only the few (source, fold, class) total rows of base documents: never the entries.
    (base_rows,) = np.nonzero(source > 0)
    for f, c, t, n in zip(fold[base_rows], class_id[base_rows], term_id[base_rows], counted[base_rows]):
        pair = base_totals.setdefault((int(f), int(c)), [0, 0])
        pair[0 if t == DOCUMENTS else 1] += int(n)
    return CountedVectors(
        doc_counts, group // classes, group % classes, terms, sums, {k: tuple(v) for k, v in base_totals.items()}
    )


def write_fold_counts(
    spark: SparkSession, model_dir: str, doc_counts: np.ndarray, entries: tuple, vocabulary_size: int
) -> FoldCounts:
    """Write the model's per-fold counts (its ``fold_counts/`` tables) from the driver's arrays
    ``entries`` (fold, class_id, term_id, count) and return them as :class:`FoldCounts`."""
    folds, classes = doc_counts.shape
    fold_of, class_of = np.nonzero(doc_counts)
    documents = pa.table(
        [pa.array(fold_of, pa.int32()), pa.array(class_of, pa.int32()), pa.array(doc_counts[fold_of, class_of], pa.int64())],
        schema=FOLD_DOCUMENTS_ARROW,
    )
    write_driver_table(spark, contract.fold_documents_uri(model_dir), documents)
    fold, class_id, term_id, count = entries
    terms = pa.table(
        [pa.array(fold, pa.int32()), pa.array(class_id, pa.int32()), pa.array(term_id, pa.int32()),
         pa.array(count, pa.int64())],
        schema=FOLD_TERMS_ARROW,
    )
    write_driver_table(spark, contract.fold_terms_uri(model_dir), terms)
    return FoldCounts.from_entries(doc_counts, fold, class_id, term_id, count, vocabulary_size)


@dataclass
class BaseFoldCounts:
    """The base model's stored per-fold counts, its class ids mapped to the staged (merged) model's."""

    doc_counts: np.ndarray  # (F, C) documents per (fold, class)
    fold: np.ndarray  # its (fold, class, term) entries with their counts
    class_id: np.ndarray
    term_id: np.ndarray
    count: np.ndarray

    def totals(self) -> dict[tuple[int, int], tuple[int, int]]:
        """{(fold, class): (documents, tokens)} of every (fold, class) with documents."""
        folds, classes = self.doc_counts.shape
        tokens = np.bincount(self.fold * classes + self.class_id, weights=self.count,
                             minlength=folds * classes).reshape(folds, classes)
        return {(int(f), int(c)): (int(self.doc_counts[f, c]), int(tokens[f, c]))
                for f, c in zip(*np.nonzero(self.doc_counts))}


def read_base_fold_counts(
    spark: SparkSession, base_dir: str, folds: int, classes: int, class_map: dict[int, int]
) -> BaseFoldCounts:
    """The base model's ``fold_counts/`` tables, each read once, class ids through ``class_map``
    (old id -> new id)."""
    old_ids = np.array(sorted(class_map), dtype=np.int64)
    new_ids = np.array([class_map[c] for c in old_ids], dtype=np.int64)

    def mapped(class_id: pa.ChunkedArray) -> np.ndarray:
        return new_ids[np.searchsorted(old_ids, class_id.to_numpy().astype(np.int64))]

    documents = spark.read.schema(schemas.FOLD_DOCUMENTS).parquet(contract.fold_documents_uri(base_dir)).toArrow()
    doc_counts = np.zeros((folds, classes), dtype=np.int64)
    np.add.at(doc_counts, (documents.column("fold").to_numpy().astype(np.int64), mapped(documents.column("class_id"))),
              documents.column("doc_count").to_numpy().astype(np.int64))
    terms = spark.read.schema(schemas.FOLD_TERMS).parquet(contract.fold_terms_uri(base_dir)).toArrow()
    return BaseFoldCounts(
        doc_counts,
        terms.column("fold").to_numpy().astype(np.int64),
        mapped(terms.column("class_id")),
        terms.column("term_id").to_numpy().astype(np.int64),
        terms.column("count").to_numpy().astype(np.int64),
    )


def staged_terms(spark: SparkSession, model_dir: str, classes: int, vocabulary_size: int) -> sp.csr_array:
    """(C, V) the staged model's term counts (every shard)."""
    entries = spark.read.parquet(contract.term_counts_uri(model_dir)).select("class_id", "term_id", "count").toArrow()
    return sp.csr_array(
        (
            entries.column("count").to_numpy().astype(np.int64),
            (entries.column("class_id").to_numpy(), entries.column("term_id").to_numpy()),
        ),
        shape=(classes, vocabulary_size),
        dtype=np.int64,
    )


def check_counts_match_model(counts: FoldCounts, classes: list, model_terms: sp.csr_array | None = None) -> None:
    """The folds must add up to the model: same documents and tokens per class, and (given the
    model's term counts) the same count of every (class, term)."""
    staged_docs = np.array([doc_count for _, _, doc_count, _ in classes])
    staged_terms = np.array([term_total for _, _, _, term_total in classes])
    counted_terms = np.asarray(counts.total_terms.sum(axis=1)).ravel()
    entries_differ = model_terms is not None and (
        model_terms.shape != counts.total_terms.shape or (model_terms != counts.total_terms).nnz > 0
    )
    if entries_differ or not (
        np.array_equal(counts.total_docs, staged_docs) and np.array_equal(counted_terms, staged_terms)
    ):
        raise InputError(
            "the per-fold counts do not add up to the staged model's counts "
            f"(documents {counts.total_docs.sum()} vs {staged_docs.sum()}, tokens {counted_terms.sum()} vs "
            f"{staged_terms.sum()}, (class, term) counts {'differ' if entries_differ else 'equal'}): the input "
            "changed since the counting jobs, or the base model's fold counts are not those of its "
            "counts; rerun the training"
        )


def base_fold_counts(spark: SparkSession, base_dir: str, folds: int):
    """(manifest, base class id -> label) of the base model of an incremental run, refused unless
    it keeps per-fold counts of ``folds`` folds made with this code's fold hash."""
    manifest = fs.read_json(spark, contract.manifest_uri(base_dir))
    problem = contract.fold_counts_problem(manifest, folds)
    if problem:
        raise ConfigError(problem)
    base_labels = {
        row["class_id"]: row["label"]
        for row in spark.read.schema(schemas.CLASSES).parquet(contract.classes_uri(base_dir)).collect()
    }
    return manifest, base_labels


def base_class_map(classes: list, base_labels: dict[int, str]) -> dict[int, int]:
    """{base class id: staged (merged) class id}, by label: a merge renumbers the classes."""
    merged_ids = {label: class_id for class_id, label, _, _ in classes}
    return {old: merged_ids[label] for old, label in base_labels.items()}


def merged_fold_counts(
    spark: SparkSession, counted: CountedVectors, model_dir: str, classes: list, vocabulary_size: int,
    base: BaseFoldCounts | None,
) -> FoldCounts:
    """The staged model's per-fold counts, written to its ``fold_counts/``: those of the new
    documents (``source`` 0), plus the base model's stored ones when there is a base (its term ids
    are the merged model's, see nbknn.naive_bayes.merge)."""
    doc_counts = counted.doc_counts
    entries = (counted.fold, counted.class_id, counted.term_id, counted.count)
    if base is not None:
        folds, n_classes = doc_counts.shape
        doc_counts = doc_counts + base.doc_counts
        keys, sums = summed_by_key(
            np.concatenate([counted.fold, base.fold]) * n_classes * vocabulary_size
            + np.concatenate([counted.class_id, base.class_id]) * vocabulary_size
            + np.concatenate([counted.term_id, base.term_id]),
            np.concatenate([counted.count, base.count]).astype(np.float64),
            folds * n_classes * vocabulary_size,
        )
        group, terms = np.divmod(keys, vocabulary_size)
        entries = (group // n_classes, group % n_classes, terms, sums)
    counts = write_fold_counts(spark, model_dir, doc_counts, entries, vocabulary_size)
    check_counts_match_model(counts, classes, staged_terms(spark, model_dir, len(classes), vocabulary_size))
    return counts


def check_base_documents(
    read: dict[tuple[int, int], tuple[int, int]], counts_of_base: dict[tuple[int, int], tuple[int, int]],
    base_version: str, folders: list[str],
) -> None:
    """The base model's documents read again for scoring (``source`` > 0; ``read``: their
    (documents, tokens) per (fold, class)) must be those its per-fold counts hold."""
    if read != counts_of_base:
        differing = sorted(set(read) ^ set(counts_of_base) | {k for k in read if read.get(k) != counts_of_base.get(k)})
        f, c = differing[0]
        raise InputError(
            f"the documents of base model {base_version}'s {len(folders)} input folder(s) no longer add up to "
            f"its per-fold counts (fold {f}, class id {c}: (documents, tokens) read {read.get((f, c))}, counted "
            f"{counts_of_base.get((f, c))}; {len(differing)} (fold, class) pair(s) differ): they changed since "
            "they were counted, and exact selection scores every document the model counts; "
            "retrain with mode=full"
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
    base_dir: str | None = None,
) -> dict:
    """Score every grid point on every held-out fold of the staged model's documents; write and
    return the summary (the table and the chosen point), and the model's per-fold counts.

    With ``base_dir`` (an incremental run: the staged model is the base plus ``spec``'s documents,
    merged), the per-fold counts are the base's stored ones plus those of ``spec``'s documents, and
    the documents scored are ``spec``'s and the base's, read again from the input folders of its
    lineage (with ``spec``'s format and columns) and checked against its per-fold counts."""
    if folds < 2:
        raise ConfigError(f"selection needs at least 2 folds (got {folds})")
    if metric not in contract.SELECTION_METRICS:
        raise ConfigError(f"metric must be one of {contract.SELECTION_METRICS} (got {metric!r})")
    try:
        points = grid_points(model_types, alphas, fit_priors)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    forget_staged_manifest(spark, model_dir)
    base_manifest = base_labels = None
    specs, folders = [spec], []
    if base_dir is not None:
        base_manifest, base_labels = base_fold_counts(spark, base_dir, folds)
        folders = [entry["uri"] for entry in (base_manifest.get("lineage") or {}).get("partitions", [])]
        specs += [replace(spec, uri=folder) for folder in folders]
    tokenizer, classes, lookup = staged_model(spark, model_dir)
    vocabulary_size = lookup.vocabulary_size
    lookup_broadcast = spark.sparkContext.broadcast(lookup)
    tokens = labelled_tokens(spark, specs, tokenizer, classes, folds)
    rows = vectors_and_counts(tokens, lookup_broadcast, folds, len(classes), vocabulary_size)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # One job: reading, tokenising, vectorising and caching the documents, and counting them per fold.
        counted = summed_partial_counts(of_kind(rows, PARTIAL_COUNT).toArrow(), folds, len(classes), vocabulary_size)
        base = None
        if base_dir is not None:
            base = read_base_fold_counts(spark, base_dir, folds, len(classes), base_class_map(classes, base_labels))
            check_base_documents(counted.base_totals, base.totals(), base_manifest["version"], folders)
        counts = merged_fold_counts(spark, counted, model_dir, classes, vocabulary_size, base)
        counts_broadcast = spark.sparkContext.broadcast(counts)
        try:
            # Each task scores the cached documents of its partition: no shuffle, and as many
            # tasks as the input has partitions (the cores stay evenly busy).
            tallies = (
                of_kind(rows, VECTOR).select("fold", "class_id", "term_ids", "counts")
                .mapInArrow(partial(tally_batches, counts_broadcast=counts_broadcast, points=points), TALLY_SCHEMA)
                .collect()
            )
        finally:
            counts_broadcast.destroy()
    finally:
        rows.unpersist()
        lookup_broadcast.destroy()
    table = selection_table(summed_tallies(tallies, folds, len(points), len(classes)), points, metric)
    fold_documents = counts.doc_counts.sum(axis=1).tolist()
    summary = {
        "job": contract.SELECTION_JOB,
        "input": input_summary(spec),
        "scored_inputs": [spec.uri, *folders],
        "fold_documents": fold_documents,
        **table,
        "fold_counts": contract.fold_counts_record(
            folds, fold_documents, int(sum(m.nnz for m in counts.term_counts)),
            base_manifest["version"] if base_manifest else None,
        ),
        "code_version": code_version(),
    }
    summary["report"] = write_model_report(spark, model_dir, summary["best"]["alpha"], summary)
    fs.write_json_atomic(spark, summary_uri(model_dir, contract.SELECTION_JOB), summary)
    return summary
