"""Sharded Naive Bayes scoring against scikit-learn's MultinomialNB and ComplementNB(norm=False).

The reference is always scikit-learn fitted on the same count matrix, never the code under test.
"""

from __future__ import annotations

import itertools
import pickle
from functools import reduce

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.naive_bayes import ComplementNB, MultinomialNB

from nb_oracles import (
    combine_shard_results,
    finalize_partial,
    merge_partials,
    merge_shard_results,
    to_doc_partials,
)
from nbknn.naive_bayes import scoring
from nbknn.naive_bayes.scoring import (
    complement_term_base,
    entry_count,
    load_shard_model,
    model_nbytes,
    score_batch,
    shard_result,
)

N_TERMS = 2000
N_CLASSES = 12
# Terms no training document uses (they appear in test documents only).
UNSEEN_TERMS = np.arange(1990, N_TERMS)
# The last class only ever uses these few terms.
NARROW_CLASS, NARROW_TERMS = N_CLASSES - 1, np.arange(20)
TOP_N = 5
# Joint log-likelihoods are ~-1e2..-1e3; sklearn sums the same terms in another order.
JLL_RTOL = 1e-12
PROBA_ATOL = 1e-9

CONFIGS = [
    ("multinomial", 1.0, True),
    ("multinomial", 1.0, False),
    ("multinomial", 0.1, True),
    ("multinomial", 0.1, False),
    ("complement", 1.0, True),
    ("complement", 1.0, False),
    ("complement", 0.1, True),
    ("complement", 0.1, False),
]
# Uneven shard sizes; the classes are assigned in a shuffled order, so shards are not ranges.
SHARD_SIZES = {1: [12], 3: [2, 7, 3], 7: [1, 1, 2, 3, 1, 3, 1]}


# ---------------------------------------------------------------------------------------------
# Data and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, params=["dense-weights", "sparse-weights"])
def weights_form(request, monkeypatch):
    """Every test runs with the shards' weights multiplied as a dense copy (what fits the budget)
    and in their compact sparse form (what does not)."""
    if request.param == "sparse-weights":
        monkeypatch.setattr(scoring, "DENSE_WEIGHTS_BYTES", 0)
    return request.param


def _class_term_distributions(rng):
    weights = rng.gamma(0.3, size=(N_CLASSES, N_TERMS))
    weights[:, UNSEEN_TERMS] = 0.0
    narrow = np.zeros(N_TERMS)
    narrow[NARROW_TERMS] = rng.gamma(1.0, size=NARROW_TERMS.size)
    weights[NARROW_CLASS] = narrow
    return weights / weights.sum(axis=1, keepdims=True)


def _documents(rng, labels, distributions, noise_terms, n_zero):
    background = np.zeros(N_TERMS)
    background[noise_terms] = 1.0 / noise_terms.size
    rows = []
    for label in labels:
        mix = distributions[label] if label == NARROW_CLASS else 0.8 * distributions[label] + 0.2 * background
        rows.append(rng.multinomial(rng.integers(5, 60), mix))
    X = np.array(rows)
    X[rng.choice(len(labels), size=n_zero, replace=False)] = 0
    return sp.csr_matrix(X)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(20240611)
    distributions = _class_term_distributions(rng)
    class_p = rng.dirichlet(np.full(N_CLASSES, 2.0))
    y_train = np.concatenate([np.arange(N_CLASSES), rng.choice(N_CLASSES, size=300 - N_CLASSES, p=class_p)])
    seen_terms = np.arange(UNSEEN_TERMS[0])
    X_train = _documents(rng, y_train, distributions, seen_terms, n_zero=5)
    y_test = rng.choice(N_CLASSES, size=160)
    X_test = _documents(rng, y_test, distributions, np.arange(N_TERMS), n_zero=10)
    return X_train, y_train, X_test


