"""knn_neighbors' plan: every URI and Spark argument of a run, and the refusals before Spark starts."""

from urllib.parse import urlparse

import pytest

from nbknn_airflow.paths import validate_hdfs_path
from nbknn_airflow.plans.base import PlanError
from nbknn_airflow.plans.knn_neighbors import plan_knn

RUN_ID = "manual__2026-11-22T01:53:18+00:00"
ROOT = "hdfs://namenode:8020/nbknn"
PARAMS = {
    "input_uri": "input/vectors",
    "input_format": "parquet",
    "id_column": "item_id",
    "vector_column": "embedding",
    "query_uri": None,
    "dim": None,
    "k": 12,
    "metric": "cosine",
    "mode": "auto",
    "exclude_self": True,
    "block_bytes_budget": 32 * 1024 * 1024,
    "broadcast_max_bytes": 1000,
    "annoy_trees": 20,
    "max_reject_fraction": 0.05,
}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    monkeypatch.setenv("NBKNN_DATA_ROOT", ROOT)
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_plan_computes_hdfs_safe_run_scoped_uris():
    plan = plan_knn(PARAMS, RUN_ID)
    key = plan["run_key"]
    assert ":" not in key and "+" not in key
    uris = plan["uris"]
    assert uris["input"] == f"{ROOT}/input/vectors"
    assert uris["run_dir"] == f"{ROOT}/neighbors/{key}"
    assert uris["neighbors"] == f"{ROOT}/neighbors/{key}/neighbors"
    assert uris["summary"] == f"{ROOT}/neighbors/{key}/report/summary.json"
    assert uris["report"] == f"{ROOT}/neighbors/{key}/report"
    assert uris["rejects"] == f"{ROOT}/rejects/knn_neighbors/{key}"
    assert uris["queries"] is None
    for uri in (uris["run_dir"], uris["summary"], uris["rejects"]):
        validate_hdfs_path(urlparse(uri).path)


def test_plan_passes_every_parameter_to_the_spark_application():
    args = plan_knn(PARAMS, RUN_ID)["knn_args"]
    expected = {
        "--input": f"{ROOT}/input/vectors",
        "--format": "parquet",
        "--id-column": "item_id",
        "--vector-column": "embedding",
        "--k": "12",
        "--metric": "cosine",
        "--mode": "auto",
        "--block-bytes-budget": str(32 * 1024 * 1024),
        "--broadcast-max-bytes": "1000",
        "--max-reject-fraction": "0.05",
    }
    for flag, value in expected.items():
        assert arg_after(args, flag) == value, flag
    assert "--exclude-self" in args and "--no-exclude-self" not in args
    assert "--queries" not in args and "--dim" not in args and "--annoy-trees" not in args
    assert all(isinstance(a, str) for a in args)


def test_plan_is_the_same_for_a_retry_and_differs_between_runs():
    assert plan_knn(PARAMS, RUN_ID) == plan_knn(PARAMS, RUN_ID)
    other = plan_knn(PARAMS, "manual__2026-11-22T01:53:18-00:00")
    assert other["uris"]["run_dir"] != plan_knn(PARAMS, RUN_ID)["uris"]["run_dir"]


def test_optional_query_set_dimension_and_annoy_arguments():
    params = {**PARAMS, "query_uri": f"{ROOT}/input/queries", "dim": 64, "mode": "annoy",
              "exclude_self": False}
    plan = plan_knn(params, RUN_ID)
    args = plan["knn_args"]
    assert arg_after(args, "--queries") == f"{ROOT}/input/queries"
    assert plan["uris"]["queries"] == f"{ROOT}/input/queries"
    assert arg_after(args, "--dim") == "64"
    assert arg_after(args, "--annoy-trees") == "20"
    assert "--no-exclude-self" in args


@pytest.mark.parametrize(
    "change, message",
    [
        ({"input_uri": "hdfs://elsewhere:8020/data"}, "outside the allowed roots"),
        ({"input_uri": "input/a:b"}, "holds ':'"),
        ({"query_uri": "../etc"}, "'.' or '..'"),
        ({"query_uri": "input/vectors"}, "leave it empty for a self-join"),
        ({"mode": "annoy", "metric": "chebyshev"}, "not supported in annoy mode"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"metric": "hamming"}, "metric must be one of"),
        ({"k": 0}, "k must be an integer >= 1"),
        ({"block_bytes_budget": 1000}, "block_bytes_budget must be >= 1048576"),
    ],
)
def test_plan_refuses_bad_parameters(change, message):
    with pytest.raises(PlanError, match=message):
        plan_knn({**PARAMS, **change}, RUN_ID)
