"""Test-side helpers of the selection tests: the same folds and token counts as scikit-learn sees."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.model_selection import GridSearchCV, PredefinedSplit
from sklearn.naive_bayes import ComplementNB, MultinomialNB
from sklearn.pipeline import Pipeline

from helpers import project_vectorizer
from nbknn import contract
from nbknn.naive_bayes.selection import FoldCounts, grid_points, selection_table, tally_fold

FOLDS = 5
ALPHAS = [0.01, 0.1, 0.5, 1.0]
MODEL_TYPES = ["multinomial", "complement"]
FIT_PRIORS = [True, False]


def corpus_matrix(docs):
    """(folds, X, y): the project's fold of each id, the count matrix, class ids in sorted label order."""
    vectorizer = project_vectorizer()
    X = sp.csr_array(vectorizer.fit_transform([d["text"] for d in docs]))
    labels = np.array([d["label"] for d in docs])
    _, y = np.unique(labels, return_inverse=True)
    folds = np.array([contract.fold_of(d["id"], FOLDS) for d in docs])
    return folds, X, y


def fold_counts(folds, X, y) -> FoldCounts:
    classes = int(y.max()) + 1
    doc_counts = np.stack([np.bincount(y[folds == f], minlength=classes) for f in range(FOLDS)])
    matrices = []
    for f in range(FOLDS):
        member = sp.csr_array((np.ones(int((folds == f).sum())), (y[folds == f], np.arange(int((folds == f).sum())))),
                              shape=(classes, int((folds == f).sum())))
        matrices.append(member @ X[folds == f])
    return FoldCounts(doc_counts, matrices)


def our_table(folds, X, y, metric, alphas=ALPHAS):
    counts = fold_counts(folds, X, y)
    points = grid_points(MODEL_TYPES, alphas, FIT_PRIORS)
    tallies = [tally_fold(counts, f, X[folds == f], y[folds == f], points) for f in range(FOLDS)]
    return selection_table(tallies, points, metric)


def class_top_terms(docs: list, alpha: float, top: int = 10) -> dict[str, list[str]]:
    """Each class's top terms of the model report, from scikit-learn: MultinomialNB fitted on two
    "documents", the class's counts and all other classes' counts summed, gives the ratio as
    ``feature_log_prob_[0] - feature_log_prob_[1]``; the class's seen terms of largest ratio, ties
    to the first in sorted order."""
    vectorizer = project_vectorizer()
    X = vectorizer.fit_transform([d["text"] for d in docs])
    labels = np.array([d["label"] for d in docs])
    names = vectorizer.get_feature_names_out()
    total = np.asarray(X.sum(axis=0)).ravel()
    expected = {}
    for label in sorted(set(labels)):
        inside = np.asarray(X[labels == label].sum(axis=0)).ravel()
        nb = MultinomialNB(alpha=alpha).fit(np.stack([inside, total - inside]), ["in", "rest"])
        ratio = nb.feature_log_prob_[0] - nb.feature_log_prob_[1]
        seen = np.flatnonzero(inside)
        expected[label] = [str(names[i]) for i in seen[np.lexsort((seen, -ratio[seen]))][:top]]
    return expected


def check_top_terms_up_to_ties(got: dict, docs: list, alpha: float, top: int = 10, tolerance: float = 1e-9) -> None:
    """``got`` (label: terms) are each class's ``top`` terms of largest ratio, largest first, as
    :func:`class_top_terms` computes them, except that terms whose ratios differ by less than
    ``tolerance`` may come in either order: with integer counts and alpha = 1 different counts
    often give mathematically equal ratios, which two float computations may round apart."""
    vectorizer = project_vectorizer()
    X = vectorizer.fit_transform([d["text"] for d in docs])
    labels = np.array([d["label"] for d in docs])
    index = {str(name): i for i, name in enumerate(vectorizer.get_feature_names_out())}
    total = np.asarray(X.sum(axis=0)).ravel()
    assert sorted(got) == sorted(set(labels))
    for label, terms in got.items():
        inside = np.asarray(X[labels == label].sum(axis=0)).ravel()
        nb = MultinomialNB(alpha=alpha).fit(np.stack([inside, total - inside]), ["in", "rest"])
        ratio = nb.feature_log_prob_[0] - nb.feature_log_prob_[1]
        seen = set(np.flatnonzero(inside).tolist())
        listed = [index[t] for t in terms]
        assert len(listed) == len(set(listed)) == min(top, len(seen)) and set(listed) <= seen, label
        assert all(ratio[a] >= ratio[b] - tolerance for a, b in zip(listed, listed[1:])), label
        left_out = seen - set(listed)
        assert not left_out or max(ratio[list(left_out)]) <= ratio[listed[-1]] + tolerance, label


def sklearn_search(folds, X, y, scoring, refit, alphas=ALPHAS, fit_priors=FIT_PRIORS):
    """scikit-learn's GridSearchCV over MultinomialNB and ComplementNB(norm=False) (the grid's model
    types, in its order) with a PredefinedSplit of ``folds``, fitted on ``X``, ``y``."""
    grid = [
        {"nb": [estimator], "nb__alpha": alphas, "nb__fit_prior": fit_priors}
        for estimator in (MultinomialNB(), ComplementNB(norm=False))
    ]
    search = GridSearchCV(
        Pipeline([("nb", MultinomialNB())]), grid, cv=PredefinedSplit(folds), scoring=scoring, refit=refit,
        error_score="raise",
    )
    return search.fit(X, y)


def chosen_point(search) -> dict:
    """GridSearchCV's best parameters as a selection summary's ``best``."""
    best = search.best_params_
    return {
        "model_type": "multinomial" if isinstance(best["nb"], MultinomialNB) else "complement",
        "alpha": best["nb__alpha"],
        "fit_prior": best["nb__fit_prior"],
    }


def check_equals_grid_search(summary: dict, folds, X, y) -> None:
    """The selection summary's per-fold F1 and accuracy (1e-12), best index and chosen point are
    scikit-learn's GridSearchCV with a PredefinedSplit of the same folds over the default grid."""
    search = sklearn_search(folds, X, y, {"f1_macro": "f1_macro", "accuracy": "accuracy"}, refit="f1_macro")
    for g, row in enumerate(summary["points"]):
        for metric in ("f1_macro", "accuracy"):
            theirs = [search.cv_results_[f"split{f}_test_{metric}"][g] for f in range(FOLDS)]
            np.testing.assert_allclose(row[f"fold_{metric}"], theirs, rtol=0, atol=1e-12)
    assert summary["best_index"] == search.best_index_
    assert summary["best"] == chosen_point(search)