def counts_of(X, y, n_classes):
    """The model's counts as training produces them, from a document-term matrix and labels."""
    Y = sp.csr_matrix((np.ones(len(y)), (np.arange(len(y)), y)), shape=(len(y), n_classes))
    feature_count = (Y.T @ X).toarray()
    entry_class, entry_term = np.nonzero(feature_count)
    return {
        "doc_count_all": np.bincount(y, minlength=n_classes),
        "term_total": feature_count.sum(axis=1),
        "term_total_all": feature_count.sum(axis=0),
        "entry_class": entry_class,
        "entry_term": entry_term,
        "entry_count": feature_count[entry_class, entry_term],
    }


def load_shard(counts, class_ids, model_type, alpha, fit_prior, **kwargs):
    """Load one shard, giving it only its own classes' entries (as a shard would be stored)."""
    mine = np.isin(counts["entry_class"], class_ids)
    return load_shard_model(
        class_ids=np.sort(class_ids),
        doc_count_all=counts["doc_count_all"],
        term_total=counts["term_total"],
        entry_class=counts["entry_class"][mine],
        entry_term=counts["entry_term"][mine],
        entry_count=counts["entry_count"][mine],
        vocabulary_size=N_TERMS,
        model_type=model_type,
        alpha=alpha,
        fit_prior=fit_prior,
        term_total_all=counts["term_total_all"],
        **kwargs,
    )


def shard_classes(n_shards, seed=7):
    order = np.random.default_rng(seed).permutation(N_CLASSES)
    cuts = np.cumsum(SHARD_SIZES[n_shards])[:-1]
    return [np.sort(part) for part in np.split(order, cuts)]


def sklearn_model(model_type, alpha, fit_prior):
    if model_type == "multinomial":
        return MultinomialNB(alpha=alpha, fit_prior=fit_prior)
    return ComplementNB(alpha=alpha, fit_prior=fit_prior, norm=False)


def sklearn_top(jll, top_n):
    """Top classes by descending score, ties toward the lower class id (numpy's argmax order)."""
    return np.argsort(-jll, axis=1, kind="stable")[:, :top_n]


def shard_results(counts, X, classes_per_shard, config, top_n=TOP_N):
    return [shard_result(load_shard(counts, ids, *config), X, top_n=top_n) for ids in classes_per_shard]


# ---------------------------------------------------------------------------------------------
# Agreement with scikit-learn
# ---------------------------------------------------------------------------------------------


def test_data_has_the_edge_cases(data):
    X_train, y_train, X_test = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    assert (np.diff(X_train.indptr) == 0).sum() == 5
    assert (np.diff(X_test.indptr) == 0).sum() == 10
    assert X_test[:, UNSEEN_TERMS].nnz > 0
    assert np.all(counts["term_total_all"][UNSEEN_TERMS] == 0)
    narrow_terms = counts["entry_term"][counts["entry_class"] == NARROW_CLASS]
    assert 0 < narrow_terms.size <= NARROW_TERMS.size


