"""All-points k-nearest neighbours on Spark: the ``knn_neighbors`` application's run.

Input frames hold ``id`` (bigint or string) and ``vector`` (array<double>, one dimension, finite,
ids unique: what :mod:`nbknn.inputs.vectors` accepts). Each mode returns a lazy frame of
``id, neighbor_ids, distances`` (one row per query, neighbours nearest first, ties by id) wrapped in
a :class:`~nbknn.knn.mode.KnnResult` that also carries the mode's details and a ``release`` for
what it cached.

Modes
-----
``broadcast``
    Exact; the reference set is collected and broadcast (:mod:`nbknn.knn.broadcast`). Allowed
    only up to ``broadcast_max_bytes``.
``blocked``
    Exact with bounded memory and no collect of the reference set (:mod:`nbknn.knn.blocked`).

Both exact modes run the GEMM kernel (:mod:`nbknn.knn.gemm`) for euclidean, sqeuclidean and
cosine, and an all-points run as pairs of row groups, each product computed once
(:mod:`nbknn.knn.row_groups`); scikit-learn's brute force answers the other metrics.
``auto``
    ``broadcast`` when the reference matrix (n * d * 8 bytes) fits ``broadcast_max_bytes``, else
    ``blocked``; the choice and its reason are logged and go into the summary.
``annoy``
    Approximate, from an Annoy index built on the driver (same ``broadcast_max_bytes`` limit);
    the run measures its recall@k on a sample of queries (:mod:`nbknn.knn.annoy`).

All modes exclude a query's own id when ``exclude_self`` (scikit-learn's ``kneighbors()``
without X: an identical twin with another id stays a neighbour) and order neighbours by
(distance, id); the exact modes agree with each other and with scikit-learn brute force.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from nbknn.common import fs
from nbknn.common.provenance import code_version
from nbknn.contract import (
    DEFAULT_ANNOY_TREES,
    DEFAULT_BLOCK_BYTES_BUDGET,
    DEFAULT_BROADCAST_MAX_BYTES,
    DEFAULT_K,
    DEFAULT_METRIC,
    DISTANCE_PNG_NAME,
    KNN_JOB,
    KNN_MODES,
    NEIGHBOR_COLUMNS,
    KnnSummary,
    join_uri,
    knn_report_uri,
    knn_summary_uri,
    neighbors_uri,
)
from nbknn.inputs.documents import InputError, check_reject_fraction, publish_rejects
from nbknn.inputs.vectors import (
    VectorSpec,
    accepted_vectors,
    check_unique_ids,
    choose_dimension,
    choose_id_type,
    finalize,
    profile,
    read_vectors,
    rejected_vectors,
)
from nbknn.knn.annoy import DEFAULT_ANNOY_SEED, DEFAULT_RECALL_SAMPLE, measure_recall, neighbors_annoy
from nbknn.knn.blocked import neighbors_blocked
from nbknn.knn.broadcast import neighbors_broadcast
from nbknn.knn.kernels import annoy_metric
from nbknn.knn.mode import KnnResult
from nbknn.knn.planning import DEFAULT_QUERY_CHUNK_ROWS
from nbknn.knn.report import distance_by_rank
from nbknn.knn.topk import validate_k, validate_metric

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnnOptions:
    """What to compute and how (the defaults of the application live here)."""

    k: int = DEFAULT_K
    metric: str = DEFAULT_METRIC
    exclude_self: bool = True
    mode: str = "auto"
    block_bytes_budget: int = DEFAULT_BLOCK_BYTES_BUDGET
    broadcast_max_bytes: int = DEFAULT_BROADCAST_MAX_BYTES
    query_chunk_rows: int = DEFAULT_QUERY_CHUNK_ROWS
    # Rows per reference block, overriding the size derived from block_bytes_budget.
    block_rows: int | None = None
    annoy_trees: int = DEFAULT_ANNOY_TREES
    annoy_search_k: int = -1
    annoy_seed: int = DEFAULT_ANNOY_SEED
    recall_sample: int = DEFAULT_RECALL_SAMPLE

    def __post_init__(self) -> None:
        if self.mode not in KNN_MODES:
            raise ValueError(f"mode must be one of {KNN_MODES} (got {self.mode!r})")
        validate_metric(self.metric)
        for name in ("block_bytes_budget", "broadcast_max_bytes", "query_chunk_rows", "annoy_trees", "recall_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.block_rows is not None and self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1 (got {self.block_rows})")
        if self.mode == "annoy":
            annoy_metric(self.metric)


# --------------------------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------------------------


def choose_mode(requested: str, n_reference: int, d: int, broadcast_max_bytes: int) -> tuple[str, str]:
    """(mode, reason): ``auto`` compares the reference matrix's n * d * 8 bytes with the budget."""
    if requested not in KNN_MODES:
        raise ValueError(f"mode must be one of {KNN_MODES} (got {requested!r})")
    size = n_reference * d * 8
    if requested != "auto":
        if requested in ("broadcast", "annoy") and size > broadcast_max_bytes:
            raise InputError(
                f"mode={requested} collects the reference set on the driver: expected at most "
                f"broadcast_max_bytes={broadcast_max_bytes} bytes, got {size} (n={n_reference} x d={d} x 8); "
                "use mode=blocked or raise broadcast_max_bytes"
            )
        return requested, "requested"
    if size <= broadcast_max_bytes:
        return "broadcast", f"reference matrix {size} bytes <= broadcast_max_bytes {broadcast_max_bytes}"
    return "blocked", f"reference matrix {size} bytes > broadcast_max_bytes {broadcast_max_bytes}"


