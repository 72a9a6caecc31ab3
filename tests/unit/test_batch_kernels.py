"""The per-batch kernels behind the fast paths: in-row term counting (prediction), per-batch
(label, term) counting (training) and the blocked kNN kernel on scikit-learn's ``kneighbors``.

Every expectation is computed independently here: ``collections.Counter`` over the token lists,
or scikit-learn's ``pairwise_distances`` with a (distance, id) sort.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import pairwise_distances

from nbknn.knn.kernels import block_topk
from nbknn.naive_bayes import term_counts
from nbknn.naive_bayes.term_counts import batch_class_term_counts
from nbknn.naive_bayes.vectorize import count_known_terms, vocabulary_lookup

TOKENS = [["bb", "aa", "bb", "qq"], [], None, ["zz", "zz", "ünï"], ["x"], ["aa"]]


def _expected_vectors(token_lists, term_id):
    rows = []
    for tokens in token_lists:
        counts = Counter(t for t in tokens or [] if t in term_id)
        ids = sorted(term_id[t] for t in counts)
        by_id = {term_id[t]: c for t, c in counts.items()}
        rows.append((ids, [by_id[i] for i in ids], len(tokens or [])))
    return rows


@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
@pytest.mark.parametrize("term_id", [{"zz": 2, "aa": 0, "bb": 1, "ünï": 3}, {"zz": 9, "aa": 4, "ünï": 1}])
def test_in_row_counting_gives_each_rows_known_term_ids_and_counts(string_type, term_id):
    vocabulary = pa.table(
        {"term_id": pa.array(list(term_id.values()), pa.int32()), "term": pa.array(list(term_id), string_type)}
    )
    tokens = pa.array(TOKENS, pa.list_(string_type))
    # The joined form the JVM hands to Python (each token followed by a space), as text and bytes.
    joined = pa.array([None if row is None else "".join(f"{t} " for t in row) or None for row in TOKENS], string_type)
    binary = pa.large_binary() if string_type == pa.large_string() else pa.binary()
    for array, lists in ((tokens, TOKENS), (tokens.slice(2, 3), TOKENS[2:5]), (joined, TOKENS),
                         (joined.cast(binary), TOKENS), (joined.cast(binary).slice(2, 3), TOKENS[2:5])):
        ids, counts, lengths = count_known_terms(array, vocabulary_lookup(vocabulary))
        got = list(zip(ids.to_pylist(), counts.to_pylist(), lengths.to_pylist()))
        assert got == _expected_vectors(lists, term_id)
        assert ids.type == pa.list_(pa.int32()) and counts.type == pa.list_(pa.int32())


def test_in_row_counting_of_a_batch_without_tokens():
    vocabulary = pa.table({"term_id": pa.array([0], pa.int32()), "term": ["aa"]})
    ids, counts, lengths = count_known_terms(pa.array([[], None], pa.list_(pa.string())), vocabulary_lookup(vocabulary))
    assert ids.to_pylist() == [[], []] and counts.to_pylist() == [[], []] and lengths.to_pylist() == [0, 0]


@pytest.mark.parametrize("dense_keys", [term_counts.DENSE_CLASS_TERM_KEYS, 0])
def test_batch_class_term_counts_counts_occurrences_and_documents_per_label(monkeypatch, dense_keys):
    # dense_keys 0: the (label, term) keys are sorted instead of counted in dense arrays.
    monkeypatch.setattr(term_counts, "DENSE_CLASS_TERM_KEYS", dense_keys)
    labels = ["a", "b", "a", "a", "b", "a"]
    batch = batch_class_term_counts(pa.array(labels), pa.array(TOKENS, pa.list_(pa.large_string())))
    expected: dict = {}
    for label, tokens in zip(labels, TOKENS):
        for term, count in Counter(tokens or []).items():
            total, docs = expected.get((label, term), (0, 0))
            expected[(label, term)] = (total + count, docs + 1)
    got = {(l, t): (c, f) for l, t, c, f in zip(*(column.to_pylist() for column in batch.columns))}
    assert got == expected
    assert batch.schema == term_counts.CLASS_TERMS_ARROW_SCHEMA


def test_batch_class_term_counts_of_documents_without_tokens_and_of_unlabelled_ones():
    empty = batch_class_term_counts(pa.array(["a", "b"]), pa.array([[], None], pa.list_(pa.string())))
    assert empty.num_rows == 0 and empty.schema == term_counts.CLASS_TERMS_ARROW_SCHEMA
    with pytest.raises(ValueError, match="label"):
        batch_class_term_counts(pa.array(["a", None]), pa.array([["x"], ["y"]], pa.list_(pa.string())))


def _reference_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self):
    if metric == "cosine":
        # 1 - x.y / (|x| |y|) as written (1 for a zero vector): exact on these small integers, so
        # mathematically tied distances are tied bit for bit (scikit-learn normalises the rows
        # first, whose rounding splits such ties one way or the other).
        norms = np.sqrt((Q * Q).sum(axis=1))[:, None] * np.sqrt((R * R).sum(axis=1))[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            D = np.where(norms == 0, 1.0, 1.0 - (Q @ R.T) / norms)
    else:
        D = pairwise_distances(Q, R, metric=metric)
    out_ids, out_d = [], []
    for i in range(Q.shape[0]):
        pairs = sorted(
            (D[i, j], ref_ids[j]) for j in range(R.shape[0]) if not (exclude_self and ref_ids[j] == query_ids[i])
        )[:k]
        out_d.append([d for d, _ in pairs])
        out_ids.append([j for _, j in pairs])
    return np.array(out_ids), np.array(out_d)


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "manhattan"])
@pytest.mark.parametrize("exclude_self", [True, False])
@pytest.mark.parametrize("rows", [200, 9])  # the fast path, and a block too small for it (<= k + 2)
@pytest.mark.parametrize("id_kind", ["int", "str"])
def test_block_kernel_equals_the_exact_top_k_with_ties_broken_by_id(metric, exclude_self, rows, id_kind):
    rng = np.random.default_rng(7)
    # Small integer coordinates: many exactly tied distances, which must be resolved by id.
    R = rng.integers(0, 3, size=(rows, 4)).astype(np.float64)
    ref_ids = rng.permutation(10 * rows)[:rows].astype(np.int64)
    if id_kind == "str":
        # "r10" < "r9": string order differs from the numbers' order, and ties must follow it.
        ref_ids = np.array([f"r{i}" for i in ref_ids])
    query_ids, Q = ref_ids[:60], R[:60]
    k = 8
    got, _ = block_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self, 1 << 20)
    want_ids, want_d = _reference_topk(query_ids, Q, ref_ids, R, k, metric, exclude_self)
    np.testing.assert_array_equal(got.ids, want_ids)
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-9, atol=1e-7)


def test_driver_numbering_gives_ranks_in_code_point_order_of_the_kept_terms():
    from nbknn.naive_bayes.vocabulary import numbered_vocabulary_table

    terms = ["t2", "é", "東", "z", "Z", "a", "t10", "ab"]
    totals = [3, 1, 5, 2, 2, 9, 1, 4]
    table = pa.table(
        {"term": pa.array(terms, pa.large_string()), "total_count": totals, "doc_freq": [1] * len(terms)}
    )
    got = numbered_vocabulary_table(table, min_term_count=2)
    kept = sorted(t for t, c in zip(terms, totals) if c >= 2)  # Python sorts by code point
    assert got.column("term").to_pylist() == kept
    assert got.column("term_id").to_pylist() == list(range(len(kept)))
    assert got.column("total_count").to_pylist() == [dict(zip(terms, totals))[t] for t in kept]
