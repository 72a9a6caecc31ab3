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

Combining shards. :func:`shard_result` reduces a shard's scores per document to its best class,
its log-sum-exp over its classes and an optional top-n; :func:`merge_shard_results` (arrays) and
:func:`merge_partials` (one document, plain Python values, for a Spark ``reduceByKey``) merge two
such partial results; the merge is commutative and associative (up to the rounding of
``logaddexp``). Ties are broken toward the lower global class id everywhere, which is numpy's
argmax order over ascending class ids, as scikit-learn's ``predict`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

MODEL_TYPES = ("multinomial", "complement")

# int32 CSR indices are what keeps an entry at 12 bytes; beyond this they cannot be used.
INT32_LIMIT = np.iinfo(np.int32).max
# Relative tolerance of the consistency checks between stored totals and entry sums: counts may
# be summed in a different order (or as floats) by the training job.
TOTALS_RTOL = 1e-9


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
    _check_model_type(model_type)
    alpha = _check_alpha(alpha)
    if not isinstance(fit_prior, (bool, np.bool_)):
        raise ValueError(f"fit_prior must be a bool (got {fit_prior!r})")
    vocabulary_size = _check_vocabulary_size(vocabulary_size)

    doc_count_all = _as_count_vector(doc_count_all, "doc_count_all")
    n_classes_total = doc_count_all.shape[0]
    if n_classes_total == 0:
        raise ValueError("doc_count_all must have one entry per class (got an empty array)")
    if doc_count_all.sum() <= 0:
        raise ValueError(f"doc_count_all must sum to > 0 (got {doc_count_all.sum()})")
    term_total = _as_count_vector(term_total, "term_total")
    _check_length(term_total, n_classes_total, "term_total", "the number of classes")
    class_ids = _check_class_ids(class_ids, n_classes_total)

    if model_type == "complement":
        if term_total_all is None:
            raise ValueError("model_type 'complement' needs term_total_all (got None)")
        term_total_all = _as_count_vector(term_total_all, "term_total_all")
        _check_length(term_total_all, vocabulary_size, "term_total_all", "vocabulary_size")
        _check_close(
            term_total.sum(), term_total_all.sum(), "sum of term_total", "sum of term_total_all"
        )

    rows, terms, counts = _shard_entries(
        class_ids, entry_class, entry_term, entry_count, vocabulary_size
    )
    shard_term_total = term_total[class_ids]
    entry_sums = np.bincount(rows, weights=counts, minlength=class_ids.shape[0])
    mismatched = np.flatnonzero(~np.isclose(entry_sums, shard_term_total, rtol=TOTALS_RTOL, atol=0))
    if mismatched.size:
        local = mismatched[0]
        raise ValueError(
            f"term_total of class {class_ids[local]} is {shard_term_total[local]} "
            f"but its entries sum to {entry_sums[local]}"
        )

    log_prior = class_log_prior(doc_count_all, fit_prior)[class_ids]
    if model_type == "multinomial":
        default = multinomial_default_log_prob(shard_term_total, alpha, vocabulary_size)
        values = multinomial_entry_diff(counts, alpha)
        term_base = None
    else:
        if n_classes_total != 1:
            # ComplementNB's joint log-likelihood ignores the prior unless there is one class.
            log_prior = np.zeros_like(log_prior)
        default = complement_default_log_prob(
            shard_term_total, term_total_all.sum(), alpha, vocabulary_size
        )
        _check_complement_counts(counts, term_total_all[terms])
        values = complement_entry_diff(counts, term_total_all[terms], alpha)
        term_base = complement_term_base(term_total_all, alpha) if include_term_base else None

    diff = _int32_csr(rows, terms, values, (class_ids.shape[0], vocabulary_size))
    return ShardModel(
        model_type=model_type,
        class_ids=class_ids,
        log_prior=log_prior,
        default_log_prob=default,
        diff=diff,
        term_base=term_base,
    )


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
    alpha = _check_alpha(alpha)
    term_total_all = _as_count_vector(term_total_all, "term_total_all")
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


def score_batch(model: ShardModel, X) -> np.ndarray:
    """Joint log-likelihoods of the documents for the shard's classes.

    Args:
        X: (n, V) scipy sparse matrix/array of non-negative term counts.

    Returns:
        (n, k) float64, column j for global class ``model.class_ids[j]``.
    """
    X = _check_documents(X, model.vocabulary_size)
    doc_length = np.asarray(X.sum(axis=1), dtype=np.float64).reshape(-1)
    seen = (X @ model.diff.T).toarray()
    jll = seen + doc_length[:, None] * model.default_log_prob[None, :] + model.log_prior[None, :]
    if model.term_base is not None:
        jll += (X @ model.term_base)[:, None]
    return jll


