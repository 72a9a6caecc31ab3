"""Vectorising documents against a model's vocabulary: the first step of prediction.

``run_vectorize`` reads and validates the input (rejects, max_reject_fraction, duplicate ids),
tokenises with the model's tokeniser, maps terms to the model's term ids and publishes the
vectors (:mod:`nbknn.naive_bayes.outputs`); their summary carries a random ``write_id`` that every
shard pass records, so the combiner can tell that all shards scored the same vectors.

Frame written (the shard passes' input):

    vectors  doc_id string, label string (null: unlabelled), term_ids array<int> (ascending
             model term ids), counts array<int> (occurrences, aligned with term_ids), tokens int
             (all tokens of the document, known or not)
"""

from __future__ import annotations

import uuid
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from nbknn.common import fs
from nbknn.common.provenance import code_version
from nbknn.inputs.documents import (
    InputError,
    InputSpec,
    ReadCounts,
    TooManyRejects,
    accepted_documents,
    check_reject_fraction,
    observe_read_totals,
    observed_blank_lines,
    observed_label_changes,
    publish_rejects,
    published_rejects_by_reason,
    read_documents,
    read_totals,
    rejected_records,
)
from nbknn.inputs.tokenizer import TokenizerConfig, python_tokens_column, split_tokens, terminated, tokens_column
from nbknn.naive_bayes.model_reader import model_summary, read_model_manifest, read_vocabulary, read_vocabulary_table
from nbknn.naive_bayes.outputs import publish_output, small_output_columns

DUPLICATE_ID = "duplicate_id"
# How many duplicated ids a summary or an error message names.
EXAMPLES = 5


def with_duplicate_ids_rejected(documents: DataFrame) -> DataFrame:
    """Quarantine every record whose id is shared by another accepted record.

    Predictions are keyed by document id; silently keeping one of several records (or merging
    them) would answer for a document nobody can identify. All copies go to the rejects with
    reason ``duplicate_id`` and count against max_reject_fraction; ``duplicate_of`` keeps the id
    (the other fields of a rejected record are cleared, as read_documents does).
    """
    accepted = F.col("reject_reason").isNull()
    copies = F.count(F.lit(1)).over(Window.partitionBy("doc_id"))
    # A column of its own: the window is evaluated once, not once per column that uses it.
    flagged = documents.withColumn("_duplicate", accepted & (copies > 1))
    duplicate = F.col("_duplicate")
    return flagged.select(
        F.when(~duplicate, F.col("doc_id")).alias("doc_id"),
        F.when(~duplicate, F.col("label")).alias("label"),
        F.when(~duplicate, F.col("text")).alias("text"),
        F.when(duplicate, F.lit(DUPLICATE_ID)).otherwise(F.col("reject_reason")).alias("reject_reason"),
        "source",
        "raw",
        F.when(~duplicate, F.col("label_change")).alias("label_change"),
        F.when(duplicate, F.col("doc_id")).alias("duplicate_of"),
    )


#: The written column that the duplicate-id check reads.
DOC_ID_COLUMN = StructType([StructField("doc_id", StringType())])


def write_rejecting_duplicate_ids(documents: DataFrame, write, written_uri: str, columns: StructType = DOC_ID_COLUMN):
    """Run ``write(documents)``, which writes one row per accepted document (column ``doc_id``) to
    ``written_uri``, so that every record whose id another accepted record shares is rejected as
    :func:`with_duplicate_ids_rejected` does: (the documents as written from, what ``write``
    returned, the written ``columns`` (``doc_id`` among them) as an Arrow table when the output
    is small and was written once, else None: a caller's own summary of the output may use it).

    Shared ids are rare. Found before the write, they cost a shuffle of every record with its text
    (the window); found after it, a look at the written ids alone. So the first write takes the
    accepted records as they are, and only when two written rows share an id is that output
    deleted and the write done again from the records with the window applied.
    """
    spark = documents.sparkSession
    result = write(documents)
    small = small_output_columns(spark, written_uri, columns)
    if not written_ids_repeat(spark, written_uri, small):
        return documents, result, small
    fs.delete(spark, written_uri)
    flagged = with_duplicate_ids_rejected(documents)
    return flagged, write(flagged), None


