"""Shard planner: balance by entries, deterministic, budget-driven shard counts."""

import random

import pytest

from nbknn.naive_bayes.sharding import imbalance, plan_shards


def test_every_class_gets_exactly_one_shard_and_entries_add_up():
    entries = {c: (c * 37) % 101 + 1 for c in range(30)}
    plan = plan_shards(entries, num_shards=4)
    assert sorted(plan.shard_of) == list(range(30))
    assert sum(plan.entries) == sum(entries.values())
    for shard in range(4):
        assert plan.entries[shard] == sum(entries[c] for c in plan.classes_of(shard))


def test_balances_by_entries_not_by_class_count():
    # One heavy class and many light ones: the heavy class gets a shard nearly to itself.
    entries = {0: 1000, **{c: 10 for c in range(1, 101)}}
    plan = plan_shards(entries, num_shards=2)
    heavy_shard = plan.shard_of[0]
    assert sorted(plan.entries) == [1000, 1000]
    assert len(plan.classes_of(heavy_shard)) == 1


def test_greedy_plan_is_close_to_ideal_on_many_random_classes():
    rng = random.Random(7)
    entries = {c: rng.randint(100, 5000) for c in range(200)}
    plan = plan_shards(entries, num_shards=7)
    assert imbalance(plan) < 0.01


def test_plan_is_deterministic_and_ties_go_to_lower_ids():
    entries = {c: 5 for c in range(6)}
    plan = plan_shards(entries, num_shards=3)
    assert plan == plan_shards(dict(reversed(list(entries.items()))), num_shards=3)
    assert plan.shard_of == {0: 0, 1: 1, 2: 2, 3: 0, 4: 1, 5: 2}


def test_budget_picks_the_smallest_shard_count_that_fits():
    entries = {c: 100 for c in range(10)}
    plan = plan_shards(entries, max_entries_per_shard=250)
    assert plan.num_shards == 5
    assert max(plan.entries) <= 250


def test_budget_grows_the_shard_count_when_greedy_packing_needs_it():
    entries = {0: 60, 1: 60, 2: 60, 3: 20}
    plan = plan_shards(entries, max_entries_per_shard=100)
    assert max(plan.entries) <= 100
    assert plan.num_shards == 3


def test_more_shards_than_classes_gives_one_shard_per_class():
    plan = plan_shards({0: 3, 1: 4}, num_shards=10)
    assert plan.num_shards == 2


def test_class_with_no_entries_still_gets_a_shard():
    plan = plan_shards({0: 10, 1: 0}, num_shards=2)
    assert set(plan.shard_of) == {0, 1}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_shards": 0}, r"num_shards must be >= 1 \(got 0\)"),
        ({"max_entries_per_shard": 50}, "class 1 alone has 60 entries, more than max_entries_per_shard 50"),
        ({}, "exactly one of num_shards and max_entries_per_shard"),
        ({"num_shards": 2, "max_entries_per_shard": 100}, "exactly one"),
    ],
)
def test_bad_arguments_are_refused_with_expected_vs_got(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan_shards({0: 10, 1: 60}, **kwargs)


def test_no_classes_is_an_error():
    with pytest.raises(ValueError, match="no classes"):
        plan_shards({}, num_shards=1)
