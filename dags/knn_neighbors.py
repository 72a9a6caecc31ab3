"""
### knn_neighbors: the k nearest neighbours of every vector of a data set

Runs every day at 05:30 UTC (after `doc_vectors`' 04:30) **and** whenever `doc_vectors` publishes a
table (the `nbknn_document_vectors` asset): a run triggered by that event reads the table the event
names. Reads `(id, vector)` records (Parquet with an array column, or JSON Lines) from the data root and
writes, for every vector, its `k` nearest neighbours with their distances, nearest first, ties
broken by id, under `neighbors/<run-key>/neighbors/` (Parquet: `id, neighbor_ids, distances`).

| task | what it does |
|---|---|
| `plan` | validates the parameters, computes every URI of the run (see its XCom) |
| `knn` | Spark: quarantines bad vectors (`rejects/knn_neighbors/<run-key>/`), computes and publishes the neighbours and `report/summary.json` |
| `report` | no Spark: draws `report/distance_by_rank.png` from the summary's numbers (the distance to the r-th neighbour, median and 10-90 % band per rank) and returns the headline numbers |

The exact modes (all but `annoy`) give the same neighbours as scikit-learn brute force.

A vector with a null, NaN or infinite component or a dimension other than the data set's is
quarantined; duplicate ids fail the run; so does a reject fraction above `max_reject_fraction`.
Retrying is safe: the run's output is replaced whole.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from nbknn import contract
from nbknn_airflow import param_schemas
from nbknn_airflow.assets import DOC_VECTORS
from nbknn_airflow.dag_params import column_param, default_args, max_reject_fraction_param, schema_param, uri_param
from nbknn_airflow.spark_submit import spark_app

S = param_schemas.KNN_NEIGHBORS
PARAMS = {
    "input_uri": uri_param("input/knn_neighbors/vectors", "Vectors"),
    "input_format": schema_param("parquet", S, "input_format", "Format of the input (and query) files."),
    "id_column": column_param("id", "Name of the id field (string or integer)."),
    "vector_column": column_param("vector", "Name of the vector field (array of numbers)."),
    "query_uri": schema_param(
        None,
        S,
        "query_uri",
        "Separate query vectors (same format and columns); empty = every input vector is a query.",
    ),
    "dim": schema_param(None, S, "dim", "Dimension of the vectors; empty = the most common length in the input."),
    "k": schema_param(contract.DEFAULT_K, S, "k", "Neighbours per vector."),
    "metric": schema_param(
        contract.DEFAULT_METRIC,
        S,
        "metric",
        "Distance (as scikit-learn computes it; annoy mode: euclidean, sqeuclidean, cosine, manhattan).",
    ),
    "mode": schema_param(
        "auto",
        S,
        "mode",
        "broadcast = the reference set collected and broadcast to every task; "
        "blocked = the reference set in blocks sized by block_bytes_budget, never collected (any reference size); "
        "both are exact (a float32 GEMM kernel with exact float64 re-ranking for euclidean, sqeuclidean and "
        "cosine; scikit-learn's brute force for the other metrics); "
        "auto = broadcast if the reference fits broadcast_max_bytes, else blocked; "
        "annoy = approximate (an Annoy index shipped to the workers), reports its measured recall@k.",
    ),
    "exclude_self": schema_param(True, S, "exclude_self", "Leave out the reference vector with the query's own id."),
    "block_bytes_budget": schema_param(
        contract.DEFAULT_BLOCK_BYTES_BUDGET,
        S,
        "block_bytes_budget",
        "Exact modes: memory of one task's step (a pair of row groups, or a query chunk and a reference "
        "block); sizes the groups and blocks.",
    ),
    "broadcast_max_bytes": schema_param(
        contract.DEFAULT_BROADCAST_MAX_BYTES,
        S,
        "broadcast_max_bytes",
        "Largest reference matrix (n x dim x 8 bytes) collected on the driver (broadcast, annoy, auto).",
    ),
    "annoy_trees": schema_param(contract.DEFAULT_ANNOY_TREES, S, "annoy_trees", "annoy mode: trees of the index."),
    "max_reject_fraction": max_reject_fraction_param(),
}


@dag(
    dag_id="knn_neighbors",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("30 5 * * *", timezone="UTC"),
        assets=[DOC_VECTORS],
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["nbknn", "knn", "spark"],
    params=PARAMS,
    doc_md=__doc__,
    default_args=default_args(timedelta(hours=6)),
)
def knn_neighbors():
    @task(retries=0, multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def plan(params: dict, run_id: str, dag_run=None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from nbknn_airflow.plans.base import NothingToDo
        from nbknn_airflow.plans.knn_neighbors import plan_knn

        events = sorted((triggering_asset_events or {}).get(DOC_VECTORS, []), key=lambda event: event.timestamp)
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        try:
            return plan_knn(params, run_id, events[-1].extra.get("uri") if events else None, run_type)
        except NothingToDo as exc:
            raise AirflowSkipException(str(exc)) from None

    @task(execution_timeout=timedelta(minutes=10))
    def report(uris: dict) -> dict:
        from nbknn_airflow import storage
        from nbknn_airflow.report_pages import publish_knn_picture

        summary = storage.read_json(uris["summary"])
        picture = publish_knn_picture(summary, uris["report"])
        return contract.KnnSummary.from_dict(summary).headline(picture)

    run_plan = plan()
    knn = spark_app("knn", "knn_neighbors.py", run_plan["knn_args"])
    run_plan >> knn >> report(run_plan["uris"])


knn_neighbors()