def compute_neighbors(
    queries: DataFrame, reference: DataFrame, mode: str, options: KnnOptions
) -> KnnResult:
    """Dispatch to the (resolved, not ``auto``) mode with the options' parameters.

    ``queries is reference`` is an all-points run: the exact modes then compute each pair of
    rows once (:mod:`nbknn.knn.row_groups`)."""
    self_join = queries is reference
    common = dict(k=options.k, metric=options.metric, exclude_self=options.exclude_self,
                  query_chunk_rows=options.query_chunk_rows)
    if mode == "broadcast":
        return neighbors_broadcast(queries, reference, self_join=self_join,
                                   block_bytes_budget=options.block_bytes_budget, **common)
    if mode == "blocked":
        return neighbors_blocked(
            queries, reference, block_bytes_budget=options.block_bytes_budget, block_rows=options.block_rows,
            self_join=self_join, **common
        )
    if mode == "annoy":
        return neighbors_annoy(
            queries, reference, n_trees=options.annoy_trees, search_k=options.annoy_search_k,
            seed=options.annoy_seed, **common,
        )
    raise ValueError(f"mode must be one of {KNN_MODES[1:]} here (got {mode!r})")


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


def write_neighbors(result: KnnResult, uri: str) -> None:
    """Write a mode's output as Parquet sorted by id (a frame already in id order as it is)."""
    if result.sorted_by_id:
        result.frame.write.mode("overwrite").parquet(uri)
    else:
        write_sorted_by_id(result.frame, uri)


def write_sorted_by_id(frame: DataFrame, uri: str) -> None:
    """Write a mode's output as Parquet sorted by id, computing the neighbours once.

    A global sort first runs a job of its own that reads its whole input to sample the range
    boundaries, then the job that shuffles it: on the mode's lazy frame that is the kernel twice
    (measured: every query row went through the kernel twice). The sort reads a persisted copy.
    """
    computed = frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        computed.orderBy("id").write.mode("overwrite").parquet(uri)
    finally:
        computed.unpersist()


@dataclass
class ValidatedVectors:
    """The finalized reference (and query) frames, their record counts and what was chosen."""

    reference: DataFrame
    queries: DataFrame | None
    counts: dict
    dimension: int
    dimension_rule: str
    id_type: str
    any_rejected: bool


@dataclass(frozen=True)
class RunPlan:
    """What the run computes, decided once the accepted vectors are known."""

    n_reference: int
    n_queries: int
    k: int
    mode: str
    mode_reason: str