def shard_result(model: ShardModel, X, top_n: int = 0) -> ShardResult:
    """Score the documents and reduce the shard's scores per document.

    Args:
        X: (n, V) scipy sparse term counts.
        top_n: keep the shard's best min(top_n, k) classes per document (0: none).

    Returns:
        ShardResult over the shard's k classes.
    """
    top_n = _check_top_n(top_n)
    return result_from_scores(score_batch(model, X), model.class_ids, top_n)


def result_from_scores(jll: np.ndarray, class_ids: np.ndarray, top_n: int = 0) -> ShardResult:
    """Reduce a (n, k) score matrix whose columns are the ascending global ``class_ids`` (k,)."""
    top_n = _check_top_n(top_n)
    n_docs, n_classes = jll.shape
    # argmax returns the first maximum: the lowest class id, since the columns are ascending.
    best = np.argmax(jll, axis=1) if n_docs else np.zeros(0, dtype=np.intp)
    width = min(top_n, n_classes)
    # A stable sort of the negated scores orders ties by column, i.e. by ascending class id.
    top = np.argsort(-jll, axis=1, kind="stable")[:, :width]
    return ShardResult(
        best_class=class_ids[best].astype(np.int64),
        best_score=jll[np.arange(n_docs), best],
        log_sum_exp=logsumexp(jll, axis=1),
        top_classes=class_ids[top].astype(np.int64),
        top_scores=np.take_along_axis(jll, top, axis=1),
        n_classes=n_classes,
    )


# --------------------------------------------------------------------------------------------
# Combining shards: vectorised
# --------------------------------------------------------------------------------------------


class Prediction(NamedTuple):
    """Final per-document answer (n = documents, m = min(top_n, classes)).

    class_id: (n,) int64; probability: (n,) float64 posterior of class_id;
    log_sum_exp: (n,) log of the evidence over all classes; top_classes: (n, m) int64;
    top_probabilities: (n, m) float64 posteriors of top_classes.
    """

    class_id: np.ndarray
    probability: np.ndarray
    log_sum_exp: np.ndarray
    top_classes: np.ndarray
    top_probabilities: np.ndarray


def merge_shard_results(a: ShardResult, b: ShardResult, top_n: int = 0) -> ShardResult:
    """Merge two partial results for the same documents over disjoint class sets.

    Commutative and associative (log_sum_exp up to rounding), so partial results can be reduced
    in any order. Keeps min(top_n, a.n_classes + b.n_classes) top classes.
    """
    top_n = _check_top_n(top_n)
    if a.best_class.shape != b.best_class.shape:
        raise ValueError(
            f"partial results must cover the same documents (got {a.best_class.shape[0]} "
            f"and {b.best_class.shape[0]} documents)"
        )
    _check_top_width(a.top_classes.shape[1], a.n_classes, top_n)
    _check_top_width(b.top_classes.shape[1], b.n_classes, top_n)
    take_a = _first_wins(a.best_score, a.best_class, b.best_score, b.best_class)
    n_classes = a.n_classes + b.n_classes
    top_classes, top_scores = _merge_top(a, b, min(top_n, n_classes))
    return ShardResult(
        best_class=np.where(take_a, a.best_class, b.best_class),
        best_score=np.where(take_a, a.best_score, b.best_score),
        log_sum_exp=np.logaddexp(a.log_sum_exp, b.log_sum_exp),
        top_classes=top_classes,
        top_scores=top_scores,
        n_classes=n_classes,
    )


def finalize(result: ShardResult) -> Prediction:
    """Turn a partial result covering all classes into posteriors: exp(score - log_sum_exp)."""
    with np.errstate(invalid="ignore"):
        # -inf - -inf (no class with a finite score) is nan: no posterior is defined then.
        return Prediction(
            class_id=result.best_class,
            probability=np.exp(result.best_score - result.log_sum_exp),
            log_sum_exp=result.log_sum_exp,
            top_classes=result.top_classes,
            top_probabilities=np.exp(result.top_scores - result.log_sum_exp[:, None]),
        )


def combine_shard_results(results: Sequence[ShardResult], top_n: int = 0) -> Prediction:
    """Combine the shard results of the same documents, one per shard, into the prediction.

    The winner is the best of the shard winners (lowest global class id on ties); its posterior
    is exp(best_score - logsumexp over shards of the shard log-sum-exps).
    """
    top_n = _check_top_n(top_n)
    if len(results) == 0:
        raise ValueError("combine_shard_results needs at least one shard result (got none)")
    merged = reduce(lambda a, b: merge_shard_results(a, b, top_n), results)
    # One logsumexp over all shards rounds less than the chain of pairwise logaddexp.
    total = logsumexp(np.stack([r.log_sum_exp for r in results]), axis=0)
    return finalize(merged._replace(log_sum_exp=total))