def written_ids_repeat(spark: SparkSession, written_uri: str, small: pa.Table | None) -> bool:
    """Whether two rows of the output at ``written_uri`` share a ``doc_id``: counted on the driver
    from ``small``, the output's columns in Arrow when it is small
    (:func:`~nbknn.naive_bayes.outputs.small_output_columns`), else by Spark."""
    if small is not None:
        return pc.count_distinct(small.column("doc_id")).as_py() < small.num_rows
    written = spark.read.schema(DOC_ID_COLUMN).parquet(written_uri)
    rows, ids = written.agg(F.count(F.lit(1)), F.count_distinct("doc_id")).first()
    return ids < rows


#: Largest vocabulary that prediction ships to the tasks for an in-row lookup (terms); above it
#: the vectoriser falls back to a join in Spark (two shuffles, but the vocabulary is never
#: collected). 5 M terms are a few hundred MB as an Arrow string array on the driver and in
#: every Python worker, still far below a dense model of the same vocabulary.
DEFAULT_MAX_LOOKUP_TERMS = 5_000_000

# How the vectoriser maps terms to ids (the summaries' "vectoriser").
IN_ROW_LOOKUP, JOIN = "in_row_lookup", "join"

VECTORS_SCHEMA = "doc_id string, label string, term_ids array<int>, counts array<int>, tokens int"


class VocabularyLookup:
    """The model's vocabulary as a lookup table for :func:`count_known_terms`.

    terms: Arrow string array; ``term_ids[i]`` is the id of ``terms[i]`` (``None``: the ids are
    the positions, the usual dense case 0..V-1); ``vocabulary_size`` bounds every id.
    """

    def __init__(self, terms: pa.Array, term_ids: np.ndarray | None, vocabulary_size: int) -> None:
        self.terms = terms
        self.term_ids = term_ids
        self.vocabulary_size = int(vocabulary_size)
        self._by_type: dict = {}

    def value_set(self, arrow_type: pa.DataType, with_terminator: bool = False) -> pa.Array:
        """The terms as tokens of ``arrow_type`` (string, binary or their large forms) are looked
        up, each followed by the tokeniser's terminator when ``with_terminator``
        (:func:`~nbknn.inputs.tokenizer.split_tokens`); made once per form."""
        key = (arrow_type, with_terminator)
        if key not in self._by_type:
            if with_terminator:
                self._by_type[key] = terminated(self.terms, arrow_type)
            else:
                self._by_type[key] = self.terms if self.terms.type == arrow_type else self.terms.cast(arrow_type)
        return self._by_type[key]

    def __getstate__(self):
        return {"terms": self.terms, "term_ids": self.term_ids, "vocabulary_size": self.vocabulary_size}

    def __setstate__(self, state):
        self.__init__(state["terms"], state["term_ids"], state["vocabulary_size"])