@dataclass
class PublishedNeighbors:
    """A mode's result once written: where, how many rows, and the recall of an approximate mode."""

    result: KnnResult
    uri: str
    rows: int
    recall: dict | None


def run_knn(
    spark: SparkSession,
    reference_spec: VectorSpec,
    output_dir: str,
    rejects_uri: str,
    options: KnnOptions,
    query_spec: VectorSpec | None = None,
    max_reject_fraction: float = 0.01,
    dim: int | None = None,
) -> dict:
    """Read and validate, compute the neighbours, publish them and the summary; returns the summary.

    Output: ``<output_dir>/neighbors`` (Parquet: id, neighbor_ids, distances; sorted by id),
    written beside its final place and renamed into it, replacing an earlier attempt of the run;
    then ``<output_dir>/report/summary.json`` (atomically replaced).
    """
    started = time.monotonic()
    self_join = query_spec is None
    vectors = read_and_validate(spark, reference_spec, query_spec, rejects_uri, max_reject_fraction, dim)
    reference = accepted_vectors(vectors.reference).persist(StorageLevel.MEMORY_AND_DISK)
    queries = reference if self_join else accepted_vectors(vectors.queries).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        plan = plan_run(queries, reference, vectors.counts, vectors.dimension, options, self_join)
        read_seconds = time.monotonic() - started
        result, target = compute_and_publish(spark, queries, reference, plan.mode, options, output_dir)
        neighbors_seconds = time.monotonic() - started - read_seconds
        published = check_published(spark, result, target, queries, reference, plan, options)
    finally:
        reference.unpersist()
        if not self_join:
            queries.unpersist()

    distances = distance_by_rank(spark, published.uri, plan.k)
    timings = {"read_and_validate": round(read_seconds, 3), "neighbors_and_write": round(neighbors_seconds, 3)}
    summary = knn_summary(reference_spec, query_spec, rejects_uri, options, vectors, plan, published, timings, started,
                          distances)
    # An earlier attempt's picture must not sit beside this summary; the report task draws the new one.
    fs.delete(spark, join_uri(knn_report_uri(output_dir), DISTANCE_PNG_NAME))
    fs.write_json_atomic(spark, knn_summary_uri(output_dir), summary)
    return summary


def read_and_validate(
    spark: SparkSession, reference_spec: VectorSpec, query_spec: VectorSpec | None, rejects_uri: str,
    max_reject_fraction: float, dim: int | None,
) -> ValidatedVectors:
    """Read the vectors, choose dimension and id type, publish (or clear) the rejects, check the fractions."""
    checked_ref = read_vectors(spark, reference_spec)
    profile_ref = profile(checked_ref)
    checked_q = read_vectors(spark, query_spec) if query_spec else None
    profile_q = profile(checked_q) if checked_q is not None else None
    dimension, dimension_rule = choose_dimension(profile_ref, dim)
    id_type = choose_id_type(*[p for p in (profile_ref, profile_q) if p is not None])

    final_ref = finalize(checked_ref, dimension, id_type)
    counts = {"reference": profile_ref.counts(dimension)}
    rejects = rejected_vectors(final_ref, "reference")
    final_q = None
    if checked_q is not None:
        final_q = finalize(checked_q, dimension, id_type)
        counts["queries"] = profile_q.counts(dimension)
        rejects = rejects.unionByName(rejected_vectors(final_q, "queries"))
    any_rejected = any(c.rejected for c in counts.values())
    if any_rejected:
        publish_rejects(rejects, rejects_uri)
    else:
        # A retry over repaired input must not leave the first attempt's rejects behind.
        fs.delete(spark, rejects_uri)
    for name, c in counts.items():
        check_reject_fraction(c, max_reject_fraction, rejects_uri)
        if c.accepted == 0:
            raise InputError(f"no {name} vector was accepted; see the rejects at {rejects_uri}")
    return ValidatedVectors(final_ref, final_q, counts, dimension, dimension_rule, id_type, any_rejected)


