"""k-fold selection from per-fold counts against scikit-learn's GridSearchCV on the same folds.

The oracle refits MultinomialNB and ComplementNB(norm=False) on every training split of a
PredefinedSplit built from the same fold function and the same token counts; the code under test
only subtracts counts. Per-fold scores must agree to 1e-12 and the chosen point must be the same.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from selection_oracles import (
    FIT_PRIORS,
    FOLDS,
    MODEL_TYPES,
    corpus_matrix,
    fold_counts,
    our_table,
    sklearn_search,
)
from sklearn.naive_bayes import MultinomialNB

from nbknn import contract
from nbknn.naive_bayes.selection import FoldCounts, FoldTally, grid_points, selection_table, tally_fold

SCORERS = {"f1_macro": "f1_macro", "accuracy": "accuracy", "log_loss": "neg_log_loss"}


@pytest.fixture(scope="module")
def r8(corpus):
    return corpus_matrix(corpus("reuters-r8", "train"))


@pytest.fixture(scope="module")
def r52(corpus):
    return corpus_matrix(corpus("reuters-r52", "train"))


def assert_same_as_sklearn(table, search, metrics):
    results = search.cv_results_
    assert len(table["points"]) == len(results["params"])
    for g, (row, params) in enumerate(zip(table["points"], results["params"])):
        expected_type = "multinomial" if isinstance(params["nb"], MultinomialNB) else "complement"
        assert (row["model_type"], row["alpha"], row["fit_prior"]) == (
            expected_type, params["nb__alpha"], params["nb__fit_prior"]
        )
        for metric in metrics:
            sign = -1.0 if metric == "log_loss" else 1.0
            theirs = [sign * results[f"split{f}_test_{metric}"][g] for f in range(FOLDS)]
            np.testing.assert_allclose(row[f"fold_{metric}"], theirs, rtol=0, atol=1e-12, err_msg=f"{metric} at {row}")


def test_r8_every_fold_and_metric_equals_grid_search(r8):
    folds, X, y = r8
    search = sklearn_search(folds, X, y, SCORERS, refit="f1_macro")
    table = our_table(folds, X, y, "f1_macro")
    assert_same_as_sklearn(table, search, SCORERS)
    assert table["best_index"] == search.best_index_
    # GridSearchCV's best_index_ when refitting on another metric: the first point ranked 1.
    for metric in ("accuracy", "log_loss"):
        ranks = search.cv_results_[f"rank_test_{metric}"]
        assert our_table(folds, X, y, metric)["best_index"] == int(np.argmin(ranks)), metric


def test_r8_sparse_weights_score_as_dense_ones_and_sklearn(r8, monkeypatch):
    """Models above DENSE_WEIGHTS classes x terms are scored with a sparse product: same scores."""
    from nbknn.naive_bayes import selection

    folds, X, y = r8
    dense = our_table(folds, X, y, "f1_macro", alphas=[0.01, 1.0])
    monkeypatch.setattr(selection, "DENSE_WEIGHTS", 0)
    sparse = our_table(folds, X, y, "f1_macro", alphas=[0.01, 1.0])
    search = sklearn_search(folds, X, y, SCORERS, refit="f1_macro", alphas=[0.01, 1.0])
    assert_same_as_sklearn(sparse, search, SCORERS)
    assert_same_as_sklearn(dense, search, SCORERS)
    assert sparse["best_index"] == dense["best_index"] == search.best_index_


def test_r52_classes_missing_from_training_folds_score_as_in_sklearn(r52):
    """R52 has classes with one or two documents: some training splits lack them, so the held-out
    model must not know them (scikit-learn's classes_ do not hold them). Log-loss is undefined
    there for scikit-learn (a true label outside classes_), so F1 and accuracy are compared."""
    folds, X, y = r52
    classes = int(y.max()) + 1
    missing = [f for f in range(FOLDS) if (np.bincount(y[folds != f], minlength=classes) == 0).any()]
    assert missing, "the test needs a training split without some class"
    search = sklearn_search(folds, X, y, {"f1_macro": "f1_macro", "accuracy": "accuracy"}, refit="f1_macro",
                            alphas=[0.1, 1.0])
    table = our_table(folds, X, y, "f1_macro", alphas=[0.1, 1.0])
    assert_same_as_sklearn(table, search, ["f1_macro", "accuracy"])
    assert table["best_index"] == search.best_index_


def test_tallies_add_up_over_batches(r8):
    """Scoring a fold in two batches and adding the tallies gives the one-batch tally."""
    folds, X, y = r8
    counts = fold_counts(folds, X, y)
    points = grid_points(MODEL_TYPES, [0.1], FIT_PRIORS)
    Xf, yf = X[folds == 0], y[folds == 0]
    half = yf.shape[0] // 2
    whole = tally_fold(counts, 0, Xf, yf, points)
    parts = tally_fold(counts, 0, Xf[:half], yf[:half], points) + tally_fold(counts, 0, Xf[half:], yf[half:], points)
    for name in ("tp", "fp", "fn"):
        np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name))
    np.testing.assert_allclose(parts.log_loss_sum, whole.log_loss_sum, rtol=1e-12)
    assert parts.documents == whole.documents


def test_empty_fold_tally_and_bad_grid():
    assert FoldTally.empty(3, 2).tp.shape == (3, 2)
    with pytest.raises(ValueError, match="model type"):
        grid_points(["bernoulli"], [1.0], [True])
    with pytest.raises(ValueError, match="alphas"):
        grid_points(["multinomial"], [0.0], [True])


def test_fold_of_is_stable_and_spread():
    """The fold is fixed by the id's bytes (pinned values), and ids spread over the folds."""
    assert [contract.fold_of(f"doc-{i}", 5) for i in range(8)] == [2, 2, 4, 0, 2, 3, 4, 1]
    sizes = np.bincount([contract.fold_of(f"doc-{i}", 5) for i in range(5000)], minlength=5)
    assert sizes.min() > 900


def test_class_absent_from_training_split_is_never_predicted():
    """Class 2 lives in fold 1 only. Its held-out documents use a term no other class has, on
    which an empty class (uniform smoothed weights) would win: the held-out model must not
    know class 2 at all, as scikit-learn's does not."""
    X = sp.csr_array(np.array([[5, 0, 0], [0, 5, 0], [4, 1, 0], [1, 4, 0], [0, 0, 3], [0, 0, 4], [3, 0, 0], [0, 3, 0]]))
    y = np.array([0, 1, 0, 1, 2, 2, 0, 1])
    folds = np.array([0, 0, 1, 1, 1, 1, 2, 2])
    counts = FoldCounts(
        np.stack([np.bincount(y[folds == f], minlength=3) for f in range(3)]),
        [sp.csr_array(np.stack([X[folds == f].toarray()[y[folds == f] == c].sum(axis=0) for c in range(3)]))
         for f in range(3)],
    )
    points = grid_points(MODEL_TYPES, [1.0], FIT_PRIORS)
    table = selection_table([tally_fold(counts, f, X[folds == f], y[folds == f], points) for f in range(3)], points,
                            "accuracy")
    search = sklearn_search(folds, X, y, {"f1_macro": "f1_macro", "accuracy": "accuracy"}, refit="accuracy",
                            alphas=[1.0])
    for g, row in enumerate(table["points"]):
        for metric in ("f1_macro", "accuracy"):
            theirs = [search.cv_results_[f"split{f}_test_{metric}"][g] for f in range(3)]
            np.testing.assert_allclose(row[f"fold_{metric}"], theirs, rtol=0, atol=1e-12, err_msg=f"{metric} {row}")


def test_publishing_a_selection_uses_the_chosen_point_and_keeps_the_table(tmp_path):
    """nb_train's publish step with selection: the manifest's model is the chosen point (not the
    model_type/alpha/fit_prior it was given) and its ``selection`` holds the whole table."""
    import json

    from test_model_publish import arguments, stage_model

    from nbknn_airflow.model_publish import publish_model

    points = grid_points(["multinomial", "complement"], [0.1, 1.0], [True])
    counts = FoldCounts(np.array([[2, 1], [1, 2]]), [sp.csr_array(np.array([[3, 0, 1], [0, 2, 2]]))] * 2)
    X = sp.csr_array(np.array([[2, 0, 1], [0, 1, 1], [1, 0, 0]]))
    tallies = [tally_fold(counts, f, X, np.array([0, 1, 0]), points) for f in range(2)]
    table = selection_table(tallies, points, "log_loss")
    staging = stage_model(tmp_path)
    report = {"page": "report/report.html", "top_terms": {"a": ["x"], "b": ["y"]}}
    (staging / "_work" / "summaries" / "selection.json").write_text(json.dumps({"job": "selection", **table,
                                                                                "fold_documents": [3, 3],
                                                                                "report": report}))
    manifest = publish_model(**arguments(tmp_path.as_uri(), model_type="multinomial", alpha=0.5, selection=True))
    best = table["best"]
    assert manifest["model"] == {"type": best["model_type"], "alpha": best["alpha"], "fit_prior": best["fit_prior"]}
    assert manifest["selection"]["points"] == table["points"]
    assert manifest["selection"]["metric"] == "log_loss"
    assert manifest["selection"]["report"] == report
    assert table["best_index"] == int(np.argmin([row["mean_log_loss"] for row in table["points"]]))