@pytest.mark.parametrize("n_shards", sorted(SHARD_SIZES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-a{c[1]}-prior{c[2]}")
def test_sharded_prediction_matches_sklearn(data, config, n_shards):
    X_train, y_train, X_test = data
    clf = sklearn_model(*config).fit(X_train, y_train)
    counts = counts_of(X_train, y_train, N_CLASSES)

    results = shard_results(counts, X_test, shard_classes(n_shards), config)
    prediction = combine_shard_results(results, top_n=TOP_N)

    proba = clf.predict_proba(X_test)
    np.testing.assert_array_equal(prediction.class_id, clf.predict(X_test))
    np.testing.assert_allclose(prediction.probability, proba.max(axis=1), rtol=0, atol=PROBA_ATOL)
    expected_top = sklearn_top(clf.predict_joint_log_proba(X_test), TOP_N)
    np.testing.assert_array_equal(prediction.top_classes, expected_top)
    np.testing.assert_allclose(
        prediction.top_probabilities, np.take_along_axis(proba, expected_top, axis=1), rtol=0, atol=PROBA_ATOL
    )


@pytest.mark.parametrize("max_matrix_bytes", [1, 8 * N_CLASSES * 7, 8 * N_CLASSES * 1000])
def test_scoring_in_row_groups_equals_sklearn(data, max_matrix_bytes):
    """A score-matrix budget of one row, of 7 rows (160 documents: a short last group) or above the
    batch gives scikit-learn's answers, top lists and probabilities, bit for bit the same each way."""
    X_train, y_train, X_test = data
    config = CONFIGS[0]
    clf = sklearn_model(*config).fit(X_train, y_train)
    model = load_shard(counts_of(X_train, y_train, N_CLASSES), np.arange(N_CLASSES), *config)
    result = shard_result(model, X_test, top_n=TOP_N, max_matrix_bytes=max_matrix_bytes)
    whole = shard_result(model, X_test, top_n=TOP_N, max_matrix_bytes=1 << 40)
    for field in ("best_class", "best_score", "log_sum_exp", "top_classes", "top_scores"):
        np.testing.assert_array_equal(getattr(result, field), getattr(whole, field))
    prediction = combine_shard_results([result], top_n=TOP_N)
    np.testing.assert_array_equal(prediction.class_id, clf.predict(X_test))
    np.testing.assert_allclose(prediction.probability, clf.predict_proba(X_test).max(axis=1), rtol=0, atol=PROBA_ATOL)
    np.testing.assert_array_equal(prediction.top_classes, sklearn_top(clf.predict_joint_log_proba(X_test), TOP_N))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-a{c[1]}-prior{c[2]}")
def test_shard_scores_are_sklearn_joint_log_likelihoods(data, config):
    X_train, y_train, X_test = data
    jll = sklearn_model(*config).fit(X_train, y_train).predict_joint_log_proba(X_test)
    counts = counts_of(X_train, y_train, N_CLASSES)
    for class_ids in shard_classes(3):
        scores = score_batch(load_shard(counts, class_ids, *config), X_test)
        np.testing.assert_allclose(scores, jll[:, class_ids], rtol=JLL_RTOL, atol=0)


@pytest.mark.parametrize("config", CONFIGS[::3], ids=lambda c: f"{c[0]}-a{c[1]}-prior{c[2]}")
def test_dense_and_sparse_weights_score_to_the_bit_alike(data, config, monkeypatch):
    """Both products add each document's terms in the same order: the same floats, so the same
    winners and ties whichever form a shard's size picks."""
    X_train, y_train, X_test = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    monkeypatch.setattr(scoring, "DENSE_WEIGHTS_BYTES", N_TERMS * N_CLASSES * 8)
    dense = load_shard(counts, np.arange(N_CLASSES), *config)
    assert dense.dense_diff_t is not None
    monkeypatch.setattr(scoring, "DENSE_WEIGHTS_BYTES", N_TERMS * N_CLASSES * 8 - 1)
    compact = load_shard(counts, np.arange(N_CLASSES), *config)
    assert compact.dense_diff_t is None
    np.testing.assert_array_equal(score_batch(dense, X_test), score_batch(compact, X_test))


def _one_entry_per_token(X, rng):
    """X with each count c of a row split into c entries of 1, the row's entries shuffled: how the
    single pass hands a batch's tokens to scoring."""
    rows, cols = X.nonzero()
    repeats = np.asarray(X[rows, cols]).reshape(-1).astype(np.int64)
    rows, cols = np.repeat(rows, repeats), np.repeat(cols, repeats)
    order = np.lexsort((rng.random(rows.size), rows))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=X.shape[0]))])
    return sp.csr_array((np.ones(rows.size), cols[order], indptr), shape=X.shape)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-a{c[1]}-prior{c[2]}")
