"""Validation of what the scoring kernels are given: the counts a shard is loaded from, the
parameters of the model and the documents to score.

Every check raises ``ValueError`` naming the argument and the offending value; the converting
ones return the argument in the dtype the kernels compute with.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

from nbknn.contract import MODEL_TYPES

# int32 CSR indices are what keeps an entry at 12 bytes; beyond this they cannot be used.
INT32_LIMIT = np.iinfo(np.int32).max
# Relative tolerance of the consistency checks between stored totals and entry sums: counts may
# be summed in a different order (or as floats) by the training job.
TOTALS_RTOL = 1e-9


def check_model_type(model_type) -> None:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be 'multinomial' or 'complement' (got {model_type!r})")


def check_alpha(alpha) -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, Real):
        raise ValueError(f"alpha must be a number (got {alpha!r})")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0 (got {alpha!r})")
    return float(alpha)


def check_fit_prior(fit_prior) -> None:
    if not isinstance(fit_prior, (bool, np.bool_)):
        raise ValueError(f"fit_prior must be a bool (got {fit_prior!r})")


def check_top_n(top_n) -> int:
    if isinstance(top_n, (bool, np.bool_)) or not isinstance(top_n, Integral) or top_n < 0:
        raise ValueError(f"top_n must be an integer >= 0 (got {top_n!r})")
    return int(top_n)


def check_vocabulary_size(vocabulary_size) -> int:
    if isinstance(vocabulary_size, (bool, np.bool_)) or not isinstance(vocabulary_size, Integral):
        raise ValueError(f"vocabulary_size must be an integer (got {vocabulary_size!r})")
    if not 0 < vocabulary_size <= INT32_LIMIT:
        raise ValueError(f"vocabulary_size must be in [1, {INT32_LIMIT}] (got {vocabulary_size})")
    return int(vocabulary_size)


def as_count_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (got shape {array.shape})")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0 (got min {array.min(initial=0.0)})")
    return array


def check_length(array: np.ndarray, expected: int, name: str, what: str) -> None:
    if array.shape[0] != expected:
        raise ValueError(f"{name} must have {what} = {expected} entries (got {array.shape[0]})")


def check_close(got: float, expected: float, got_name: str, expected_name: str) -> None:
    if not np.isclose(got, expected, rtol=TOTALS_RTOL, atol=0):
        raise ValueError(f"{got_name} must equal the {expected_name} = {expected} (got {got})")


def as_int_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional (got shape {array.shape})")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers (got dtype {array.dtype})")
    return array.astype(np.int64)


def check_class_ids(class_ids, n_classes_total: int) -> np.ndarray:
    class_ids = as_int_vector(class_ids, "class_ids")
    if class_ids.size == 0:
        raise ValueError("class_ids must list at least one class (got none)")
    if np.any(np.diff(class_ids) <= 0):
        raise ValueError(f"class_ids must be strictly ascending (got {class_ids.tolist()[:20]})")
    if class_ids[0] < 0 or class_ids[-1] >= n_classes_total:
        raise ValueError(
            f"class_ids must be in [0, {n_classes_total}) (got {class_ids[0]}..{class_ids[-1]})"
        )
    return class_ids


def checked_class_totals(doc_count_all, term_total, class_ids):
    """(doc_count_all, term_total, class_ids) of the whole model, checked against each other."""
    doc_count_all = as_count_vector(doc_count_all, "doc_count_all")
    n_classes_total = doc_count_all.shape[0]
    if n_classes_total == 0:
        raise ValueError("doc_count_all must have one entry per class (got an empty array)")
    if doc_count_all.sum() <= 0:
        raise ValueError(f"doc_count_all must sum to > 0 (got {doc_count_all.sum()})")
    term_total = as_count_vector(term_total, "term_total")
    check_length(term_total, n_classes_total, "term_total", "the number of classes")
    return doc_count_all, term_total, check_class_ids(class_ids, n_classes_total)


def checked_term_total_all(term_total_all, term_total: np.ndarray, vocabulary_size: int) -> np.ndarray:
    """Complement NB's (V,) per-term totals, which must add up to the per-class totals."""
    if term_total_all is None:
        raise ValueError("model_type 'complement' needs term_total_all (got None)")
    term_total_all = as_count_vector(term_total_all, "term_total_all")
    check_length(term_total_all, vocabulary_size, "term_total_all", "vocabulary_size")
    check_close(term_total.sum(), term_total_all.sum(), "sum of term_total", "sum of term_total_all")
    return term_total_all


def shard_entries(class_ids, entry_class, entry_term, entry_count, vocabulary_size):
    """Validate the shard's entries; return (local row, term, count), sorted by (row, term)."""
    entry_class = as_int_vector(entry_class, "entry_class")
    entry_term = as_int_vector(entry_term, "entry_term")
    counts = as_count_vector(entry_count, "entry_count")
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


def check_entry_sums(rows, counts, shard_term_total, class_ids) -> None:
    """Each class's entries must add up to its stored term_total."""
    entry_sums = np.bincount(rows, weights=counts, minlength=class_ids.shape[0])
    mismatched = np.flatnonzero(~np.isclose(entry_sums, shard_term_total, rtol=TOTALS_RTOL, atol=0))
    if mismatched.size:
        local = mismatched[0]
        raise ValueError(
            f"term_total of class {class_ids[local]} is {shard_term_total[local]} "
            f"but its entries sum to {entry_sums[local]}"
        )


def check_complement_counts(counts, entry_term_total_all) -> None:
    over = counts > entry_term_total_all
    if np.any(over):
        at = np.flatnonzero(over)[0]
        raise ValueError(
            f"an entry's count must be <= its term's total over all classes "
            f"(got count {counts[at]} > term_total_all {entry_term_total_all[at]})"
        )


def check_documents(X, vocabulary_size: int) -> sp.csr_array:
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
