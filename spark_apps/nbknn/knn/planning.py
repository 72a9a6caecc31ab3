"""How the kNN work is cut: query rows per chunk and reference rows per block, within a memory budget.

:func:`plan_blocks` is the budget formula; :func:`block_plan` is what the blocked mode uses (the
formula for scikit-learn's chunked kernel, or a given block size). Plain arithmetic, no pyspark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nbknn.knn.gemm import default_cap
from nbknn.knn.kernels import KERNEL_CHUNK_ROWS
from nbknn.knn.topk import BYTES_PER_PAIR

# Query rows per batch (broadcast, annoy) and per element of the blocked mode's product with the
# reference blocks: every (element, block) pair ships both through the Python worker, so larger
# elements ship the blocks fewer times; the kernel itself works in KERNEL_CHUNK_ROWS-row pieces.
DEFAULT_QUERY_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class BlockPlan:
    """How to cut n_reference vectors into blocks and queries into chunks.

    ``block_rows`` per block (the last may be shorter), ``query_chunk_rows`` per query chunk,
    ``max_pair_bytes`` to pass to :func:`~nbknn.knn.topk.local_topk`, ``estimated_bytes`` the
    bound of the formula in :func:`plan_blocks`.
    """

    n_blocks: int
    block_rows: int
    query_chunk_rows: int
    max_pair_bytes: int
    estimated_bytes: int


def task_bytes(b: int, q: int, d: int, k: int, pair_rows: int | None = None) -> int:
    """Memory of one (query chunk x block) step: see :func:`plan_blocks`."""
    rows = q if pair_rows is None else min(q, pair_rows)
    return b * (8 * d + 8) + rows * b * BYTES_PER_PAIR + q * (8 * d + 16 * k)


def plan_blocks(
    n_reference: int,
    d: int,
    k: int,
    block_bytes_budget: int,
    query_chunk_rows: int = 1024,
    pair_rows: int | None = None,
) -> BlockPlan:
    """Number and size of reference blocks so that one task step fits in the budget.

    With b reference rows per block and q query rows per chunk, one step holds
        block:        b * (8 d + 8)          (float64 vectors + int64 ids)
        pair memory:  p * b * BYTES_PER_PAIR (distance matrix and selection temporaries)
        query chunk:  q * (8 d + 16 k)       (vectors + the chunk's top-k ids and distances)
    where p = q, or ``min(q, pair_rows)`` for a kernel that holds the distances of at most
    ``pair_rows`` query rows at a time (scikit-learn's chunked reductions), and
    ``b = floor((budget - q (8 d + 16 k)) / (8 d + 8 + p BYTES_PER_PAIR))``, capped at
    n_reference. If not even b = 1 fits, q is halved until it does (error when q = 1 does not
    fit). The blocks are then balanced: ``n_blocks = ceil(n / b)``, ``block_rows =
    ceil(n / n_blocks)`` (<= b). Blocks smaller than k are correct (merging fills the top-k) but
    waste work; a budget giving b >= k + 1 is preferable.
    """
    for name, v, lo in (("n_reference", n_reference, 1), ("d", d, 1), ("k", k, 1),
                        ("block_bytes_budget", block_bytes_budget, 1),
                        ("query_chunk_rows", query_chunk_rows, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo} (got {v!r})")
    if pair_rows is not None and (isinstance(pair_rows, bool) or not isinstance(pair_rows, (int, np.integer))
                                  or pair_rows < 1):
        raise ValueError(f"pair_rows must be an integer >= 1 (got {pair_rows!r})")
    q = int(query_chunk_rows)
    while True:
        p = q if pair_rows is None else min(q, int(pair_rows))
        b = (block_bytes_budget - q * (8 * d + 16 * k)) // (8 * d + 8 + p * BYTES_PER_PAIR)
        if b >= 1 or q == 1:
            break
        q = max(1, q // 2)
    if b < 1:
        raise ValueError(
            f"block_bytes_budget too small: expected >= {task_bytes(1, 1, d, k)} bytes "
            f"for one reference row and one query row (got {block_bytes_budget})"
        )
    b = min(int(b), int(n_reference))
    n_blocks = math.ceil(n_reference / b)
    b = math.ceil(n_reference / n_blocks)
    return BlockPlan(
        n_blocks=n_blocks,
        block_rows=b,
        query_chunk_rows=q,
        max_pair_bytes=p * b * BYTES_PER_PAIR,
        estimated_bytes=task_bytes(b, q, d, k, pair_rows),
    )


def block_plan(
    n: int, d: int, k: int, block_bytes_budget: int, block_rows: int | None = None,
    query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS,
) -> BlockPlan:
    """Blocks sized from the budget (:func:`plan_blocks`), or of ``block_rows`` rows when given.

    The kernel (:func:`~nbknn.knn.kernels.block_topk`) holds the distances of at most
    KERNEL_CHUNK_ROWS query rows to a block at a time, whatever the query chunk's size: the plan
    counts that, not q."""
    if block_rows is None:
        return plan_blocks(n, d, k, block_bytes_budget, query_chunk_rows, pair_rows=KERNEL_CHUNK_ROWS)
    b = min(int(block_rows), n)
    q = int(query_chunk_rows)
    return BlockPlan(
        n_blocks=math.ceil(n / b),
        block_rows=b,
        query_chunk_rows=q,
        max_pair_bytes=min(q, KERNEL_CHUNK_ROWS) * b * BYTES_PER_PAIR,
        estimated_bytes=task_bytes(b, q, d, k, KERNEL_CHUNK_ROWS),
    )


# --------------------------------------------------------------------------------------------
# Pairs of row groups (the exact GEMM kernel's all-points runs)
# --------------------------------------------------------------------------------------------

#: Rows of the kernel's float32 product tile (one tile per thread: up to 1024 x 1024 floats).
TILE_ROWS = 1024


def tile_bytes(b: int) -> int:
    """The product tile of a unit of two groups of ``b`` rows: min(b, TILE_ROWS)^2 float32."""
    return 4 * min(b, TILE_ROWS) ** 2


def prepared_row_bytes(d: int) -> int:
    """A prepared row as planned: its float64 values, its kernel operands (8 (d + 2)), norms and ids."""
    return 8 * d + 8 * (d + 2) + 24


def kernel_row_bytes(d: int, k: int) -> int:
    """Memory per row of a unit of two groups: the group's float64 rows and prepared float32
    operands (8 d + 8 (d + 2) + 3 x 8 for norms and ids), their copy in the unit's joined set
    (as much again), the candidate state (heap 8 k, buffer 16 x cap, counters) and the result
    (16 k)."""
    return 2 * prepared_row_bytes(d) + 8 * k + 16 * default_cap(k) + 33 + 16 * k


def unit_bytes(b: int, d: int, k: int) -> int:
    """Memory of one unit of two groups of ``b`` rows: the tile and both groups' rows."""
    return tile_bytes(b) + 2 * b * kernel_row_bytes(d, k)


def group_rows_for_budget(d: int, k: int, budget: int) -> int:
    """Most rows per group such that a unit (two groups and one product tile) fits ``budget``."""
    row = 2 * kernel_row_bytes(d, k)
    rows = (budget - tile_bytes(TILE_ROWS)) // row
    if rows < TILE_ROWS:
        # The tile shrinks with the groups: the largest b with 4 b^2 + row b <= budget.
        rows = int((math.isqrt(row * row + 16 * budget) - row) // 8)
        while rows > 0 and unit_bytes(rows, d, k) > budget:
            rows -= 1
    if rows < 1:
        raise ValueError(
            f"block_bytes_budget too small: expected >= {unit_bytes(1, d, k)} bytes "
            f"for a unit of two one-row groups (got {budget})"
        )
    return int(rows)


def diagonal_unit_bytes(b: int, d: int, k: int) -> int:
    """Memory of a diagonal unit of one group of ``b`` rows: the tile and the group's rows once
    (no joined copy: the group is joined with itself)."""
    return tile_bytes(b) + b * (kernel_row_bytes(d, k) - prepared_row_bytes(d))


def groups_for_cores(parallelism: int) -> int:
    """Fewest row groups whose cross units give every task slot at least two (balance)."""
    groups = 2
    while groups * (groups - 1) // 2 < 2 * parallelism:
        groups += 1
    return groups


def all_points_groups(n: int, d: int, k: int, budget: int, slots: int) -> int:
    """Row groups of an all-points run. With one task slot (``spark.task.cpus`` = the executor's
    cores) a set whose diagonal unit fits ``budget`` is one group: one task runs the whole
    symmetric join on all the cores, with no partial results to merge. Otherwise enough groups
    for every slot to get two cross units, and no unit over the budget."""
    if slots <= 1 and diagonal_unit_bytes(n, d, k) <= budget:
        return 1
    return min(n, max(groups_for_cores(slots), math.ceil(n / group_rows_for_budget(d, k, budget))))


def pair_block_plan(
    n: int, d: int, k: int, budget: int, block_rows: int | None = None, slots: int = 1
) -> BlockPlan:
    """Blocks for the blocked mode's all-points run: :func:`all_points_groups` of them (``slots``
    task slots), unless ``block_rows`` is given."""
    if block_rows is None:
        b = math.ceil(n / all_points_groups(n, d, k, budget, slots))
    else:
        b = int(block_rows)
    b = max(1, min(b, n))
    n_blocks = math.ceil(n / b)
    b = math.ceil(n / n_blocks)
    estimated = diagonal_unit_bytes(b, d, k) if n_blocks == 1 else unit_bytes(b, d, k)
    return BlockPlan(n_blocks=n_blocks, block_rows=b, query_chunk_rows=b, max_pair_bytes=0,
                     estimated_bytes=estimated)