def test_a_term_repeated_in_a_row_scores_as_its_summed_count(data, config):
    X_train, y_train, X_test = data
    clf = sklearn_model(*config).fit(X_train, y_train)
    model = load_shard(counts_of(X_train, y_train, N_CLASSES), np.arange(N_CLASSES), *config)
    tokens = _one_entry_per_token(X_test, np.random.default_rng(3))
    assert not tokens.has_canonical_format and tokens.nnz == X_test.sum()
    np.testing.assert_allclose(score_batch(model, tokens), clf.predict_joint_log_proba(X_test), rtol=JLL_RTOL, atol=0)
    prediction = combine_shard_results([shard_result(model, tokens, top_n=TOP_N)], top_n=TOP_N)
    np.testing.assert_array_equal(prediction.class_id, clf.predict(X_test))
    np.testing.assert_array_equal(prediction.top_classes, sklearn_top(clf.predict_joint_log_proba(X_test), TOP_N))


def test_a_broadcast_model_ships_without_its_dense_copy(data, monkeypatch):
    X_train, y_train, X_test = data
    monkeypatch.setattr(scoring, "DENSE_WEIGHTS_BYTES", 64 << 20)
    model = load_shard(counts_of(X_train, y_train, N_CLASSES), np.arange(N_CLASSES), *CONFIGS[0])
    compact = len(pickle.dumps(model))
    before = score_batch(model, X_test)
    assert model.dense_diff_t is not None
    shipped = pickle.dumps(model)
    assert len(shipped) == compact < model.dense_diff_t.nbytes
    np.testing.assert_array_equal(score_batch(pickle.loads(shipped), X_test), before)


@pytest.mark.parametrize("alpha", [1.0, 0.1])
def test_complement_without_term_base_is_offset_by_x_dot_base(data, alpha):
    X_train, y_train, X_test = data
    clf = ComplementNB(alpha=alpha, norm=False).fit(X_train, y_train)
    counts = counts_of(X_train, y_train, N_CLASSES)
    config = ("complement", alpha, True)
    classes_per_shard = shard_classes(3)
    lean = [load_shard(counts, ids, *config, include_term_base=False) for ids in classes_per_shard]

    offset = X_test @ complement_term_base(counts["term_total_all"], alpha)
    for model, ids in zip(lean, classes_per_shard):
        assert model.term_base is None
        scores = score_batch(model, X_test) + offset[:, None]
        np.testing.assert_allclose(scores, clf.predict_joint_log_proba(X_test)[:, ids], rtol=JLL_RTOL, atol=0)
    prediction = combine_shard_results([shard_result(m, X_test) for m in lean])
    np.testing.assert_array_equal(prediction.class_id, clf.predict(X_test))
    np.testing.assert_allclose(prediction.probability, clf.predict_proba(X_test).max(axis=1), atol=PROBA_ATOL)


def test_all_zero_documents_get_the_prior_only_answer(data):
    X_train, y_train, _ = data
    X_zero = sp.csr_matrix((4, N_TERMS))
    counts = counts_of(X_train, y_train, N_CLASSES)
    for config in CONFIGS:
        clf = sklearn_model(*config).fit(X_train, y_train)
        prediction = combine_shard_results(shard_results(counts, X_zero, shard_classes(7), config))
        np.testing.assert_array_equal(prediction.class_id, clf.predict(X_zero))
        np.testing.assert_allclose(prediction.probability, clf.predict_proba(X_zero).max(axis=1), atol=PROBA_ATOL)