def _first_wins(score_a, class_a, score_b, class_b):
    """True where (score_a, class_a) beats (score_b, class_b): higher score, then lower id."""
    return (score_a > score_b) | ((score_a == score_b) & (class_a < class_b))


def _merge_top(a: ShardResult, b: ShardResult, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) merged top classes and scores, by descending score then ascending id."""
    classes = np.concatenate([a.top_classes, b.top_classes], axis=1)
    scores = np.concatenate([a.top_scores, b.top_scores], axis=1)
    order = np.lexsort((classes, -scores), axis=1)[:, :width]
    return np.take_along_axis(classes, order, axis=1), np.take_along_axis(scores, order, axis=1)


# --------------------------------------------------------------------------------------------
# Combining shards: one document at a time (plain Python values, for Spark reduceByKey)
# --------------------------------------------------------------------------------------------


class DocPartial(NamedTuple):
    """A partial result for one document over a set of classes, as plain Python values."""

    best_class: int
    best_score: float
    log_sum_exp: float
    n_classes: int
    top_classes: tuple[int, ...]
    top_scores: tuple[float, ...]


class DocPrediction(NamedTuple):
    """The final answer for one document."""

    class_id: int
    probability: float
    top_classes: tuple[int, ...]
    top_probabilities: tuple[float, ...]


def to_doc_partials(result: ShardResult) -> list[DocPartial]:
    """Split a ShardResult (n documents) into n DocPartial, in document order."""
    best_class = result.best_class.tolist()
    best_score = result.best_score.tolist()
    log_sum_exp = result.log_sum_exp.tolist()
    top_classes = result.top_classes.tolist()
    top_scores = result.top_scores.tolist()
    return [
        DocPartial(
            best_class[i], best_score[i], log_sum_exp[i], result.n_classes,
            tuple(top_classes[i]), tuple(top_scores[i]),
        )
        for i in range(len(best_class))
    ]


def merge_partials(a: DocPartial, b: DocPartial, top_n: int = 0) -> DocPartial:
    """Merge two partial results of one document over disjoint class sets (see merge_shard_results)."""
    top_n = _check_top_n(top_n)
    _check_top_width(len(a.top_classes), a.n_classes, top_n)
    _check_top_width(len(b.top_classes), b.n_classes, top_n)
    winner = a if _first_wins(a.best_score, a.best_class, b.best_score, b.best_class) else b
    n_classes = a.n_classes + b.n_classes
    pairs = sorted(
        zip(a.top_classes + b.top_classes, a.top_scores + b.top_scores),
        key=lambda pair: (-pair[1], pair[0]),
    )[: min(top_n, n_classes)]
    return DocPartial(
        best_class=winner.best_class,
        best_score=winner.best_score,
        log_sum_exp=float(np.logaddexp(a.log_sum_exp, b.log_sum_exp)),
        n_classes=n_classes,
        top_classes=tuple(c for c, _ in pairs),
        top_scores=tuple(s for _, s in pairs),
    )


def finalize_partial(partial: DocPartial) -> DocPrediction:
    """Posteriors of one document's partial result covering all classes."""
    lse = partial.log_sum_exp
    return DocPrediction(
        class_id=partial.best_class,
        probability=_exp_difference(partial.best_score, lse),
        top_classes=partial.top_classes,
        top_probabilities=tuple(_exp_difference(s, lse) for s in partial.top_scores),
    )


def _exp_difference(score: float, lse: float) -> float:
    # -inf - -inf (no class with a finite score) has no posterior.
    return math.nan if lse == -math.inf else math.exp(score - lse)


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def _check_model_type(model_type) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be 'multinomial' or 'complement' (got {model_type!r})")


def _check_alpha(alpha) -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, Real):
        raise ValueError(f"alpha must be a number (got {alpha!r})")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0 (got {alpha!r})")
    return float(alpha)


def _check_top_n(top_n) -> int:
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, Integral) or top_n < 0:
        raise ValueError(f"top_n must be an integer >= 0 (got {top_n!r})")
    return int(top_n)


def _check_top_width(width: int, n_classes: int, top_n: int) -> None:
    if width < min(top_n, n_classes):
        raise ValueError(
            f"a partial result over {n_classes} classes keeps {width} top classes, "
            f"but top_n={top_n} needs {min(top_n, n_classes)}"
        )


