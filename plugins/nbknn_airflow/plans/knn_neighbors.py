"""The ``plan`` step of ``knn_neighbors``: validate a run's parameters, compute its URIs and arguments.

Layout of a run (:mod:`nbknn.contract`):

    neighbors/<run-key>/neighbors/            id, neighbor_ids, distances (Parquet)
    neighbors/<run-key>/report/summary.json   counts, mode chosen and why, blocks, recall, timings
    rejects/knn_neighbors/<run-key>/          quarantined vectors with their reason
"""

from __future__ import annotations

from nbknn import contract
from nbknn.contract import ANNOY_METRICS, KNN_JOB, KNN_METRICS, KNN_MODES, MIN_BLOCK_BYTES_BUDGET, NEIGHBORS_AREA
from nbknn_airflow import param_schemas, paths, settings, storage
from nbknn_airflow.plans.base import NothingToDo, PlanError, check_params, resolve_input


def neighbors_run_dir(root: str, key: str) -> str:
    return paths.join(root, NEIGHBORS_AREA, key)


def plan_knn(params: dict, run_id: str, triggered_uri: str | None = None, run_type: str | None = None) -> dict:
    """Everything a ``knn_neighbors`` run reads and writes, and the Spark application's arguments.

    ``triggered_uri``: the vectors table whose publication (an asset event) triggered the run; it
    replaces ``input_uri`` and is confined to the allowed roots like any input. A scheduled run
    whose input holds no vectors yet (doc_vectors never published) has nothing to search:
    :class:`NothingToDo`, which the DAG turns into a skip."""
    root = settings.data_root()
    roots = settings.input_roots()
    input_uri = resolve_input(triggered_uri or params["input_uri"], roots)
    if str(run_type).lower() == "scheduled" and not storage.holds_data(input_uri):
        raise NothingToDo(f"no vectors at {input_uri} yet (doc_vectors publishes them): nothing to search")
    query_uri = resolve_input(params["query_uri"], roots) if params.get("query_uri") else None
    _check_knn_params(params, input_uri, query_uri)

    key = paths.run_key(run_id)
    run_dir = neighbors_run_dir(root, key)
    rejects = paths.rejects_dir(root, KNN_JOB, key)
    return {
        "run_key": key,
        "uris": {
            "input": input_uri,
            "queries": query_uri,
            "run_dir": run_dir,
            "neighbors": contract.neighbors_uri(run_dir),
            "summary": contract.knn_summary_uri(run_dir),
            "report": contract.knn_report_uri(run_dir),
            "rejects": rejects,
        },
        # Flat key: pushed as its own XCom (multiple_outputs) for the Spark task's arguments.
        "knn_args": _knn_args(params, input_uri, query_uri, run_dir, rejects),
    }


def _check_knn_params(params: dict, input_uri: str, query_uri: str | None) -> None:
    """The checks a Param schema cannot express (or says less clearly), then the schemas themselves."""
    mode, metric, k = params["mode"], params["metric"], params["k"]
    if mode not in KNN_MODES:
        raise PlanError(f"mode must be one of {KNN_MODES} (got {mode!r})")
    if metric not in KNN_METRICS:
        raise PlanError(f"metric must be one of {KNN_METRICS} (got {metric!r})")
    if mode == "annoy" and metric not in ANNOY_METRICS:
        raise PlanError(f"metric {metric!r} is not supported in annoy mode: expected one of {tuple(ANNOY_METRICS)}")
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


def _knn_args(params: dict, input_uri: str, query_uri: str | None, run_dir: str, rejects: str) -> list[str]:
    args = [
        "--input", input_uri,
        "--format", params["input_format"],
        "--id-column", params["id_column"],
        "--vector-column", params["vector_column"],
        "--k", str(params["k"]),
        "--metric", params["metric"],
        "--mode", params["mode"],
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
    if params["mode"] == "annoy":
        args += ["--annoy-trees", str(params["annoy_trees"])]
    return args
