"""Per-prediction top terms: the terms of a document that weighed most for its predicted class.

Definition. Let c be the document's predicted class and r its runner-up (the class with the
second-highest joint log-likelihood, ties to the lower class id, as for the winner). Both model
types score a document x as ``jll[k] = prior[k] + sum_t x[t] * w[k, t]`` with w scikit-learn's
``feature_log_prob_`` (multinomial: log P(t | k); complement with ``norm=False``: the complement
weight), so the winner's margin splits over the document's terms:

    jll[c] - jll[r] = prior[c] - prior[r] + sum_t contribution[t]
    contribution[t] = x[t] * (w[c, t] - w[r, t])

A document's top terms are its ``top_terms`` terms of largest positive contribution (the terms
that argue for c against r), largest first, ties to the lower term id (sorted term order, but
merged models number their new terms after the old ones). A term
with a contribution <= 0 argues for the runner-up and is never listed; a model with one class has
no runner-up, and every document gets an empty list.

Where it is computed. The winner and the runner-up are known only once every shard has been
scored, and their weights may live in different shards. So each shard pass emits, for its own
two best classes, the weights of the document's terms (:func:`candidate_weights`, up to a
per-term constant shared by all classes, which cancels in the difference); the global winner and
runner-up are among the union of the shards' two best, and the combiner
(:func:`top_term_ids`, in Spark) takes their weights, forms the contributions and keeps the top
terms, named from the model's vocabulary by :func:`with_term_strings`. The single pass is the
same computation over one shard. With ``top_terms=0`` (the default) none of this runs: no
column is added to the scores or the predictions.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from nbknn.naive_bayes.scoring import ShardModel

#: Classes of a shard whose weights each scores row carries: the winner and the runner-up overall
#: are among the union of every shard's two best.
CANDIDATES = 2

#: Columns a shard's scores carry when top terms are asked for (beside SCORES_SCHEMA's).
SCORES_COLUMNS = "term_ids array<int>, counts array<int>, top_weights array<array<double>>"


def candidate_weights(model: ShardModel, X: sp.csr_array, candidates: np.ndarray) -> pa.ListArray:
    """The weights of each document's terms in each of its candidate classes.

    Args (n = documents, V = vocabulary, m = candidates per document):
        X: (n, V) CSR term counts with sorted indices (the vectors' ascending term ids).
        candidates: (n, m) global class ids of the shard's classes.

    Returns:
        Arrow list<list<double>> of n rows; row i holds m lists, list j the weight
        ``default_log_prob[k] + diff[k, t]`` of class ``k = candidates[i, j]`` for every term t of
        row i of X, in X's order. That is scikit-learn's ``feature_log_prob_[k, t]`` less a
        per-term constant (complement NB's term base) that cancels between two classes.
    """
    X = sp.csr_array(X)
    n, m = candidates.shape
    lengths = np.diff(X.indptr).astype(np.int64)
    starts = X.indptr[:-1].astype(np.int64)
    doc_of_entry = np.repeat(np.arange(n), lengths)
    rows = np.searchsorted(model.class_ids, candidates)
    values = np.empty(m * X.nnz, dtype=np.float64)
    position = np.arange(X.nnz, dtype=np.int64) - starts[doc_of_entry]
    for j in range(m):
        class_rows = rows[doc_of_entry, j]
        seen = np.asarray(model.diff[class_rows, X.indices]).reshape(-1) if X.nnz else np.zeros(0)
        # Output order: document, then candidate, then term.
        values[m * starts[doc_of_entry] + j * lengths[doc_of_entry] + position] = (
            model.default_log_prob[class_rows] + seen
        )
    inner_offsets = np.concatenate([[0], np.cumsum(np.repeat(lengths, m))]).astype(np.int32)
    inner = pa.ListArray.from_arrays(pa.array(inner_offsets), pa.array(values))
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * m), inner)


def weighted_candidates(top_classes: Column, top_scores: Column, top_weights: Column) -> Column:
    """A scores row's candidates as structs that sort ascending by (-score, class id), each with
    its term weights: the shard's best first."""
    return F.transform(
        F.arrays_zip(
            F.slice(top_classes, 1, CANDIDATES).alias("c"),
            F.slice(top_scores, 1, CANDIDATES).alias("s"),
            top_weights.alias("w"),
        ),
        lambda t: F.struct((-t["s"]).alias("neg_score"), t["c"].alias("class_id"), t["w"].alias("weights")),
    )


def top_term_ids(term_ids: Column, counts: Column, ranked: Column, top_terms: int) -> Column:
    """The top terms (term_id, count, contribution) from the candidates ``ranked`` best first (an
    array of :func:`weighted_candidates` structs): the first is the winner, the second the
    runner-up; empty when there is no runner-up (a one-class model)."""
    winner, runner_up = F.element_at(ranked, 1)["weights"], F.element_at(ranked, 2)["weights"]
    contributions = F.zip_with(
        counts, F.zip_with(winner, runner_up, lambda a, b: a - b), lambda n, d: n.cast("double") * d
    )
    entries = F.transform(
        F.arrays_zip(term_ids.alias("t"), counts.alias("n"), contributions.alias("x")),
        lambda e: F.struct((-e["x"]).alias("neg_contribution"), e["t"].alias("term_id"), e["n"].alias("count")),
    )
    kept = F.slice(F.array_sort(F.filter(entries, lambda e: e["neg_contribution"] < 0)), 1, top_terms)
    listed = F.transform(
        kept,
        lambda e: F.struct(e["term_id"].alias("term_id"), e["count"].alias("count"),
                           (-e["neg_contribution"]).alias("contribution")),
    )
    empty = F.array().cast("array<struct<term_id:int,count:int,contribution:double>>")
    return F.when(F.size(ranked) >= 2, listed).otherwise(empty)


def with_term_strings(predictions: DataFrame, vocabulary: DataFrame) -> DataFrame:
    """Replace the term ids of ``predictions.top_terms`` by the terms of ``vocabulary`` (term_id,
    term), keeping the order. One pass over the predictions: each listed term becomes a row, joined
    with the vocabulary (never collected), and the rows are grouped back by document."""
    others = [name for name in predictions.columns if name != "top_terms"]
    listed = predictions.select(*others, F.posexplode_outer("top_terms").alias("rank", "entry"))
    named = listed.join(vocabulary.select("term_id", "term"), F.col("entry.term_id") == vocabulary["term_id"], "left")
    entry = F.struct(F.col("term"), F.col("entry.count").alias("count"),
                     F.col("entry.contribution").alias("contribution"))
    # collect_list skips the null of a document without a listed term: its list is empty.
    ranked = F.array_sort(F.collect_list(F.when(F.col("rank").isNotNull(), F.struct("rank", entry.alias("named")))))
    grouped = named.groupBy("doc_id").agg(
        *(F.first(name).alias(name) for name in others if name != "doc_id"),
        F.transform(ranked, lambda r: r["named"]).alias("top_terms"),
    )
    return grouped.select(*predictions.columns).sortWithinPartitions("doc_id")
