"""Naive Bayes prediction as Spark transforms: vectorise, score one shard in batches, combine shards.

Every function here takes and returns DataFrames (or Arrow batches) with plain parameters and
touches no path; :mod:`nbknn.nb_predict_jobs` wires them to the run's inputs and outputs.

Frames (the data contracts between the three Spark applications):

    vectors  doc_id string, label string (null: unlabelled), term_ids array<int> (ascending
             model term ids), counts array<int> (occurrences, aligned with term_ids), tokens int
             (all tokens of the document, known or not)
    scores   doc_id string, label string, best_class int, best_score double, log_sum_exp double,
             top_classes array<int>, top_scores array<double>          (one frame per shard)
    predictions  doc_id, class_id, label (predicted), probability[, top_n][, true_label]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F

from nbknn import nb_scoring
from nbknn.tokenizer import TokenizerConfig, tokens_column

DUPLICATE_ID = "duplicate_id"

SCORES_SCHEMA = (
    "doc_id string, label string, best_class int, best_score double, log_sum_exp double, "
    "top_classes array<int>, top_scores array<double>"
)
_ARROW_SCORES_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("label", pa.string()),
        ("best_class", pa.int32()),
        ("best_score", pa.float64()),
        ("log_sum_exp", pa.float64()),
        ("top_classes", pa.list_(pa.int32())),
        ("top_scores", pa.list_(pa.float64())),
    ]
)


# --- vectorise -------------------------------------------------------------------------------


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
        F.when(duplicate, F.col("doc_id")).alias("duplicate_of"),
    )


#: Largest vocabulary that prediction ships to the tasks for an in-row lookup (terms); above it
#: the vectoriser falls back to a join in Spark (two shuffles, but the vocabulary is never
#: collected). 5 M terms are a few hundred MB as an Arrow string array on the driver and in
#: every Python worker, still far below a dense model of the same vocabulary.
DEFAULT_MAX_LOOKUP_TERMS = 5_000_000

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

    def value_set(self, arrow_type: pa.DataType) -> pa.Array:
        """The terms cast to the type of the tokens (string or large_string), cast once."""
        if arrow_type not in self._by_type:
            self._by_type[arrow_type] = self.terms if self.terms.type == arrow_type else self.terms.cast(arrow_type)
        return self._by_type[arrow_type]

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
    """Per row of a list<string> column: (term_ids, counts, tokens) without a row loop.

    term_ids: list<int32> of the row's known terms, ascending; counts: list<int32> aligned with
    them; tokens: int32 number of tokens of the row (known or not). A null list counts as empty.
    """
    n = len(tokens)
    lengths = pc.fill_null(pc.list_value_length(tokens), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(tokens)
    V = max(lookup.vocabulary_size, 1)
    if len(flat):
        position = pc.fill_null(pc.index_in(flat, value_set=lookup.value_set(flat.type)), -1)
        position = position.to_numpy(zero_copy_only=False).astype(np.int64)
        row = np.repeat(np.arange(n, dtype=np.int64), lengths)
        known = position >= 0
        term = position[known] if lookup.term_ids is None else lookup.term_ids[position[known]]
        # One sort of (row, term) keys counts every (document, term) pair of the batch at once.
        keys, counts = np.unique(row[known] * V + term, return_counts=True)
        rows_of_keys = keys // V
        term_ids = (keys - rows_of_keys * V).astype(np.int32)
        per_row = np.bincount(rows_of_keys, minlength=n)
    else:
        term_ids = np.empty(0, dtype=np.int32)
        counts = np.empty(0, dtype=np.int64)
        per_row = np.zeros(n, dtype=np.int64)
    offsets = pa.array(np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32))
    return (
        pa.ListArray.from_arrays(offsets, pa.array(term_ids, type=pa.int32())),
        pa.ListArray.from_arrays(offsets, pa.array(counts.astype(np.int32), type=pa.int32())),
        pa.array(lengths.astype(np.int32), type=pa.int32()),
    )


def document_vectors(accepted: DataFrame, lookup_broadcast, tokenizer: TokenizerConfig) -> DataFrame:
    """Sparse term-count vectors of the accepted documents over the model's vocabulary.

    ``accepted``: doc_id, label, text (ids unique). ``lookup_broadcast``: a broadcast
    :class:`VocabularyLookup` of the model's vocabulary. The text is tokenised in the JVM (the
    project's one tokeniser); each Arrow batch of token lists is then mapped to term ids and
    counted inside its rows (:func:`count_known_terms`), with no shuffle. Unknown terms are
    dropped; a document without any known term keeps empty arrays (prior-only prediction).
    """
    tokenized = accepted.select("doc_id", "label", tokens_column(F.col("text"), tokenizer).alias("tokens"))

    def vectorise(batches):
        lookup = lookup_broadcast.value
        for batch in batches:
            term_ids, counts, tokens = count_known_terms(batch.column("tokens"), lookup)
            yield pa.RecordBatch.from_arrays(
                [batch.column("doc_id"), batch.column("label"), term_ids, counts, tokens],
                names=["doc_id", "label", "term_ids", "counts", "tokens"],
            )

    return tokenized.mapInArrow(vectorise, VECTORS_SCHEMA).sortWithinPartitions("doc_id")


def document_vectors_joined(accepted: DataFrame, vocabulary: DataFrame, tokenizer: TokenizerConfig) -> DataFrame:
    """As :func:`document_vectors`, for a vocabulary too large to ship to the tasks.

    ``vocabulary``: term, term_id (the model's). Terms are mapped to ids by a join in Spark (the
    vocabulary is never collected), at the price of two shuffles of one row per (document,
    distinct term).
    """
    tokenized = accepted.select("doc_id", "label", tokens_column(F.col("text"), tokenizer).alias("tokens"))
    # Count per (document, term) before the join: the join then sees each distinct term of a
    # document once instead of every occurrence.
    term_counts = (
        tokenized.select("doc_id", F.explode("tokens").alias("term"))
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
        tokenized.select("doc_id", "label", F.size("tokens").cast("int").alias("tokens"))
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


def observe_vector_stats(vectors: DataFrame) -> tuple[DataFrame, Observation]:
    """``vectors`` with its totals observed while an action (the write) runs over it.

    After the action, :func:`vector_stats` reads them: documents, labelled, without known term,
    tokens, known tokens. Observed in the writing job itself (Spark merges the metrics of
    successful task attempts only) instead of a second pass that reads the vectors back.
    """
    observation = Observation("vectors")
    known = F.aggregate("counts", F.lit(0).cast("long"), lambda acc, x: acc + x)
    observed = vectors.observe(
        observation,
        F.count(F.lit(1)).alias("documents"),
        F.count("label").alias("labelled"),
        F.sum(F.when(F.size("term_ids") == 0, 1).otherwise(0)).alias("without_known_term"),
        F.sum("tokens").alias("tokens"),
        F.sum(known).alias("known_tokens"),
    )
    return observed, observation


def vector_stats(observation: Observation) -> dict:
    """The totals :func:`observe_vector_stats` observed (call after the action)."""
    return {key: int(value or 0) for key, value in observation.get.items()}


# --- one shard's prediction pass -------------------------------------------------------------


def csr_from_arrow(term_ids: pa.Array, counts: pa.Array, vocabulary_size: int) -> sp.csr_array:
    """(n, V) CSR term counts straight from two aligned Arrow list columns, without a row loop.

    An Arrow list column is already a CSR row structure: its offsets are the indptr and its
    flattened values the column indices.
    """
    if term_ids.null_count or counts.null_count:
        raise ValueError("term_ids and counts must not hold null lists")
    offsets = np.asarray(term_ids.offsets, dtype=np.int64)
    count_offsets = np.asarray(counts.offsets, dtype=np.int64)
    if not np.array_equal(np.diff(offsets), np.diff(count_offsets)):
        raise ValueError("term_ids and counts must have the same length in every row")
    # .values ignores the slice of a sliced array; the offsets do not.
    indices = np.asarray(term_ids.values)[offsets[0] : offsets[-1]]
    data = np.asarray(counts.values)[count_offsets[0] : count_offsets[-1]]
    indptr = offsets - offsets[0]
    if indices.size and (indices.min() < 0 or indices.max() >= vocabulary_size):
        raise ValueError(
            f"term ids must be in [0, {vocabulary_size}) (got {indices.min()}..{indices.max()}): "
            "the vectors were not made with this model's vocabulary"
        )
    return sp.csr_array(
        (data.astype(np.float64), indices.astype(np.int32), indptr.astype(np.int64)),
        shape=(len(term_ids), vocabulary_size),
    )


def _fixed_width_lists(matrix: np.ndarray, value_type: pa.DataType) -> pa.Array:
    """(n, m) array as an Arrow list column of n lists of m values each."""
    n, m = matrix.shape
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * m)
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), type=value_type))


def score_arrow_batch(
    batch: pa.RecordBatch, model: nb_scoring.ShardModel, top_n: int
) -> pa.RecordBatch:
    """Score one Arrow batch of vectors against a shard: one sparse product for the whole batch."""
    X = csr_from_arrow(batch.column("term_ids"), batch.column("counts"), model.vocabulary_size)
    result = nb_scoring.shard_result(model, X, top_n)
    return pa.RecordBatch.from_arrays(
        [
            batch.column("doc_id"),
            batch.column("label"),
            pa.array(result.best_class.astype(np.int32)),
            pa.array(result.best_score),
            pa.array(result.log_sum_exp),
            _fixed_width_lists(result.top_classes.astype(np.int32), pa.int32()),
            _fixed_width_lists(result.top_scores, pa.float64()),
        ],
        schema=_ARROW_SCORES_SCHEMA,
    )


def shard_scores(vectors: DataFrame, model_broadcast, top_n: int) -> DataFrame:
    """Scores of every document against the shard broadcast as ``model_broadcast`` (a ShardModel).

    Runs in Python workers through ``mapInArrow``: each Arrow batch (spark's
    ``arrow.maxRecordsPerBatch`` documents) becomes one CSR matrix and one sparse product.
    """
    nb_scoring._check_top_n(top_n)

    def score(batches):
        model = model_broadcast.value
        for batch in batches:
            yield score_arrow_batch(batch, model, top_n)

    return vectors.select("doc_id", "label", "term_ids", "counts").mapInArrow(score, SCORES_SCHEMA)


# --- combine the shards ----------------------------------------------------------------------


def _log_sum_exp(values: Column, maximum: Column) -> Column:
    """log(sum(exp(values))) of an array column, shifted by its maximum (as scipy's logsumexp)."""
    shifted_sum = F.aggregate(values, F.lit(0.0), lambda acc, x: acc + F.exp(x - maximum))
    # All -inf (no class with a finite score): the shift would be nan; the sum is exp(-inf) = 0.
    return F.when(maximum == float("-inf"), F.lit(float("-inf"))).otherwise(maximum + F.log(shifted_sum))


def combine_scores(scores: DataFrame, labels: list[str], num_shards: int, top_n: int) -> DataFrame:
    """Per document: the best class over all shards, its posterior, optional top-n.

    ``scores``: the union of every shard's scores frame. ``labels``: label of each class id
    (index = class id). The winner is the maximum of (score, -class id) over the shards, so ties
    go to the lower class id; its posterior is exp(best_score - log-sum-exp over all classes), the
    log-sum-exp merged from the shards' own. A document not scored by exactly ``num_shards``
    shards fails the job: its answer would silently ignore some classes. A one-shard model needs
    no merge: each scores row already is its document's answer (no shuffle).
    """
    nb_scoring._check_top_n(top_n)
    per_document = _single_shard(scores, top_n) if num_shards == 1 else _merged_shards(scores, num_shards, top_n)
    labels_array = F.lit(labels)
    columns = [
        "doc_id",
        F.col("class_id"),
        F.element_at(labels_array, F.col("class_id") + 1).alias("label"),
        F.col("probability"),
    ]
    if top_n:
        top = F.slice(F.array_sort("candidates"), 1, top_n)
        columns.append(
            F.transform(
                top,
                lambda c: F.struct(
                    c["class_id"].alias("class_id"),
                    F.element_at(labels_array, c["class_id"] + 1).alias("label"),
                    F.exp(-c["neg_score"] - F.col("log_evidence")).alias("probability"),
                ),
            ).alias("top_n")
        )
    columns.append("true_label")
    return per_document.select(*columns).sortWithinPartitions("doc_id")


def _candidates(classes: Column, scores: Column) -> Column:
    """A shard's top classes as structs that sort ascending by (-score, class id): descending
    score, ties to the lower class id."""
    return F.transform(
        F.arrays_zip(classes.alias("top_classes"), scores.alias("top_scores")),
        lambda t: F.struct((-t["top_scores"]).alias("neg_score"), t["top_classes"].alias("class_id")),
    )


def _single_shard(scores: DataFrame, top_n: int) -> DataFrame:
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
    return scores.select(*columns)


def _merged_shards(scores: DataFrame, num_shards: int, top_n: int) -> DataFrame:
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
    return grouped.select(*columns)


def confusion_counts(predictions: DataFrame) -> DataFrame:
    """(true_label, label, count) over all predictions; true_label is null for unlabelled ones."""
    return predictions.groupBy("true_label", "label").count()
