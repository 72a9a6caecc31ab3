"""An all-points run cut into pairs of row groups: merging every unit's partial results gives the
exact top-k of the whole set (direct float64 brute force, ties by id), for integer and string
ids, groups smaller than k, and twins under other ids."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from knn_oracles import direct_topk
from nbknn.knn.gemm import frame_for
from nbknn.knn.partials import spread_units
from nbknn.knn.row_groups import (
    cross_pairs,
    diagonal_unit,
    group_starts,
    prepare_group,
    query_ids_as_ranks,
    unit_partials,
)
from nbknn.knn.topk import TopK, merge_topk, pad_id_for


def merged_all_points(ids, X, k, metric, n_groups, exclude_self=True, seed_factor=1.0):
    """The two phases as the Spark modes run them: diagonal units (giving the seeds), then the
    cross units, every partial result merged per group; also the mean survivors per cross unit."""
    frame = frame_for(metric, X)
    starts = group_starts(X.shape[0], n_groups)
    groups = [prepare_group(g, ids[lo:hi], X[lo:hi], frame) for g, (lo, hi) in enumerate(zip(starts, starts[1:]))]
    merged, survivors = {}, []
    for g, group in enumerate(groups):
        partials, _, seeded = diagonal_unit(group, k, exclude_self)
        groups[g] = dataclasses.replace(seeded, seed=seeded.seed * seed_factor)
        merged[g] = partials[0][1][1]
    for a, b in cross_pairs(n_groups):
        partials, info = unit_partials(groups[a], groups[b], k, exclude_self)
        survivors.append(info["mean_survivors"])
        for number, (_, result) in partials:
            merged[number] = merge_topk(merged[number], result, k)
    return (np.concatenate([merged[g].ids for g in range(n_groups)]),
            np.concatenate([merged[g].distances for g in range(n_groups)]), survivors)


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
@pytest.mark.parametrize("id_kind", ["int", "str"])
@pytest.mark.parametrize("n_groups", [1, 3, 24])  # 24 groups of 5 rows: smaller than k
def test_merged_units_equal_the_direct_brute_force(metric, id_kind, n_groups):
    rng = np.random.default_rng(n_groups)
    X = rng.integers(-2, 3, size=(120, 3)).astype(np.float64)  # many exact ties
    X[100:] = X[:20]  # twins under other ids
    ids = rng.permutation(np.arange(-60, 60)).astype(np.int64)  # -1 is a real id here
    if id_kind == "str":
        ids = np.array([f"p{i}" for i in ids])
    k = 8
    got_ids, got_d, _ = merged_all_points(ids, X, k, metric, n_groups)
    want_ids, want_d = direct_topk(X, ids, X, ids, k, metric, True)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got_ids, want_ids)
    assert not (got_ids == pad_id_for(got_ids)).any()


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_seeds_cut_the_candidates_and_an_unsafe_seed_breaks_exactness(metric):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1200, 16)) + 4
    ids = np.arange(1200)
    want_ids, _ = direct_topk(X, ids, X, ids, 5, metric, True)
    got_ids, _, seeded = merged_all_points(ids, X, 5, metric, 4)
    np.testing.assert_array_equal(got_ids, want_ids)
    _, _, unseeded = merged_all_points(ids, X, 5, metric, 4, seed_factor=np.inf)
    # Unseeded, a cross unit keeps k candidates of every row; seeded, only those that can still be
    # among the row's k nearest over the whole set.
    assert np.mean(unseeded) >= 5 and np.mean(seeded) < np.mean(unseeded) - 0.5
    # A seed below the true k-th distance drops true neighbours: the seed must be an upper bound.
    too_small, _, _ = merged_all_points(ids, X, 5, metric, 4, seed_factor=0.5)
    assert not np.array_equal(too_small, want_ids)


def test_cross_pairs_cover_every_pair_once():
    pairs = cross_pairs(5)
    assert sorted(pairs) == sorted((a, b) for a in range(5) for b in range(a + 1, 5))
    slices = spread_units(pairs, 4)
    assert sorted(p for s in slices for p in s) == sorted(pairs) and len(slices) == 4


def test_query_ids_absent_from_the_reference_match_nothing():
    unique = np.array(["a", "c", "e"])
    assert query_ids_as_ranks(np.array(["c", "b", "z", "a"]), unique).tolist() == [1, -2, -2, 0]


@pytest.mark.parametrize("budget", [13_000, 100_000, 1 << 20, 6_000_000, 64 << 20, 1 << 30])
def test_groups_are_the_largest_whose_unit_fits_the_budget(budget):
    from nbknn.knn.planning import group_rows_for_budget, unit_bytes

    rows = group_rows_for_budget(128, 10, budget)
    assert unit_bytes(rows, 128, 10) <= budget < unit_bytes(rows + 1, 128, 10)


def test_a_budget_below_one_row_per_group_is_refused_with_the_minimum():
    from nbknn.knn.planning import group_rows_for_budget, unit_bytes

    with pytest.raises(ValueError, match=f"expected >= {unit_bytes(1, 128, 10)} bytes"):
        group_rows_for_budget(128, 10, unit_bytes(1, 128, 10) - 1)


@pytest.mark.parametrize("slots, n_blocks", [(2, 4), (3, 4), (4, 5)])
def test_blocked_pairs_make_enough_blocks_for_every_task_slot(slots, n_blocks):
    from nbknn.knn.planning import pair_block_plan

    # A budget far above the set: the slots, not the memory, set the number of blocks; every slot
    # then gets at least two cross units (n_blocks (n_blocks - 1) / 2 >= 2 slots).
    plan = pair_block_plan(50_000, 128, 10, 1 << 34, slots=slots)
    assert plan.n_blocks == n_blocks
    assert n_blocks * (n_blocks - 1) // 2 >= 2 * slots > (n_blocks - 1) * (n_blocks - 2) // 2


def test_one_task_slot_runs_a_set_within_the_budget_as_one_group():
    from nbknn.knn.planning import all_points_groups, diagonal_unit_bytes, group_rows_for_budget, pair_block_plan

    # 50 000 x 128 rows: one diagonal unit of the whole set needs ~170 MB.
    whole = diagonal_unit_bytes(50_000, 128, 10)
    assert 100 << 20 < whole < 256 << 20
    assert all_points_groups(50_000, 128, 10, whole, slots=1) == 1
    plan = pair_block_plan(50_000, 128, 10, whole, slots=1)
    assert (plan.n_blocks, plan.block_rows, plan.estimated_bytes) == (1, 50_000, whole)
    # One byte less, or two slots to keep busy: groups again, each unit within the budget.
    smaller = all_points_groups(50_000, 128, 10, whole - 1, slots=1)
    assert smaller == -(-50_000 // group_rows_for_budget(128, 10, whole - 1)) > 1
    assert all_points_groups(50_000, 128, 10, whole, slots=2) == 4


def test_blocked_pairs_keep_the_budget_and_an_explicit_block_size():
    from nbknn.knn.planning import group_rows_for_budget, pair_block_plan

    small = pair_block_plan(50_000, 128, 10, 64 << 20, slots=2)
    assert small.block_rows <= group_rows_for_budget(128, 10, 64 << 20) and small.n_blocks == 10
    assert pair_block_plan(50_000, 128, 10, 1 << 34, block_rows=7_000, slots=2).n_blocks == 8


def profile_row(first, last, ascending=True):
    return {"first_id": first, "last_id": last, "ascending": ascending}


def test_partitions_are_in_id_order_only_when_their_ranges_ascend_apart():
    from nbknn.knn.blocked import in_id_order

    # Partitions read in any order, each an ascending run, the runs disjoint: numbered by id.
    assert in_id_order([profile_row(20, 29), profile_row(0, 9), profile_row(10, 19)])
    assert in_id_order([profile_row("b", "bz"), profile_row("a", "az")])
    assert not in_id_order([profile_row(0, 10), profile_row(10, 19)])  # ranges touch
    assert not in_id_order([profile_row(0, 15), profile_row(10, 19)])  # ranges overlap
    assert not in_id_order([profile_row(0, 9), profile_row(10, 19, ascending=False)])


class Counter:
    def __init__(self):
        self.value = 0

    def add(self, value):
        self.value += value


def partial_batch(group, row_ids, ids, distances):
    from nbknn.knn.partials import PARTIAL_ARROW_SCHEMA, encoded_partial

    number, payload = encoded_partial(group, np.asarray(row_ids), TopK(np.asarray(ids), np.asarray(distances)))
    return pa.RecordBatch.from_pylist([{"group": number, "partial": payload}], schema=PARTIAL_ARROW_SCHEMA)


def test_a_partition_merges_its_group_and_refuses_rows_out_of_id_order():
    from nbknn.knn.partials import merge_partition

    a = partial_batch(0, [1, 2], [[7, 9], [8, 9]], [[0.1, 0.5], [0.2, 0.3]])
    b = partial_batch(0, [1, 2], [[5, 6], [4, 6]], [[0.3, 0.4], [0.2, 0.6]])
    counter = Counter()
    (batch,) = merge_partition(iter([a, b]), 2, "long", counter)
    assert batch.column("id").to_pylist() == [1, 2] and counter.value == 2
    # Row 1: 0.1 (7), 0.3 (5); row 2: a tie at 0.2 broken by id (4 before 8).
    assert batch.column("neighbor_ids").to_pylist() == [[7, 5], [4, 8]]
    assert batch.column("distances").to_pylist() == [[0.1, 0.3], [0.2, 0.2]]
    backwards = partial_batch(0, [2, 1], [[7, 9], [8, 9]], [[0.1, 0.5], [0.2, 0.3]])
    with pytest.raises(RuntimeError, match="not in id order"):
        list(merge_partition(iter([backwards]), 2, "long", Counter()))
    with pytest.raises(RuntimeError, match="several groups"):
        list(merge_partition(iter([a, partial_batch(1, [3], [[1, 2]], [[0.1, 0.2]])]), 2, "long", Counter()))