def vocabulary_lookup(vocabulary: pa.Table) -> VocabularyLookup:
    """Lookup table from an Arrow table (term_id, term) of the model's vocabulary (any row order)."""
    ids = np.asarray(vocabulary.column("term_id").to_numpy(), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    terms = vocabulary.column("term").combine_chunks().take(pa.array(order))
    if ids.size and (ids[0] < 0 or np.any(np.diff(ids) <= 0)):
        raise ValueError("vocabulary term ids must be unique and >= 0")
    dense = bool(ids.size == 0 or ids[-1] == ids.size - 1)
    size = int(ids[-1]) + 1 if ids.size else 0
    return VocabularyLookup(terms, None if dense else ids, size)


def count_known_terms(tokens: pa.Array, lookup: VocabularyLookup):
    """Per row of a list<string> column, or of tokens joined by the tokeniser
    (:func:`~nbknn.inputs.tokenizer.split_tokens` reads both): (term_ids, counts, tokens) without a
    row loop.

    term_ids: list<int32> of the row's known terms, ascending; counts: list<int32> aligned with
    them; tokens: int32 number of tokens of the row (known or not). A null list counts as empty.
    """
    matrix, lengths = known_token_matrix(tokens, lookup)
    # Summing the duplicates sorts each row's few term ids on its own, cheaper than one sort of
    # the whole batch's keys.
    matrix.sum_duplicates()
    term_ids, counts = term_count_lists(matrix)
    return term_ids, counts, pa.array(lengths.astype(np.int32), type=pa.int32())


def known_token_matrix(tokens: pa.Array, lookup: VocabularyLookup) -> tuple[sp.csr_array, np.ndarray]:
    """(X, lengths) of a column of tokens as :func:`count_known_terms` reads it: X is the (rows, V)
    float64 CSR matrix with an entry of 1 for each known token, in the row's token order (a term
    seen twice has two entries, which any product with X adds up); lengths (int64) counts every
    token of each row, known or not."""
    flat, lengths, with_terminator = split_tokens(tokens)
    n = len(tokens)
    position = pc.fill_null(pc.index_in(flat, value_set=lookup.value_set(flat.type, with_terminator)), -1)
    position = position.to_numpy(zero_copy_only=False)
    known_at = np.flatnonzero(position >= 0)
    term = position[known_at] if lookup.term_ids is None else lookup.term_ids[position[known_at]]
    # Each row's first known token: how many known tokens come before the row's first token.
    indptr = np.searchsorted(known_at, np.concatenate([[0], np.cumsum(lengths)]))
    # Indices and indptr of one integer type, or scipy copies the indices to the wider one.
    index_type = np.int32 if term.size <= np.iinfo(np.int32).max else np.int64
    matrix = sp.csr_array((np.ones(term.size), term.astype(index_type), indptr.astype(index_type)),
                          shape=(n, max(lookup.vocabulary_size, 1)))
    return matrix, lengths


def term_count_lists(matrix: sp.csr_array) -> tuple[pa.Array, pa.Array]:
    """(term_ids, counts) list<int32> columns of a CSR matrix of term counts without duplicates."""
    offsets = pa.array(matrix.indptr.astype(np.int32))
    return (pa.ListArray.from_arrays(offsets, pa.array(matrix.indices.astype(np.int32), type=pa.int32())),
            pa.ListArray.from_arrays(offsets, pa.array(matrix.data.astype(np.int32), type=pa.int32())))


def document_vectors(accepted: DataFrame, lookup_broadcast, tokenizer: TokenizerConfig) -> DataFrame:
    """Sparse term-count vectors of the accepted documents over the model's vocabulary.

    ``accepted``: doc_id, label, text (ids unique). ``lookup_broadcast``: a broadcast
    :class:`VocabularyLookup` of the model's vocabulary. The text is tokenised in the JVM (the
    project's one tokeniser); each Arrow batch of token lists is then mapped to term ids and
    counted inside its rows (:func:`count_known_terms`), with no shuffle. Unknown terms are
    dropped; a document without any known term keeps empty arrays (prior-only prediction).
    """
    vectorise = partial(_vectorise_batches, lookup_broadcast=lookup_broadcast)
    return tokenized_for_python(accepted, tokenizer).mapInArrow(vectorise, VECTORS_SCHEMA).sortWithinPartitions("doc_id")


def tokenized(accepted: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """doc_id, label, tokens (array<string>, the model's tokeniser in the JVM) of ``accepted``."""
    return accepted.select("doc_id", "label", tokens_column(F.col("text"), tokenizer).alias("tokens"))


def tokenized_for_python(accepted: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """As :func:`tokenized`, the tokens in the form a Python consumer takes them (both forms are
    read by :func:`count_known_terms`)."""
    return accepted.select("doc_id", "label", python_tokens_column(F.col("text"), tokenizer).alias("tokens"))


def _vectorise_batches(batches, lookup_broadcast):
    """mapInArrow body: each Arrow batch of token lists as a batch of vectors."""
    lookup = lookup_broadcast.value
    for batch in batches:
        term_ids, counts, tokens = count_known_terms(batch.column("tokens"), lookup)
        yield pa.RecordBatch.from_arrays(
            [batch.column("doc_id"), batch.column("label"), term_ids, counts, tokens],
            names=["doc_id", "label", "term_ids", "counts", "tokens"],
        )


def document_vectors_joined(accepted: DataFrame, vocabulary: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """As :func:`document_vectors`, for a vocabulary too large to ship to the tasks.

    ``vocabulary``: term, term_id (the model's). Terms are mapped to ids by a join in Spark (the
    vocabulary is never collected), at the price of two shuffles of one row per (document,
    distinct term).
    """
    tokens = tokenized(accepted, tokenizer)
    # Count per (document, term) before the join: the join then sees each distinct term of a
    # document once instead of every occurrence.
    term_counts = (
        tokens.select("doc_id", F.explode("tokens").alias("term"))
        .groupBy("doc_id", "term")
        .agg(F.count(F.lit(1)).cast("int").alias("count"))
    )
    known = term_counts.join(vocabulary.select("term", "term_id"), "term")
    per_document = known.groupBy("doc_id").agg(
        # Sorting structs sorts by their first field: ascending term ids, unique per document.
        F.array_sort(F.collect_list(F.struct("term_id", "count"))).alias("entries")
    )
    empty = F.array().cast("array<int>")
    return (
        tokens.select("doc_id", "label", F.size("tokens").cast("int").alias("tokens"))
        .join(per_document, "doc_id", "left")
        .select(
            "doc_id",
            "label",
            F.coalesce(F.col("entries.term_id"), empty).alias("term_ids"),
            F.coalesce(F.col("entries.count"), empty).alias("counts"),
            "tokens",
        )
        .sortWithinPartitions("doc_id")
    )


def observe_vector_stats(vectors: DataFrame, known_tokens: Column | None = None) -> tuple[DataFrame, Observation]:
    """``vectors`` with its totals observed while an action (the write) runs over it.

    After the action, :func:`vector_stats` reads them: documents, labelled, without known term,
    tokens, known tokens. Observed in the writing job itself (Spark merges the metrics of
    successful task attempts only) instead of a second pass that reads the vectors back.
    ``known_tokens``: a frame without the counts gives each row's known tokens as this column.
    """
    observation = Observation("vectors")
    known = F.aggregate("counts", F.lit(0).cast("long"), lambda acc, x: acc + x) if known_tokens is None \
        else known_tokens
    observed = vectors.observe(
        observation,
        F.count(F.lit(1)).alias("documents"),
        F.count("label").alias("labelled"),
        # Every count is at least 1: no known token is no known term.
        F.sum(F.when(known == 0, 1).otherwise(0)).alias("without_known_term"),
        F.sum("tokens").alias("tokens"),
        F.sum(known).alias("known_tokens"),
    )
    return observed, observation


def vector_stats(observation: Observation) -> dict:
    """The totals :func:`observe_vector_stats` observed (call after the action)."""
    return {key: int(value or 0) for key, value in observation.get.items()}


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

    One pass over clean input: the records are parsed, validated and vectorised in the job that
    writes the vectors, which also counts them (read, accepted); the written ids are then checked
    for duplicates (:func:`write_rejecting_duplicate_ids`). Only
    when some record was rejected is the input read again, to quarantine the rejects (then
    counted by reason from the quarantine); the vectors are published after the reject fraction
    has been checked, and deleted unpublished when it is exceeded.

    Vocabularies of at most ``max_lookup_terms`` terms are shipped to the tasks and looked up
    inside each row (no shuffle); larger ones are joined in Spark (:func:`document_vectors_joined`)."""
    manifest = read_model_manifest(spark, model_dir)
    tokenizer = TokenizerConfig.from_dict(manifest["tokenizer"])
    temp_uri = fs.temporary_sibling(vectors_uri)
    try:
        documents, (vectoriser, stats, totals), _ = write_rejecting_duplicate_ids(
            read_documents(spark, spec, labelled=False),
            partial(_write_vectors, spark, manifest=manifest, tokenizer=tokenizer, model_dir=model_dir,
                    temp_uri=temp_uri, max_lookup_terms=max_lookup_terms),
            temp_uri)
        counts, duplicates = quarantine(spark, spec, documents, totals, rejects_uri, max_reject_fraction)
        if stats["documents"] != counts.accepted:
            raise AssertionError(f"wrote {stats['documents']} vectors for {counts.accepted} accepted records")
    except Exception:
        fs.delete(spark, temp_uri)
        raise
    summary = {
        "job": "nb_vectorize",
        "write_id": uuid.uuid4().hex,
        "model": model_summary(model_dir, manifest),
        "input": {"uri": spec.uri, "format": spec.format},
        "records": counts.to_dict(),
        "duplicate_ids": duplicates,
        "rejects_uri": rejects_uri if counts.rejected else None,
        "vectoriser": vectoriser,
        "vectors": stats,
        "code_version": code_version(),
    }
    publish_output(spark, temp_uri, vectors_uri, summary)
    return summary


def vector_frame(spark, accepted: DataFrame, manifest: dict, tokenizer, model_dir: str, max_lookup_terms: int):
    """(vectoriser, lazy vectors frame, the lookup's broadcast or None) of the accepted documents.

    Vocabularies of at most ``max_lookup_terms`` terms go to the tasks once (broadcast) and every
    document is counted in its row; larger ones are joined in Spark. The caller destroys the broadcast
    after the action."""
    broadcast = lookup_broadcast(spark, manifest, model_dir, max_lookup_terms)
    if broadcast is not None:
        return IN_ROW_LOOKUP, document_vectors(accepted, broadcast, tokenizer), broadcast
    return JOIN, document_vectors_joined(accepted, read_vocabulary(spark, model_dir), tokenizer), None


def lookup_broadcast(spark, manifest: dict, model_dir: str, max_lookup_terms: int):
    """The model's vocabulary broadcast as a :class:`VocabularyLookup` when it has at most
    ``max_lookup_terms`` terms (the caller destroys it after the action), else None: join it."""
    lookup = shipped_lookup(spark, manifest, model_dir, max_lookup_terms)
    return None if lookup is None else spark.sparkContext.broadcast(lookup)


def shipped_lookup(spark, manifest: dict, model_dir: str, max_lookup_terms: int) -> VocabularyLookup | None:
    """The model's vocabulary as a :class:`VocabularyLookup` to ship to the tasks when it has at
    most ``max_lookup_terms`` terms, else None: join it."""
    if manifest["counts"]["vocabulary_size"] > max_lookup_terms:
        return None
    return vocabulary_lookup(read_vocabulary_table(spark, model_dir, ["term_id", "term"]))


def _write_vectors(spark, documents, manifest, tokenizer, model_dir, temp_uri, max_lookup_terms):
    """Write the accepted records' vectors to ``temp_uri``: (vectoriser, vector stats, read totals)."""
    observed, totals = observe_read_totals(documents)
    vectoriser, vectors, broadcast = vector_frame(spark, accepted_documents(observed), manifest, tokenizer,
                                                  model_dir, max_lookup_terms)
    vectors, observation = observe_vector_stats(vectors)
    try:
        vectors.write.parquet(temp_uri)
    finally:
        if broadcast is not None:
            broadcast.destroy()
    return vectoriser, vector_stats(observation), (*read_totals(totals), observed_blank_lines(totals),
                                                   observed_label_changes(totals))


def quarantine(spark, spec, documents, totals, rejects_uri, max_reject_fraction):
    """Publish the rejects (reading the input again only when there are any) and check their
    fraction: (ReadCounts, examples of duplicated ids)."""
    read, accepted, blank_lines, labels_changed = totals
    if read == accepted:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
        counts = ReadCounts(read=read, accepted=accepted, rejected_by_reason={}, blank_lines=blank_lines,
                            labels_changed=labels_changed)
        duplicates = []
    else:
        publish_rejects(rejected_records(documents), rejects_uri)
        # Counted from what was quarantined (small), not by reading the whole input once more.
        counts = ReadCounts(read=read, accepted=accepted,
                            rejected_by_reason=published_rejects_by_reason(spark, rejects_uri),
                            blank_lines=blank_lines, labels_changed=labels_changed)
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
