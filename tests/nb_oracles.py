"""Reference implementations of combining shard results, used only by the tests.

The combiner runs in Spark (:mod:`nbknn.naive_bayes.combine`); these oracles compute the same
answer from :class:`nbknn.naive_bayes.scoring.ShardResult` arrays, so the tests can check the
per-shard reduction against scikit-learn and the merge for order independence. Two forms: over
arrays of documents (:func:`combine_shard_results`) and one document at a time in plain Python
values (:func:`merge_partials`); both break ties toward the lower global class id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce
from typing import NamedTuple

import numpy as np
from scipy.special import logsumexp

from nbknn.naive_bayes.scoring import ShardResult
from nbknn.naive_bayes.scoring_checks import check_top_n


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
    top_n = check_top_n(top_n)
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
    top_n = check_top_n(top_n)
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
# One document at a time (plain Python values)
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
    top_n = check_top_n(top_n)
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


def _check_top_width(width: int, n_classes: int, top_n: int) -> None:
    if width < min(top_n, n_classes):
        raise ValueError(
            f"a partial result over {n_classes} classes keeps {width} top classes, "
            f"but top_n={top_n} needs {min(top_n, n_classes)}"
        )