def plan_run(
    queries: DataFrame, reference: DataFrame, counts: dict, dimension: int, options: KnnOptions, self_join: bool
) -> RunPlan:
    """Check the accepted ids are unique, then k against the reference and the mode to run."""
    check_unique_ids(reference, "reference")
    if not self_join:
        check_unique_ids(queries, "query")
    n_ref = counts["reference"].accepted
    n_queries = counts["queries"].accepted if not self_join else n_ref
    k = validate_k(options.k, n_ref, self_join=options.exclude_self)
    mode, reason = choose_mode(options.mode, n_ref, dimension, options.broadcast_max_bytes)
    log.info("kNN mode %s (requested %s): %s", mode, options.mode, reason)
    return RunPlan(n_ref, n_queries, k, mode, reason)


def compute_and_publish(
    spark: SparkSession, queries: DataFrame, reference: DataFrame, mode: str, options: KnnOptions, output_dir: str
) -> tuple[KnnResult, str]:
    """Compute the neighbours and write them beside their final place, then rename them into it."""
    result = compute_neighbors(queries, reference, mode, options)
    target = neighbors_uri(output_dir)
    staging = f"{output_dir.rstrip('/')}/_tmp-neighbors-{uuid.uuid4().hex[:12]}"
    try:
        write_neighbors(result, staging)
        fs.publish_dir(spark, staging, target)
    finally:
        fs.delete(spark, staging)
        result.release()
    return result, target


def check_published(
    spark: SparkSession, result: KnnResult, target: str, queries: DataFrame, reference: DataFrame,
    plan: RunPlan, options: KnnOptions,
) -> PublishedNeighbors:
    """One output row per query, and for annoy the recall@k measured on the written neighbours."""
    written = spark.read.parquet(target)
    rows = written.count()
    if rows != plan.n_queries:
        raise RuntimeError(f"expected one output row per query ({plan.n_queries}), got {rows}")
    recall = None
    if plan.mode == "annoy":
        recall = measure_recall(
            written, queries, reference, plan.k, options.metric, options.exclude_self, options.recall_sample
        )
        log.info("annoy recall@%d = %.4f on %d queries", plan.k, recall["recall_at_k"], recall["sample_queries"])
    return PublishedNeighbors(result, target, rows, recall)


def knn_summary(
    reference_spec: VectorSpec, query_spec: VectorSpec | None, rejects_uri: str, options: KnnOptions,
    vectors: ValidatedVectors, plan: RunPlan, published: PublishedNeighbors, timings: dict, started: float,
    distance_by_rank: dict | None = None,
) -> dict:
    """The run's ``report/summary.json``; ``timings`` gets its total (since ``started``) here."""
    result, mode = published.result, plan.mode
    return KnnSummary(
        job=KNN_JOB,
        input=reference_spec.to_dict(),
        queries_input=query_spec.to_dict() if query_spec else None,
        self_join=query_spec is None,
        records={name: c.to_dict() for name, c in vectors.counts.items()},
        rejects_uri=rejects_uri if vectors.any_rejected else None,
        dimension=vectors.dimension,
        dimension_rule=vectors.dimension_rule,
        id_type=vectors.id_type,
        k=plan.k,
        metric=validate_metric(options.metric),
        exclude_self=options.exclude_self,
        reference_vectors=plan.n_reference,
        query_vectors=plan.n_queries,
        mode_requested=options.mode,
        mode=mode,
        mode_reason=plan.mode_reason,
        reference_bytes_estimate=plan.n_reference * vectors.dimension * 8,
        broadcast_max_bytes=options.broadcast_max_bytes,
        mode_details={**result.details, **result.counters()},
        query_rows_computed=result.rows_computed.value,
        blocks=result.details if mode == "blocked" else None,
        annoy={**result.details, **published.recall} if mode == "annoy" else None,
        output={"uri": published.uri, "rows": published.rows, "columns": list(NEIGHBOR_COLUMNS)},
        timings_seconds={**timings, "total": round(time.monotonic() - started, 3)},
        code_version=code_version(),
        distance_by_rank=distance_by_rank,
    ).to_dict()