def _check_vocabulary_size(vocabulary_size) -> int:
    if isinstance(vocabulary_size, (bool, np.bool_)) or not isinstance(vocabulary_size, Integral):
        raise ValueError(f"vocabulary_size must be an integer (got {vocabulary_size!r})")
    if not 0 < vocabulary_size <= INT32_LIMIT:
        raise ValueError(f"vocabulary_size must be in [1, {INT32_LIMIT}] (got {vocabulary_size})")
    return int(vocabulary_size)


def _as_count_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (got shape {array.shape})")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0 (got min {array.min(initial=0.0)})")
    return array


def _check_length(array: np.ndarray, expected: int, name: str, what: str) -> None:
    if array.shape[0] != expected:
        raise ValueError(f"{name} must have {what} = {expected} entries (got {array.shape[0]})")


def _check_close(got: float, expected: float, got_name: str, expected_name: str) -> None:
    if not np.isclose(got, expected, rtol=TOTALS_RTOL, atol=0):
        raise ValueError(f"{got_name} must equal the {expected_name} = {expected} (got {got})")


def _as_int_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (got shape {array.shape})")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers (got dtype {array.dtype})")
    return array.astype(np.int64)


def _check_class_ids(class_ids, n_classes_total: int) -> np.ndarray:
    class_ids = _as_int_vector(class_ids, "class_ids")
    if class_ids.size == 0:
        raise ValueError("class_ids must list at least one class (got none)")
    if np.any(np.diff(class_ids) <= 0):
        raise ValueError(f"class_ids must be strictly ascending (got {class_ids.tolist()[:20]})")
    if class_ids[0] < 0 or class_ids[-1] >= n_classes_total:
        raise ValueError(
            f"class_ids must be in [0, {n_classes_total}) (got {class_ids[0]}..{class_ids[-1]})"
        )
    return class_ids


def _shard_entries(class_ids, entry_class, entry_term, entry_count, vocabulary_size):
    """Validate the shard's entries; return (local row, term, count), sorted by (row, term)."""
    entry_class = _as_int_vector(entry_class, "entry_class")
    entry_term = _as_int_vector(entry_term, "entry_term")
    counts = _as_count_vector(entry_count, "entry_count")
    if not entry_class.shape == entry_term.shape == counts.shape:
        raise ValueError(
            "entry_class, entry_term and entry_count must have the same length (got "
            f"{entry_class.shape[0]}, {entry_term.shape[0]}, {counts.shape[0]})"
        )
    keep = counts > 0
    entry_class, entry_term, counts = entry_class[keep], entry_term[keep], counts[keep]
    if counts.shape[0] > INT32_LIMIT:
        raise ValueError(f"a shard holds at most {INT32_LIMIT} entries (got {counts.shape[0]})")
    if entry_term.size and (entry_term.min() < 0 or entry_term.max() >= vocabulary_size):
        raise ValueError(
            f"entry_term must be in [0, {vocabulary_size}) "
            f"(got {entry_term.min()}..{entry_term.max()})"
        )
    rows = np.searchsorted(class_ids, entry_class)
    last = class_ids.shape[0] - 1
    foreign = (rows > last) | (class_ids[np.minimum(rows, last)] != entry_class)
    if np.any(foreign):
        raise ValueError(
            f"entry_class must be one of the shard's class_ids (got class {entry_class[foreign][0]})"
        )
    order = np.lexsort((entry_term, rows))
    rows, terms, counts = rows[order], entry_term[order], counts[order]
    repeated = (rows[1:] == rows[:-1]) & (terms[1:] == terms[:-1])
    if np.any(repeated):
        at = np.flatnonzero(repeated)[0]
        raise ValueError(
            f"each (class, term) entry must appear once (got class {class_ids[rows[at]]}, "
            f"term {terms[at]} twice)"
        )
    return rows, terms, counts


def _check_complement_counts(counts, entry_term_total_all) -> None:
    over = counts > entry_term_total_all
    if np.any(over):
        at = np.flatnonzero(over)[0]
        raise ValueError(
            f"an entry's count must be <= its term's total over all classes "
            f"(got count {counts[at]} > term_total_all {entry_term_total_all[at]})"
        )


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


def _check_documents(X, vocabulary_size: int) -> sp.csr_array:
    if not sp.issparse(X):
        raise ValueError(f"X must be a scipy sparse matrix (got {type(X).__name__})")
    if X.ndim != 2 or X.shape[1] != vocabulary_size:
        raise ValueError(
            f"X must have vocabulary_size = {vocabulary_size} columns (got shape {X.shape})"
        )
    X = sp.csr_array(X, dtype=np.float64)
    if X.nnz and (not np.all(np.isfinite(X.data)) or X.data.min() < 0):
        raise ValueError(f"X must hold finite term counts >= 0 (got min {X.data.min()})")
    return X
