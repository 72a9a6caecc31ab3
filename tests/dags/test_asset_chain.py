"""The DAGs chain through assets: a published model triggers nb_predict, published document vectors
trigger knn_neighbors, and no consumer's cron runs before its producer's on the same day."""

from __future__ import annotations

import pytest

from helpers import REPO_ROOT


@pytest.fixture(scope="module")
def dags():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags")).dags


def _cron_minutes(timetable) -> int:
    """Minutes after midnight UTC of a daily cron timetable (or of the cron part of an asset-or-time one)."""
    minute, hour, *_ = getattr(timetable, "timetable", timetable).expression.split()
    return int(hour) * 60 + int(minute)


def test_doc_vectors_publishes_the_vectors_asset_and_knn_neighbors_follows_it(dags):
    from airflow.sdk import AssetOrTimeSchedule

    from nbknn_airflow.assets import DOC_VECTORS

    register = dags["doc_vectors"].task_dict["register"]
    assert register.outlets == [DOC_VECTORS]
    assert register.upstream_task_ids == {"plan", "vectors"}
    knn = dags["knn_neighbors"].timetable
    assert isinstance(knn, AssetOrTimeSchedule)
    assert list(knn.asset_condition.objects) == [DOC_VECTORS]


@pytest.mark.parametrize("producer, consumer", [("nb_train", "nb_predict"), ("doc_vectors", "knn_neighbors")])
def test_no_consumer_runs_before_its_producer_on_the_same_day(dags, producer, consumer):
    assert _cron_minutes(dags[producer].timetable) < _cron_minutes(dags[consumer].timetable)


KNN_PARAMS = {
    "input_uri": "input/knn_neighbors/vectors", "input_format": "parquet", "id_column": "id",
    "vector_column": "vector", "query_uri": None, "dim": None, "k": 5, "metric": "cosine", "mode": "auto",
    "exclude_self": True, "block_bytes_budget": 64 * 2**20, "broadcast_max_bytes": 256 * 2**20,
    "annoy_trees": 50, "max_reject_fraction": 0.01,
}


def test_a_run_triggered_by_published_vectors_reads_that_table(tmp_path, monkeypatch):
    from nbknn_airflow.plans.base import PlanError
    from nbknn_airflow.plans.knn_neighbors import plan_knn

    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    params = KNN_PARAMS
    published = f"{tmp_path.as_uri()}/vectors/elsewhere"
    plan = plan_knn(params, "asset_triggered__2026-03-01T05:00:00+00:00", triggered_uri=published)
    assert plan["uris"]["input"] == published
    assert plan["knn_args"][plan["knn_args"].index("--input") + 1] == published
    assert plan_knn(params, "manual__1")["uris"]["input"] == f"{tmp_path.as_uri()}/input/knn_neighbors/vectors"
    # An event's URI is an input like any other: confined to the allowed roots.
    with pytest.raises(PlanError, match="outside the allowed roots"):
        plan_knn(params, "asset_triggered__2", triggered_uri="file:///etc")


def test_a_scheduled_run_before_any_vectors_skips_and_a_later_one_plans(tmp_path, monkeypatch):
    from nbknn_airflow.plans.base import NothingToDo
    from nbknn_airflow.plans.knn_neighbors import plan_knn

    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    params = KNN_PARAMS
    vectors = tmp_path / "input" / "knn_neighbors" / "vectors"
    with pytest.raises(NothingToDo, match="no vectors at .*input/knn_neighbors/vectors"):
        plan_knn(params, "scheduled__2026-03-01T05:30:00+00:00", run_type="scheduled")
    vectors.mkdir(parents=True)
    (vectors / "_SUCCESS").write_text("")  # a folder with only what readers skip holds no vectors
    with pytest.raises(NothingToDo):
        plan_knn(params, "scheduled__2026-03-02T05:30:00+00:00", run_type="scheduled")
    (vectors / "part-0.parquet").write_bytes(b"PAR1")
    plan = plan_knn(params, "scheduled__2026-03-03T05:30:00+00:00", run_type="scheduled")
    assert plan["uris"]["input"] == vectors.as_uri()
    # A run triggered by hand is never skipped (a missing input fails its Spark task, naming the URI).
    assert plan_knn(params, "manual__2", run_type="manual")["uris"]["input"] == vectors.as_uri()
