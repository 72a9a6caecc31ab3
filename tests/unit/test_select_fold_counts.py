"""The selection job's per-fold counting without Spark: the tasks' partial counts
(``PartialFoldCounts``) summed on the driver (``summed_partial_counts``) against per-fold counts
built directly from the same count matrix (tests/selection_oracles.py), for both ways of adding
up keys (dense counters and sorting)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from selection_oracles import FOLDS, corpus_matrix, fold_counts

from nbknn.inputs.documents import InputError
from nbknn.naive_bayes import select_job


@pytest.fixture(scope="module")
def r8(corpus):
    return corpus_matrix(corpus("reuters-r8", "train"))


def vector_batch(X, y, folds, source, class_ids=None) -> pa.RecordBatch:
    """Rows (source, fold, class_id, term_ids, counts) as the job's cached vectors hold them."""
    offsets = pa.array(X.indptr.astype(np.int32))
    return pa.RecordBatch.from_pydict({
        "source": pa.array(np.full(X.shape[0], source, dtype=np.int32)),
        "fold": pa.array(folds.astype(np.int32)),
        "class_id": pa.array(y.astype(np.int32)) if class_ids is None else class_ids,
        "term_ids": pa.ListArray.from_arrays(offsets, pa.array(X.indices.astype(np.int32))),
        "counts": pa.ListArray.from_arrays(offsets, pa.array(X.data.astype(np.int32))),
    })


def task_rows(batches, classes, vocabulary_size) -> pa.RecordBatch:
    partial_counts = select_job.PartialFoldCounts(FOLDS, classes, vocabulary_size)
    for batch in batches:
        partial_counts.add(batch)
    return partial_counts.rows()


def tasks_output(batches_per_task, classes, vocabulary_size) -> pa.Table:
    return pa.Table.from_batches([task_rows(batches, classes, vocabulary_size) for batches in batches_per_task])


@pytest.mark.parametrize("dense", [True, False], ids=["dense counters", "sorted keys"])
def test_partial_counts_add_up_to_the_folds(r8, monkeypatch, dense):
    folds, X, y = r8
    if not dense:
        monkeypatch.setattr(select_job, "DENSE_KEYS", 0)
    classes, vocabulary_size = int(y.max()) + 1, X.shape[1]
    n = X.shape[0]
    cut = [0, n // 3, n // 2, 2 * n // 3, n]
    # Two tasks of two batches each; the same documents again as a base model's (source 1).
    batches = [vector_batch(X[a:b], y[a:b], folds[a:b], 0) for a, b in zip(cut, cut[1:])]
    base = vector_batch(X[: n // 4], y[: n // 4], folds[: n // 4], 1)
    table = tasks_output([batches[:2], [base, *batches[2:]]], classes, vocabulary_size)
    counted = select_job.summed_partial_counts(table, FOLDS, classes, vocabulary_size)

    expected = fold_counts(folds, X, y)
    np.testing.assert_array_equal(counted.doc_counts, expected.doc_counts)
    ours = select_job.FoldCounts.from_entries(
        counted.doc_counts, counted.fold, counted.class_id, counted.term_id, counted.count, vocabulary_size
    )
    for f in range(FOLDS):
        assert (ours.term_counts[f] != expected.term_counts[f]).nnz == 0, f
    assert (counted.count > 0).all()
    keys = (counted.fold * classes + counted.class_id) * vocabulary_size + counted.term_id
    assert (np.diff(keys) > 0).all(), "entries ascending and distinct"

    quarter = slice(0, n // 4)
    tokens = np.asarray(X[quarter].sum(axis=1)).ravel()
    want = {}
    for f, c, t in zip(folds[quarter], y[quarter], tokens):
        docs, toks = want.get((int(f), int(c)), (0, 0))
        want[(int(f), int(c))] = (docs + 1, toks + int(t))
    assert counted.base_totals == want


def test_a_label_outside_the_classes_is_refused(r8):
    folds, X, y = r8
    classes, vocabulary_size = int(y.max()) + 1, X.shape[1]
    labels = pa.array([None] + y[1:10].astype(np.int32).tolist(), pa.int32())
    table = tasks_output([[vector_batch(X[:10], y[:10], folds[:10], 0, labels)]], classes, vocabulary_size)
    with pytest.raises(InputError, match="not one of the model's classes"):
        select_job.summed_partial_counts(table, FOLDS, classes, vocabulary_size)