# ---------------------------------------------------------------------------------------------
# Ties, one class
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
@pytest.mark.parametrize("first_shard", [[0, 2, 5, 7, 9], [1, 3, 4]])
def test_tied_classes_resolve_to_the_lower_class_id(data, model_type, first_shard):
    X_train, y_train, _ = data
    # Class 2 gets exactly the documents of class 1: identical counts, priors and scores.
    keep = y_train != 2
    X_ones = X_train[y_train == 1]
    X_tied = sp.vstack([X_train[keep], X_ones]).tocsr()
    y_tied = np.concatenate([y_train[keep], np.full(X_ones.shape[0], 2)])
    config = (model_type, 1.0, True)
    clf = sklearn_model(*config).fit(X_tied, y_tied)
    jll = clf.predict_joint_log_proba(X_ones)
    np.testing.assert_array_equal(jll[:, 1], jll[:, 2])
    assert np.any(np.argmax(jll, axis=1) == 1), "the tie must decide some predictions"

    counts = counts_of(X_tied, y_tied, N_CLASSES)
    second_shard = np.setdiff1d(np.arange(N_CLASSES), first_shard)
    for classes_per_shard in ([first_shard, second_shard], [np.arange(N_CLASSES)]):
        prediction = combine_shard_results(
            shard_results(counts, X_ones, classes_per_shard, config), top_n=TOP_N
        )
        np.testing.assert_array_equal(prediction.class_id, clf.predict(X_ones))
        np.testing.assert_array_equal(prediction.class_id, np.argmax(jll, axis=1))
        np.testing.assert_array_equal(prediction.top_classes, sklearn_top(jll, TOP_N))


@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
def test_many_tied_classes_in_one_shard_keep_class_id_order(model_type):
    # 40 classes trained on 8 distinct document sets (class c on set 3c mod 8): every document
    # has groups of 5 interleaved tied classes, which an unstable sort would reorder; all-zero
    # documents (uniform priors) tie all 40.
    rng = np.random.default_rng(5)
    n_classes, n_sets, n_terms = 40, 8, 50
    document_sets = [sp.csr_matrix(rng.poisson(0.5, size=(3, n_terms))) for _ in range(n_sets)]
    X = sp.vstack([document_sets[(3 * c) % n_sets] for c in range(n_classes)]).tocsr()
    y = np.repeat(np.arange(n_classes), 3)
    X_test = sp.vstack([sp.csr_matrix((2, n_terms)), X[:6]]).tocsr()
    clf = sklearn_model(model_type, 1.0, False).fit(X, y)
    jll = clf.predict_joint_log_proba(X_test)
    counts = counts_of(X, y, n_classes)
    model = load_shard_model(
        np.arange(n_classes), counts["doc_count_all"], counts["term_total"], counts["entry_class"],
        counts["entry_term"], counts["entry_count"], n_terms, model_type, 1.0, False,
        term_total_all=counts["term_total_all"],
    )
    assert np.all(jll[2:, 0] == jll[2:, n_sets]), "classes 0 and 8 must tie"
    result = shard_result(model, X_test, top_n=n_classes)
    np.testing.assert_array_equal(result.top_classes, sklearn_top(jll, n_classes))
    np.testing.assert_array_equal(result.best_class, clf.predict(X_test))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-a{c[1]}-prior{c[2]}")
def test_single_class_model_matches_sklearn(data, config):
    X_train, _, X_test = data
    y_one = np.zeros(X_train.shape[0], dtype=np.int64)
    clf = sklearn_model(*config).fit(X_train, y_one)
    assert clf.classes_.tolist() == [0]
    counts = counts_of(X_train, y_one, 1)
    model = load_shard(counts, np.array([0]), *config)

    np.testing.assert_allclose(score_batch(model, X_test), clf.predict_joint_log_proba(X_test), rtol=JLL_RTOL)
    prediction = combine_shard_results([shard_result(model, X_test, top_n=TOP_N)], top_n=TOP_N)
    np.testing.assert_array_equal(prediction.class_id, clf.predict(X_test))
    np.testing.assert_allclose(prediction.probability, clf.predict_proba(X_test)[:, 0], atol=PROBA_ATOL)
    assert prediction.top_classes.shape == (X_test.shape[0], 1)


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
def test_an_entry_costs_at_most_12_bytes(data, model_type):
    X_train, y_train, _ = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    for class_ids in shard_classes(3) + [np.arange(N_CLASSES)]:
        model = load_shard(counts, class_ids, model_type, 1.0, True)
        nbytes = model_nbytes(model)
        n_entries = entry_count(model)
        k = class_ids.size
        assert n_entries == np.isin(counts["entry_class"], class_ids).sum()
        assert nbytes.entries / n_entries <= 12
        assert model.diff.indices.dtype == np.int32 and model.diff.indptr.dtype == np.int32
        # Per class: indptr (int32, k + 1), class ids, prior and default (8 bytes each).
        assert nbytes.per_class == 4 * (k + 1) + 3 * 8 * k
        assert nbytes.per_term == (8 * N_TERMS if model_type == "complement" else 0)
        assert nbytes.total == nbytes.entries + nbytes.per_class + nbytes.per_term


