"""The ``plan`` step of ``knn_neighbors``: validate a run's parameters, compute its URIs and arguments.

Layout of a run (DESIGN.md section 3):

    neighbors/<run-key>/neighbors/            id, neighbor_ids, distances (Parquet)
    neighbors/<run-key>/report/summary.json   counts, mode chosen and why, blocks, recall, timings
    rejects/knn_neighbors/<run-key>/          quarantined vectors with their reason
"""

from __future__ import annotations

from nbknn_airflow import param_schemas, paths, settings
from nbknn_airflow.plans import PlanError, check_params

JOB = "knn_neighbors"
NEIGHBORS_AREA = "neighbors"
MODES = ("auto", "broadcast", "blocked", "annoy")
METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan", "chebyshev", "canberra")
# Annoy knows these metrics only (cosine through its angular distance).
ANNOY_METRICS = ("euclidean", "sqeuclidean", "cosine", "manhattan")
# Smallest block budget worth running: below it a block holds a handful of rows and the job is
# all overhead.
MIN_BLOCK_BYTES_BUDGET = 1024 * 1024


def neighbors_run_dir(root: str, key: str) -> str:
    return paths.join(root, NEIGHBORS_AREA, key)


def plan_knn(params: dict, run_id: str) -> dict:
    """Everything a ``knn_neighbors`` run reads and writes, and the Spark application's arguments."""
    root = settings.data_root()
    roots = settings.input_roots()
    try:
        input_uri = paths.resolve_input(params["input_uri"], roots)
        query_uri = paths.resolve_input(params["query_uri"], roots) if params.get("query_uri") else None
    except paths.PathError as exc:
        raise PlanError(str(exc)) from None
    mode, metric, k = params["mode"], params["metric"], params["k"]
    if mode not in MODES:
        raise PlanError(f"mode must be one of {MODES} (got {mode!r})")
    if metric not in METRICS:
        raise PlanError(f"metric must be one of {METRICS} (got {metric!r})")
    if mode == "annoy" and metric not in ANNOY_METRICS:
        raise PlanError(f"metric {metric!r} is not supported in annoy mode: expected one of {ANNOY_METRICS}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise PlanError(f"k must be an integer >= 1 (got {k!r})")
    budget = params["block_bytes_budget"]
    if isinstance(budget, int) and budget < MIN_BLOCK_BYTES_BUDGET:
        raise PlanError(
            f"block_bytes_budget must be >= {MIN_BLOCK_BYTES_BUDGET} (got {params['block_bytes_budget']})"
        )
    if query_uri is not None and query_uri == input_uri:
        raise PlanError("query_uri is the input itself: leave it empty for a self-join")
    check_params(params, param_schemas.KNN_NEIGHBORS, optional=("query_uri", "dim"))

    key = paths.run_key(run_id)
    run_dir = neighbors_run_dir(root, key)
    rejects = paths.rejects_dir(root, JOB, key)
    args = [
        "--input", input_uri,
        "--format", params["input_format"],
        "--id-column", params["id_column"],
        "--vector-column", params["vector_column"],
        "--k", str(k),
        "--metric", metric,
        "--mode", mode,
        "--exclude-self" if params["exclude_self"] else "--no-exclude-self",
        "--block-bytes-budget", str(params["block_bytes_budget"]),
        "--broadcast-max-bytes", str(params["broadcast_max_bytes"]),
        "--rejects", rejects,
        "--max-reject-fraction", str(params["max_reject_fraction"]),
        "--output-dir", run_dir,
    ]
    if query_uri is not None:
        args += ["--queries", query_uri]
    if params.get("dim") is not None:
        args += ["--dim", str(params["dim"])]
    if mode == "annoy":
        args += ["--annoy-trees", str(params["annoy_trees"])]
    return {
        "run_key": key,
        "uris": {
            "input": input_uri,
            "queries": query_uri,
            "run_dir": run_dir,
            "neighbors": paths.join(run_dir, "neighbors"),
            "summary": paths.join(run_dir, "report", "summary.json"),
            "rejects": rejects,
        },
        # Flat key: pushed as its own XCom (multiple_outputs) for the Spark task's arguments.
        "knn_args": args,
    }
