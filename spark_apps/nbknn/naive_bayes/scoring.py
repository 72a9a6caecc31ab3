"""Sharded Naive Bayes scoring in numpy/scipy: load a shard from counts, score, combine shards.

A trained model is counts. Global class ids are 0..C-1 (the sorted labels); V is the vocabulary
size; for every class c there is ``doc_count[c]`` and ``term_total[c] = sum_t count[c, t]``, for
every term ``term_total_all[t] = sum_c count[c, t]``, and the non-zero ``count[c, t]`` are stored
as (class, term, count) entries. A shard holds some classes and all of their entries.

Scores are the joint log-likelihoods of scikit-learn 1.9's ``MultinomialNB`` and
``ComplementNB(norm=False)`` fitted on the same count matrix, so ``predict`` / ``predict_proba``
are reproduced exactly (class ids) and to rounding (probabilities).

Compact form of a shard. Every term a class never saw has the same log-weight in that class (up
to a per-term part for complement NB, see below), so a shard stores, per class, that default and,
per seen (class, term) entry, only the *difference* from it, in a CSR matrix (shard classes x V)
with float64 values and int32 column indices: 12 bytes per entry. The score of a document x is

    jll[c] = log_prior[c] + len(x) * default_log_prob[c] + x . diff[c]   (+ x . term_base)

where ``len(x) = sum_t x[t]``. The float64 values are kept (not float32) so the probabilities match
scikit-learn to ~1e-12 relative.

Complement NB. scikit-learn's weight is ``w[c, t] = log(rowsum_c) - log(A[t] + alpha - n[c, t])``
with ``A[t] = term_total_all[t]``, ``n[c, t] = count[c, t]`` and
``rowsum_c = sum_t (A[t] + alpha - n[c, t]) = sum(A) + alpha * V - term_total[c]``. It splits into

    term_base[t]        = -log(A[t] + alpha)                  per term, the same for every class
    default_log_prob[c] =  log(rowsum_c)                      per class, times the document length
    diff[c, t]          = -log1p(-n[c, t] / (A[t] + alpha))   per seen entry (0 where n[c, t] = 0)

``x . term_base`` is a per-document constant shared by all classes of all shards: it changes
neither the argmax nor the posteriors, only the reported log-likelihood values. A shard may hold
it (``include_term_base=True``, the default: V * 8 bytes per shard, accounted as "per term" by
:func:`model_nbytes`, not per entry), or it can be left out (``include_term_base=False``) and, if
absolute scores are needed, ``X @ complement_term_base(term_total_all, alpha)`` computed once
outside the shards and added to every class's score. All shards of one prediction must use the
same choice, since scores from different shards are compared with each other.

Per shard. :func:`shard_result` reduces a shard's scores per document to its best class, its
log-sum-exp over its classes and an optional top-n; the combiner (:mod:`nbknn.naive_bayes.combine`)
merges those of all shards in Spark. Ties are broken toward the lower global class id everywhere,
which is numpy's argmax order over ascending class ids, as scikit-learn's ``predict`` does.
Argument checks live in :mod:`nbknn.naive_bayes.scoring_checks`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from nbknn.naive_bayes.scoring_checks import (
    as_count_vector,
    check_alpha,
    check_complement_counts,
    check_documents,
    check_entry_sums,
    check_fit_prior,
    check_model_type,
    check_top_n,
    check_vocabulary_size,
    checked_class_totals,
    checked_term_total_all,
    shard_entries,
)

# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShardModel:
    """The scoring form of one shard.

    Attributes (k = classes of the shard, V = vocabulary size):
        model_type: "multinomial" or "complement".
        class_ids: (k,) int64, the shard's global class ids, strictly ascending.
        log_prior: (k,) float64, the class log prior as added to the score (complement NB adds
            it only for a one-class model, as scikit-learn does; otherwise zeros).
        default_log_prob: (k,) float64, the per-class weight multiplied by the document length
            (multinomial: the log-probability of an unseen term; complement: log(rowsum_c)).
        diff: (k, V) CSR float64 with int32 indices/indptr, the weight of each seen
            (class, term) entry minus the class's default.
        term_base: (V,) float64 per-term weight shared by all classes (complement NB with
            ``include_term_base=True``), else None.
    """

    model_type: str
    class_ids: np.ndarray
    log_prior: np.ndarray
    default_log_prob: np.ndarray
    diff: sp.csr_array
    term_base: np.ndarray | None

    @property
    def n_classes(self) -> int:
        return int(self.class_ids.shape[0])

    @property
    def vocabulary_size(self) -> int:
        return int(self.diff.shape[1])

    @cached_property
    def dense_diff_t(self) -> np.ndarray | None:
        """``diff.T`` as a dense (V, k) array, made once per process when it fits
        :data:`DENSE_WEIGHTS_BYTES`, else None (never pickled: a broadcast ships the compact form)."""
        if self.vocabulary_size * self.n_classes * 8 > DENSE_WEIGHTS_BYTES:
            return None
        return np.ascontiguousarray(self.diff.T.toarray())

    def __getstate__(self):
        return {key: value for key, value in self.__dict__.items() if key != "dense_diff_t"}


class ModelBytes(NamedTuple):
    """Memory of a :class:`ShardModel`, in bytes, by what it scales with."""

    entries: int  # diff.data + diff.indices: one float64 + one int32 per stored entry
    per_class: int  # diff.indptr, class_ids, log_prior, default_log_prob
    per_term: int  # term_base (complement NB only), V float64

    @property
    def total(self) -> int:
        return self.entries + self.per_class + self.per_term


def load_shard_model(
    class_ids,
    doc_count_all,
    term_total,
    entry_class,
    entry_term,
    entry_count,
    vocabulary_size: int,
    model_type: str,
    alpha: float,
    fit_prior: bool,
    term_total_all=None,
    include_term_base: bool = True,
) -> ShardModel:
    """Build the scoring form of one shard from the model's counts.

    Args (C = classes of the whole model, k = classes of this shard, E = entries, V = vocabulary):
        class_ids: (k,) global class ids of the shard, strictly ascending, in [0, C).
        doc_count_all: (C,) documents per class for ALL classes (gives C and N = sum).
        term_total: (C,) sum of the term counts of each class, for ALL classes (only the
            shard's classes are used, plus their sum over all classes as a check for complement).
        entry_class, entry_term, entry_count: (E,) the shard's non-zero (class, term, count)
            entries; every class must be one of ``class_ids``; zero counts are dropped, a
            (class, term) pair may appear only once.
        vocabulary_size: V.
        model_type: "multinomial" or "complement".
        alpha: additive smoothing, > 0 (alpha = 0 would give log(0) weights).
        fit_prior: learn class priors from ``doc_count_all`` (else uniform 1/C).
        term_total_all: (V,) per-term totals over all classes; required for complement NB.
        include_term_base: complement NB only, keep the per-term weight in the shard (see the
            module docstring); ignored for multinomial.

    Returns:
        ShardModel with k classes.
    """
    check_model_type(model_type)
    alpha = check_alpha(alpha)
    check_fit_prior(fit_prior)
    vocabulary_size = check_vocabulary_size(vocabulary_size)
    doc_count_all, term_total, class_ids = checked_class_totals(doc_count_all, term_total, class_ids)
    if model_type == "complement":
        term_total_all = checked_term_total_all(term_total_all, term_total, vocabulary_size)
    rows, terms, counts = shard_entries(class_ids, entry_class, entry_term, entry_count, vocabulary_size)
    shard_term_total = term_total[class_ids]
    check_entry_sums(rows, counts, shard_term_total, class_ids)

    log_prior = class_log_prior(doc_count_all, fit_prior)[class_ids]
    if model_type == "multinomial":
        default = multinomial_default_log_prob(shard_term_total, alpha, vocabulary_size)
        values = multinomial_entry_diff(counts, alpha)
        term_base = None
    else:
        if doc_count_all.shape[0] != 1:
            # ComplementNB's joint log-likelihood ignores the prior unless there is one class.
            log_prior = np.zeros_like(log_prior)
        default, values, term_base = _complement_weights(
            shard_term_total, terms, counts, term_total_all, alpha, include_term_base
        )
    diff = _int32_csr(rows, terms, values, (class_ids.shape[0], vocabulary_size))
    return ShardModel(
        model_type=model_type,
        class_ids=class_ids,
        log_prior=log_prior,
        default_log_prob=default,
        diff=diff,
        term_base=term_base,
    )


def _complement_weights(shard_term_total, terms, counts, term_total_all, alpha, include_term_base):
    """Complement NB's (default_log_prob, entry diff, term_base or None) of a shard's entries."""
    vocabulary_size = term_total_all.shape[0]
    default = complement_default_log_prob(shard_term_total, term_total_all.sum(), alpha, vocabulary_size)
    check_complement_counts(counts, term_total_all[terms])
    values = complement_entry_diff(counts, term_total_all[terms], alpha)
    term_base = complement_term_base(term_total_all, alpha) if include_term_base else None
    return default, values, term_base


def _int32_csr(rows, terms, values, shape) -> sp.csr_array:
    """(k, V) CSR with int32 indices and indptr from entries sorted by (row, term)."""
    indptr = np.zeros(shape[0] + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    matrix = sp.csr_array(
        (values.astype(np.float64), terms.astype(np.int32), indptr), shape=shape, copy=False
    )
    # scipy chooses the index dtype itself; int32 is what keeps an entry at 12 bytes.
    if matrix.indices.dtype != np.int32 or matrix.indptr.dtype != np.int32:
        matrix.indices = matrix.indices.astype(np.int32)
        matrix.indptr = matrix.indptr.astype(np.int32)
    return matrix


def class_log_prior(doc_count_all: np.ndarray, fit_prior: bool) -> np.ndarray:
    """(C,) class log priors, as scikit-learn's ``_update_class_log_prior`` without class_prior.

    Written as log(n_c) - log(N) (not log(n_c / N)) so the floats are scikit-learn's own: equal
    priors must stay bit-identical for the tie-breaking to agree.
    """
    if not fit_prior:
        return np.full(doc_count_all.shape[0], -np.log(doc_count_all.shape[0]))
    with np.errstate(divide="ignore"):
        # A class with no document gets -inf, as in scikit-learn.
        return np.log(doc_count_all) - np.log(doc_count_all.sum())


def multinomial_default_log_prob(
    term_total: np.ndarray, alpha: float, vocabulary_size: int
) -> np.ndarray:
    """(k,) log P(t | c) of a term class c never saw: log(alpha) - log(term_total[c] + alpha * V)."""
    return np.log(alpha) - np.log(term_total + alpha * vocabulary_size)


def multinomial_entry_diff(counts: np.ndarray, alpha: float) -> np.ndarray:
    """(E,) log(n + alpha) - log(alpha) of seen entries: log1p keeps small n / alpha exact."""
    return np.log1p(counts / alpha)


def complement_default_log_prob(
    term_total: np.ndarray, term_total_sum: float, alpha: float, vocabulary_size: int
) -> np.ndarray:
    """(k,) log of the complement's smoothed row sum: log(sum(A) + alpha * V - term_total[c])."""
    return np.log(term_total_sum + alpha * vocabulary_size - term_total)


def complement_entry_diff(
    counts: np.ndarray, entry_term_total_all: np.ndarray, alpha: float
) -> np.ndarray:
    """(E,) log(A[t] + alpha) - log(A[t] + alpha - n[c, t]) of seen entries, A[t] given per entry.

    Written as -log1p(-n / (A + alpha)), accurate when n is small next to A; n <= A is checked at
    the boundary, so the argument stays in (-1, 0) since alpha > 0.
    """
    return -np.log1p(-counts / (entry_term_total_all + alpha))


def complement_term_base(term_total_all, alpha: float) -> np.ndarray:
    """(V,) the per-term part of complement NB's weights: -log(term_total_all[t] + alpha).

    ``X @ complement_term_base(...)`` is the per-document score offset that a shard loaded with
    ``include_term_base=False`` leaves out.
    """
    alpha = check_alpha(alpha)
    term_total_all = as_count_vector(term_total_all, "term_total_all")
    return -np.log(term_total_all + alpha)


def model_nbytes(model: ShardModel) -> ModelBytes:
    """Bytes held by the model's arrays, split into per-entry, per-class and per-term parts."""
    diff = model.diff
    per_class = diff.indptr.nbytes + model.class_ids.nbytes + model.log_prior.nbytes
    per_class += model.default_log_prob.nbytes
    per_term = 0 if model.term_base is None else model.term_base.nbytes
    entries = diff.data.nbytes + diff.indices.nbytes
    return ModelBytes(entries=entries, per_class=per_class, per_term=per_term)


def entry_count(model: ShardModel) -> int:
    """Number of stored (class, term) entries of the model."""
    return int(model.diff.nnz)


# --------------------------------------------------------------------------------------------
# Scoring one shard
# --------------------------------------------------------------------------------------------


class ShardResult(NamedTuple):
    """Per-document partial result over a set of classes (one shard, or several merged).

    Fields (n = documents, m = min(top_n, n_classes)):
        best_class: (n,) int64 global class id with the highest score (lowest id on ties).
        best_score: (n,) float64 its joint log-likelihood.
        log_sum_exp: (n,) float64 log-sum-exp of the scores over the classes covered.
        top_classes: (n, m) int64 global class ids, by descending score then ascending id.
        top_scores: (n, m) float64 their joint log-likelihoods.
        n_classes: number of classes covered.
    """

    best_class: np.ndarray
    best_score: np.ndarray
    log_sum_exp: np.ndarray
    top_classes: np.ndarray
    top_scores: np.ndarray
    n_classes: int


#: Largest dense copy of a shard's weights (V x k float64) that scoring makes. With it a batch's
#: seen-term scores are one sparse-dense product; the sparse-sparse product builds a sparse
#: result and sorts its rows, 40 % of the Python workers' time at x20. Both add each document's
#: terms in the same order, so their scores are equal to the bit.
DENSE_WEIGHTS_BYTES = 64 << 20


def score_batch(model: ShardModel, X) -> np.ndarray:
    """Joint log-likelihoods of the documents for the shard's classes.

    Args:
        X: (n, V) scipy sparse matrix/array of non-negative term counts; a term may appear more
            than once in a row (its counts add up).

    Returns:
        (n, k) float64, column j for global class ``model.class_ids[j]``.
    """
    X = check_documents(X, model.vocabulary_size)
    doc_length = np.asarray(X.sum(axis=1), dtype=np.float64).reshape(-1)
    dense = model.dense_diff_t
    seen = X @ dense if dense is not None else (X @ model.diff.T).toarray()
    jll = seen + doc_length[:, None] * model.default_log_prob[None, :] + model.log_prior[None, :]
    if model.term_base is not None:
        jll += (X @ model.term_base)[:, None]
    return jll


#: Largest dense score matrix (documents x classes, float64) that scoring holds at once: a batch
#: of 10 000 documents against 10 000 classes would otherwise need 800 MB in one Python worker.
SCORE_MATRIX_BYTES = 64 << 20


def shard_result(model: ShardModel, X, top_n: int = 0, max_matrix_bytes: int = SCORE_MATRIX_BYTES) -> ShardResult:
    """Score the documents and reduce the shard's scores per document.

    Args:
        X: (n, V) scipy sparse term counts.
        top_n: keep the shard's best min(top_n, k) classes per document (0: none).
        max_matrix_bytes: the documents are scored in groups of rows whose (rows, k) float64
            score matrix stays within this many bytes (at least one row per group).

    Returns:
        ShardResult over the shard's k classes.
    """
    top_n = check_top_n(top_n)
    rows = max(1, max_matrix_bytes // (8 * max(model.n_classes, 1)))
    if X.shape[0] <= rows:
        return result_from_scores(score_batch(model, X), model.class_ids, top_n)
    X = sp.csr_array(X)
    parts = [result_from_scores(score_batch(model, X[start:start + rows]), model.class_ids, top_n)
             for start in range(0, X.shape[0], rows)]
    return ShardResult(*(np.concatenate([getattr(p, field) for p in parts]) for field in ShardResult._fields[:-1]),
                       n_classes=model.n_classes)


def result_from_scores(jll: np.ndarray, class_ids: np.ndarray, top_n: int = 0) -> ShardResult:
    """Reduce a (n, k) score matrix whose columns are the ascending global ``class_ids`` (k,)."""
    top_n = check_top_n(top_n)
    n_docs, n_classes = jll.shape
    # argmax returns the first maximum: the lowest class id, since the columns are ascending.
    best = np.argmax(jll, axis=1) if n_docs else np.zeros(0, dtype=np.intp)
    width = min(top_n, n_classes)
    # A stable sort of the negated scores orders ties by column, i.e. by ascending class id.
    top = np.argsort(-jll, axis=1, kind="stable")[:, :width] if width else np.zeros((n_docs, 0), dtype=np.intp)
    return ShardResult(
        best_class=class_ids[best].astype(np.int64),
        best_score=jll[np.arange(n_docs), best],
        log_sum_exp=logsumexp(jll, axis=1),
        top_classes=class_ids[top].astype(np.int64),
        top_scores=np.take_along_axis(jll, top, axis=1),
        n_classes=n_classes,
    )