def test_complement_term_base_can_be_left_out_of_the_shard(data):
    X_train, y_train, _ = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    model = load_shard(counts, np.arange(4), "complement", 1.0, True, include_term_base=False)
    assert model_nbytes(model).per_term == 0


# ---------------------------------------------------------------------------------------------
# Merging in any order
# ---------------------------------------------------------------------------------------------


def _assert_same_prediction(a, b):
    np.testing.assert_array_equal(a.class_id, b.class_id)
    np.testing.assert_array_equal(a.top_classes, b.top_classes)
    np.testing.assert_allclose(a.probability, b.probability, rtol=1e-12, atol=0)
    np.testing.assert_allclose(a.top_probabilities, b.top_probabilities, rtol=1e-12, atol=0)


@pytest.mark.parametrize("model_type", ["multinomial", "complement"])
def test_merge_is_order_independent(data, model_type):
    X_train, y_train, X_test = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    results = shard_results(counts, X_test, shard_classes(7), (model_type, 1.0, False))
    reference = combine_shard_results(results, top_n=TOP_N)
    rng = np.random.default_rng(3)
    for _ in range(10):
        permuted = [results[i] for i in rng.permutation(len(results))]
        _assert_same_prediction(combine_shard_results(permuted, top_n=TOP_N), reference)

    def merge(a, b):
        return merge_shard_results(a, b, top_n=TOP_N)

    a, b, c = results[0], results[1], reduce(merge, results[2:])
    left = combine_shard_results([merge(merge(a, b), c)], top_n=TOP_N)
    right = combine_shard_results([merge(a, merge(b, c))], top_n=TOP_N)
    swapped = combine_shard_results([merge(c, merge(b, a))], top_n=TOP_N)
    for other in (left, right, swapped):
        _assert_same_prediction(other, reference)


def test_document_merge_matches_the_array_merge(data):
    X_train, y_train, X_test = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    # Uniform priors: the all-zero documents tie every class, so the tie-breaking is exercised.
    results = shard_results(counts, X_test, shard_classes(7), ("multinomial", 0.1, False))
    reference = combine_shard_results(results, top_n=TOP_N)
    per_shard = [to_doc_partials(r) for r in results]
    rng = np.random.default_rng(11)
    for doc in range(X_test.shape[0]):
        partials = [shard[doc] for shard in per_shard]
        orders = [rng.permutation(len(partials)) for _ in range(3)]
        answers = {
            finalize_partial(reduce(lambda a, b: merge_partials(a, b, TOP_N), [partials[i] for i in order]))
            for order in orders
        }
        for answer in answers:
            assert answer.class_id == reference.class_id[doc]
            assert answer.top_classes == tuple(reference.top_classes[doc])
            np.testing.assert_allclose(answer.probability, reference.probability[doc], rtol=1e-12)
            np.testing.assert_allclose(answer.top_probabilities, reference.top_probabilities[doc], rtol=1e-12)


