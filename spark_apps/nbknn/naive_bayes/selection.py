"""Exact k-fold cross-validation of Naive Bayes models from counts, in numpy/scipy.

Naive Bayes counts are sufficient statistics: with the counts kept per fold, the model trained on
"every fold but f" is the total minus fold f. Every grid point (model type, alpha, fit_prior) is
scored on every held-out fold without counting again.

Inputs, for F folds, C classes and V terms (the model's vocabulary: the same V for every fold, as
scikit-learn sees it when one count matrix over the whole vocabulary is split):

* ``doc_counts`` (F, C): documents of class c in fold f;
* per fold a (C, V) sparse matrix of term counts (:class:`FoldCounts`).

The held-out model of fold f is fitted exactly as scikit-learn 1.9's ``MultinomialNB`` or
``ComplementNB(norm=False)`` fits the training folds' count matrix: a class with no training
document is not one of its classes (it is never predicted, and a uniform prior spreads over the
classes present); the weights are those of :mod:`nbknn.naive_bayes.scoring`, so selection and
prediction compute one model the same way.

Scoring a fold adds up integers per (grid point, class): true positives, false positives, false
negatives; and per grid point the summed log-loss. These tallies add up over batches of documents
(:class:`FoldTally`), so a Spark job can score batches in its tasks and sum the tallies; the
metrics come from the sums (:func:`fold_scores`) exactly as scikit-learn's scorers compute them:
``f1_macro`` averages F1 over the labels present in the fold's true or predicted labels,
``accuracy``, and ``neg_log_loss`` clips probabilities to [eps, 1 - eps].

The grid is ordered as ``GridSearchCV`` orders a list of grids, one per model type, each with the
keys alpha then fit_prior: model type slowest, fit_prior fastest. The chosen point is the first
with the best mean over folds, which is GridSearchCV's ``best_index_``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

import numpy as np
import scipy.sparse as sp
from scipy.special import logsumexp

from nbknn import contract
from nbknn.naive_bayes.scoring import (
    class_log_prior,
    complement_default_log_prob,
    complement_entry_diff,
    complement_term_base,
    multinomial_default_log_prob,
    multinomial_entry_diff,
)

LOG_EPS = float(np.log(np.finfo(np.float64).eps))
#: Largest classes x vocabulary whose held-out term weights :func:`term_scores` lays out dense
#: (8 bytes each); larger models are scored with a sparse product.
DENSE_WEIGHTS = 1 << 22


@dataclass(frozen=True)
class GridPoint:
    model_type: str
    alpha: float
    fit_prior: bool

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "alpha": self.alpha, "fit_prior": self.fit_prior}


def grid_points(model_types, alphas, fit_priors) -> list[GridPoint]:
    """Every grid point, in GridSearchCV's order (model type, then alpha, then fit_prior)."""
    for model_type in model_types:
        if model_type not in contract.MODEL_TYPES:
            raise ValueError(f"model type must be one of {contract.MODEL_TYPES} (got {model_type!r})")
    if not alphas or any(not float(a) > 0 for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of numbers > 0 (got {alphas!r})")
    return [GridPoint(m, float(a), bool(p)) for m, a, p in product(model_types, alphas, fit_priors)]


@dataclass
class FoldCounts:
    """Per-fold counts: ``doc_counts`` (F, C) and ``term_counts``, F sparse (C, V) matrices."""

    doc_counts: np.ndarray
    term_counts: list[sp.csr_array]
    total_docs: np.ndarray = field(init=False)
    total_terms: sp.csr_array = field(init=False)

    def __post_init__(self) -> None:
        self.doc_counts = np.asarray(self.doc_counts, dtype=np.int64)
        if self.doc_counts.ndim != 2 or len(self.term_counts) != self.doc_counts.shape[0]:
            raise ValueError("doc_counts must be (folds, classes) with one term count matrix per fold")
        self.term_counts = [sp.csr_array(m, dtype=np.int64) for m in self.term_counts]
        self.total_docs = self.doc_counts.sum(axis=0)
        total = self.term_counts[0].copy()
        for matrix in self.term_counts[1:]:
            total = total + matrix
        self.total_terms = sp.csr_array(total)

    @classmethod
    def from_entries(cls, doc_counts, fold, class_id, term_id, count, vocabulary_size: int) -> FoldCounts:
        """From (fold, class_id, term_id, count) entries, as the Spark job collects them."""
        doc_counts = np.asarray(doc_counts, dtype=np.int64)
        folds, classes = doc_counts.shape
        fold = np.asarray(fold, dtype=np.int64)
        matrices = [
            sp.csr_array(
                (np.asarray(count)[fold == f], (np.asarray(class_id)[fold == f], np.asarray(term_id)[fold == f])),
                shape=(classes, vocabulary_size),
                dtype=np.int64,
            )
            for f in range(folds)
        ]
        return cls(doc_counts, matrices)

    @property
    def folds(self) -> int:
        return self.doc_counts.shape[0]

    @property
    def classes(self) -> int:
        return self.doc_counts.shape[1]

    @property
    def vocabulary_size(self) -> int:
        return self.total_terms.shape[1]

    def training(self, fold: int) -> tuple[np.ndarray, sp.csr_array]:
        """(doc counts (C,), term counts (C, V)) of every fold but ``fold``: totals minus the fold."""
        terms = sp.csr_array(self.total_terms - self.term_counts[fold])
        terms.eliminate_zeros()
        terms.sort_indices()
        return self.total_docs - self.doc_counts[fold], terms


def class_log_prior_of(docs: np.ndarray, point: GridPoint) -> np.ndarray:
    """(C,) what the held-out model adds to each class's score: its log prior (complement NB:
    none, unless it knows one class only), -inf for a class without a training document."""
    present = docs > 0
    prior = np.full(docs.shape[0], -np.inf)
    if point.model_type == "complement" and present.sum() > 1:
        # ComplementNB's joint log-likelihood adds no prior when it has more than one class.
        prior[present] = 0.0
    else:
        prior[present] = class_log_prior(docs[present].astype(np.float64), point.fit_prior)
    return prior


def term_scores(terms: sp.csr_array, X: sp.csr_array, model_type: str, alpha: float) -> np.ndarray:
    """(n, C) the part of the joint log-likelihoods that the terms give: the same for both
    fit_prior values, so it is computed once per (model type, alpha)."""
    term_total = np.asarray(terms.sum(axis=1), dtype=np.float64).ravel()
    vocabulary_size = terms.shape[1]
    lengths = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    counts = terms.data.astype(np.float64)
    if model_type == "multinomial":
        default = multinomial_default_log_prob(term_total, alpha, vocabulary_size)
        values = multinomial_entry_diff(counts, alpha)
        base = 0.0
    else:
        term_total_all = np.asarray(terms.sum(axis=0), dtype=np.float64).ravel()
        default = complement_default_log_prob(term_total, term_total_all.sum(), alpha, vocabulary_size)
        values = complement_entry_diff(counts, term_total_all[terms.indices], alpha)
        base = (X @ complement_term_base(term_total_all, alpha))[:, None]
    if terms.shape[0] * vocabulary_size <= DENSE_WEIGHTS:
        # A sparse matrix times a dense one is several times faster than a product of two sparse ones.
        weights = np.zeros((vocabulary_size, terms.shape[0]))
        weights[terms.indices, np.repeat(np.arange(terms.shape[0]), np.diff(terms.indptr))] = values
        entries = X @ weights
    else:
        entries = (X @ sp.csr_array((values, terms.indices, terms.indptr), shape=terms.shape).T).toarray()
    return lengths[:, None] * default[None, :] + entries + base


@dataclass
class FoldTally:
    """Additive counts of one fold's scoring for G grid points and C classes."""

    tp: np.ndarray  # (G, C)
    fp: np.ndarray  # (G, C)
    fn: np.ndarray  # (G, C)
    log_loss_sum: np.ndarray  # (G,)
    documents: int

    @classmethod
    def empty(cls, points: int, classes: int) -> FoldTally:
        zeros = np.zeros((points, classes), dtype=np.int64)
        return cls(zeros.copy(), zeros.copy(), zeros.copy(), np.zeros(points), 0)

    def __add__(self, other: FoldTally) -> FoldTally:
        return FoldTally(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.log_loss_sum + other.log_loss_sum,
            self.documents + other.documents,
        )


def tally_fold(counts: FoldCounts, fold: int, X, y, points: list[GridPoint]) -> FoldTally:
    """Score fold ``fold``'s held-out documents (``X`` (n, V) term counts, ``y`` (n,) class ids)
    with the model of the other folds at every grid point."""
    X = sp.csr_array(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    classes = counts.classes
    tally = FoldTally.empty(len(points), classes)
    tally.documents = int(y.shape[0])
    if y.shape[0] == 0:
        return tally
    docs, terms = counts.training(fold)
    true = np.bincount(y, minlength=classes)
    scores: dict[tuple[str, float], np.ndarray] = {}
    for g, point in enumerate(points):
        key = (point.model_type, point.alpha)
        if key not in scores:
            scores = {key: term_scores(terms, X, point.model_type, point.alpha)}  # points come grouped
        jll = class_log_prior_of(docs, point)[None, :] + scores[key]
        predicted = np.argmax(jll, axis=1)
        hits = predicted == y
        tp = np.bincount(y[hits], minlength=classes)
        tally.tp[g] = tp
        tally.fp[g] = np.bincount(predicted, minlength=classes) - tp
        tally.fn[g] = true - tp
        log_proba = jll[np.arange(y.shape[0]), y] - logsumexp(jll, axis=1)
        # scikit-learn's log_loss clips the probability to [eps, 1 - eps].
        tally.log_loss_sum[g] = -np.clip(log_proba, LOG_EPS, np.log1p(-np.finfo(np.float64).eps)).sum()
    return tally


METRICS = contract.SELECTION_METRICS


def fold_scores(tally: FoldTally) -> dict[str, np.ndarray]:
    """(G,) per metric of one fold, as scikit-learn's scorers compute them."""
    present = (tally.tp + tally.fp + tally.fn) > 0
    denominator = 2 * tally.tp + tally.fp + tally.fn
    f1 = np.divide(2 * tally.tp, denominator, out=np.zeros(tally.tp.shape), where=denominator > 0)
    f1_macro = np.array([row[mask].mean() if mask.any() else 0.0 for row, mask in zip(f1, present)])
    n = max(tally.documents, 1)
    return {
        "f1_macro": f1_macro,
        "accuracy": tally.tp.sum(axis=1) / n,
        # Exactly -(neg_log_loss): smaller is better.
        "log_loss": tally.log_loss_sum / n,
    }


def selection_table(tallies: list[FoldTally], points: list[GridPoint], metric: str) -> dict:
    """Every grid point's per-fold and mean scores, and the chosen point (first best mean)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (got {metric!r})")
    per_fold = [fold_scores(t) for t in tallies]
    scores = {name: np.stack([s[name] for s in per_fold], axis=1) for name in METRICS}  # (G, F)
    means = {name: scores[name].mean(axis=1) for name in METRICS}
    objective = -means[metric] if metric == "log_loss" else means[metric]
    best = int(np.argmax(objective))
    rows = [
        {
            **point.to_dict(),
            **{f"mean_{name}": float(means[name][g]) for name in METRICS},
            **{f"fold_{name}": [float(v) for v in scores[name][g]] for name in METRICS},
        }
        for g, point in enumerate(points)
    ]
    return {"metric": metric, "folds": len(tallies), "best_index": best, "best": points[best].to_dict(), "points": rows}
