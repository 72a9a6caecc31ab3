"""Shard planning: group classes into shards holding similar numbers of (class, term) entries.

A shard is what one prediction pass holds in memory, so shards are balanced by entries (the
memory), not by number of classes. The planner is the longest-processing-time greedy rule: classes
in descending order of entries, each to the currently lightest shard. Its largest shard is at most
4/3 of the optimum, and in practice (many classes, no giant) within a few percent of the ideal
total/num_shards. Ties are broken by class id and shard id, so the plan is deterministic.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

from nbknn.common.errors import ConfigError


@dataclass(frozen=True)
class ShardPlan:
    """``shard_of[class_id]`` is the class's shard; ``entries[s]`` the (class, term) entries of shard s."""

    shard_of: dict[int, int]
    entries: tuple[int, ...]

    @property
    def num_shards(self) -> int:
        return len(self.entries)

    def classes_of(self, shard: int) -> list[int]:
        return sorted(c for c, s in self.shard_of.items() if s == shard)

    def to_list(self) -> list[dict]:
        return [
            {"shard": s, "entries": self.entries[s], "class_ids": self.classes_of(s)}
            for s in range(self.num_shards)
        ]


def plan_shards(
    entries_per_class: dict[int, int],
    num_shards: int | None = None,
    max_entries_per_shard: int | None = None,
) -> ShardPlan:
    """Assign every class to a shard, from a shard count or from a per-shard entry budget.

    With a budget, the smallest number of shards whose greedy plan keeps every shard within the
    budget is used. A class larger than the budget on its own cannot be placed: that is an error,
    since a class's entries are never split across shards. With a shard count larger than the
    number of classes, one shard per class is used (an empty shard would be a useless pass).
    """
    if not entries_per_class:
        raise ConfigError("cannot plan shards for a model with no classes")
    if (num_shards is None) == (max_entries_per_shard is None):
        raise ConfigError("give exactly one of num_shards and max_entries_per_shard")
    negative = {c: n for c, n in entries_per_class.items() if n < 0}
    if negative:
        raise ConfigError(f"entries per class must be >= 0 (got {negative})")
    num_classes = len(entries_per_class)
    if num_shards is not None:
        if num_shards < 1:
            raise ConfigError(f"num_shards must be >= 1 (got {num_shards})")
        return _greedy(entries_per_class, min(num_shards, num_classes))

    if max_entries_per_shard < 1:
        raise ConfigError(f"max_entries_per_shard must be >= 1 (got {max_entries_per_shard})")
    largest_class, largest = max(entries_per_class.items(), key=lambda item: (item[1], -item[0]))
    if largest > max_entries_per_shard:
        raise ConfigError(
            f"class {largest_class} alone has {largest} entries, more than max_entries_per_shard "
            f"{max_entries_per_shard}; a class is never split across shards, so raise the budget"
        )
    total = sum(entries_per_class.values())
    shards = max(1, math.ceil(total / max_entries_per_shard))
    while True:
        plan = _greedy(entries_per_class, shards)
        if max(plan.entries) <= max_entries_per_shard or shards >= num_classes:
            return plan
        shards += 1


def _greedy(entries_per_class: dict[int, int], num_shards: int) -> ShardPlan:
    order = sorted(entries_per_class.items(), key=lambda item: (-item[1], item[0]))
    # Heap of (entries so far, shard id): the lightest shard, lowest id first.
    heap = [(0, shard) for shard in range(num_shards)]
    shard_of: dict[int, int] = {}
    loads = [0] * num_shards
    for class_id, entries in order:
        load, shard = heapq.heappop(heap)
        shard_of[class_id] = shard
        loads[shard] = load + entries
        heapq.heappush(heap, (loads[shard], shard))
    return ShardPlan(shard_of=shard_of, entries=tuple(loads))


def imbalance(plan: ShardPlan) -> float:
    """Largest shard over the ideal (total / shards), minus one: 0.0 is a perfect balance."""
    total = sum(plan.entries)
    if total == 0:
        return 0.0
    return max(plan.entries) / (total / plan.num_shards) - 1.0