def test_merge_refuses_a_top_list_too_short_for_top_n(data):
    X_train, y_train, X_test = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    results = shard_results(counts, X_test, shard_classes(3), ("multinomial", 1.0, True), top_n=1)
    with pytest.raises(ValueError, match="keeps 1 top classes, but top_n=3 needs 2"):
        combine_shard_results(results, top_n=3)


# ---------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------


def _valid_arguments(counts):
    return dict(
        class_ids=np.array([0, 1]),
        doc_count_all=counts["doc_count_all"],
        term_total=counts["term_total"],
        entry_class=counts["entry_class"][counts["entry_class"] < 2],
        entry_term=counts["entry_term"][counts["entry_class"] < 2],
        entry_count=counts["entry_count"][counts["entry_class"] < 2],
        vocabulary_size=N_TERMS,
        model_type="complement",
        alpha=1.0,
        fit_prior=True,
        term_total_all=counts["term_total_all"],
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_type": "x"}, r"model_type must be 'multinomial' or 'complement' \(got 'x'\)"),
        ({"alpha": 0.0}, r"alpha must be finite and > 0 \(got 0.0\)"),
        ({"class_ids": np.array([1, 0])}, "class_ids must be strictly ascending"),
        ({"class_ids": np.array([0, 12])}, r"class_ids must be in \[0, 12\)"),
        ({"class_ids": np.array([0])}, "entry_class must be one of the shard's class_ids"),
        ({"term_total_all": None}, "model_type 'complement' needs term_total_all"),
        ({"vocabulary_size": 1000}, r"term_total_all must have vocabulary_size = 1000 entries \(got 2000\)"),
        ({"fit_prior": "yes"}, "fit_prior must be a bool"),
    ],
)
def test_load_refuses_bad_input(data, change, message):
    X_train, y_train, _ = data
    arguments = {**_valid_arguments(counts_of(X_train, y_train, N_CLASSES)), **change}
    with pytest.raises(ValueError, match=message):
        load_shard_model(**arguments)


def test_load_refuses_inconsistent_counts(data):
    X_train, y_train, _ = data
    counts = counts_of(X_train, y_train, N_CLASSES)
    arguments = _valid_arguments(counts)
    with pytest.raises(ValueError, match="must appear once"):
        load_shard_model(**{**arguments, **{
            key: np.concatenate([arguments[key], arguments[key][:1]])
            for key in ("entry_class", "entry_term", "entry_count")
        }})
    term_total = counts["term_total"].copy()
    term_total[1] += 1
    with pytest.raises(ValueError, match="term_total of class 1 is"):
        load_shard_model(**{**arguments, "term_total": term_total, "model_type": "multinomial"})


def test_score_refuses_bad_documents(data):
    X_train, y_train, X_test = data
    model = load_shard(counts_of(X_train, y_train, N_CLASSES), np.arange(3), "multinomial", 1.0, True)
    with pytest.raises(ValueError, match=r"X must have vocabulary_size = 2000 columns \(got shape \(160, 10\)\)"):
        score_batch(model, X_test[:, :10])
    with pytest.raises(ValueError, match="X must be a scipy sparse matrix"):
        score_batch(model, X_test.toarray())
    with pytest.raises(ValueError, match=r"top_n must be an integer >= 0 \(got -1\)"):
        shard_result(model, X_test, top_n=-1)


def test_no_documents_gives_empty_results(data):
    X_train, y_train, _ = data
    model = load_shard(counts_of(X_train, y_train, N_CLASSES), np.arange(3), "complement", 1.0, True)
    prediction = combine_shard_results([shard_result(model, sp.csr_matrix((0, N_TERMS)), top_n=2)], top_n=2)
    assert prediction.class_id.shape == (0,) and prediction.top_classes.shape == (0, 2)


def test_shard_splits_cover_every_class_once():
    # Shard sizes must cover every class exactly once, or the sharded tests would skip classes.
    for n_shards in SHARD_SIZES:
        assert sorted(itertools.chain.from_iterable(shard_classes(n_shards))) == list(range(N_CLASSES))
