"""nb_train incremental end to end: runs with consecutive data intervals give a chain of models,
each child holding the counts of every day so far, with selection kept exact after a merge; the
plan refuses the same interval again. One chain of runs serves every check.

Day 2 merges and then selects through `airflow dags test` (real SparkSubmitOperator and
spark-submit): that path goes through Airflow here and nowhere else. Days 1 (no base model yet,
selection=kfold) and 3 (merge, selection off) are the DAG's plan and tasks run in process on the
shared SparkSession: the plan function with the DAG's Param defaults and the run's conf, each Spark
task's entry script with the plan's arguments, and the publish task's function. Their task paths
go through Airflow elsewhere: merge skipped and select run in the demo, select skipped in
`make airflow`'s and the compose stack's runs (the latter an incremental run without a base
model), merge run here on day 2."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from selection_oracles import check_top_terms_up_to_ties, chosen_point, sklearn_search

from helpers import (
    dag_param_defaults,
    latest_run_task_states,
    model_differences_from_sklearn,
    run_dag_test,
    run_entry_in_process,
    sklearn_counts,
    write_jsonl,
)

pytestmark = pytest.mark.e2e

CONF = {"input_uri": "input/labelled", "mode": "incremental", "num_shards": 2}


def plan_interval(conf: dict, day: datetime, run_type: str = "scheduled") -> dict:
    """The plan task of an nb_train run for the interval [day, day + 1): a scheduled run, or
    (``backfill``) another run of the same interval."""
    from nbknn_airflow.plans.nb_train import plan_training

    interval = (day, day + timedelta(days=1))
    return plan_training({**dag_param_defaults("nb_train"), **conf}, f"{run_type}__{interval[1].isoformat()}",
                         interval[1], run_type, interval)


def train_interval_in_process(spark, conf: dict, day: datetime) -> dict:
    """One scheduled nb_train run for the interval [day, day + 1) without Airflow: its plan, then
    class_prior, term_counts, merge and select (when planned) and publish, as the DAG orders them.
    Returns the plan."""
    from nbknn_airflow.model_publish import publish_model

    plan = plan_interval(conf, day)
    run_entry_in_process(spark, "nb_class_prior.py", plan["class_prior_args"])
    run_entry_in_process(spark, "nb_term_counts.py", plan["term_counts_args"])
    if plan["merge"]:
        run_entry_in_process(spark, "nb_merge_model.py", plan["merge_args"])
    if plan["selection"]:
        run_entry_in_process(spark, "nb_select.py", plan["select_args"])
    publish_model(**plan["publish"])
    return plan


def test_interval_runs_chain_models_and_selection_stays_exact_after_a_merge(airflow_db, spark, corpus, tmp_path,
                                                                           monkeypatch):
    """Day 1 (in process) with selection=kfold and no base model: trained on its partition (no
    merge), its per-fold counts kept. Day 2 (Airflow) with selection: merged into day 1's model,
    then selected over both days' documents (select after merge): GridSearchCV's choice and mean
    scores on the union, same folds. Day 3 (in process) without selection: merged, no select, the
    report at the Params' alpha. Then day 3's interval again: refused by its plan, before any Spark
    job."""
    from nbknn import contract

    docs = corpus("reuters-r8", "train", 360)
    days = {"2026-03-01": docs[:120], "2026-03-02": docs[120:240], "2026-03-03": docs[240:]}
    for day, part in days.items():
        write_jsonl(tmp_path / "input" / "labelled" / f"date={day}" / "part-0.jsonl", part)
    models = tmp_path / "models" / "naive_bayes"
    grid = {"alpha_grid": [0.1, 1.0], "model_type_grid": ["multinomial", "complement"], "fit_prior_grid": [True]}
    selecting = {**CONF, "selection": "kfold", "folds": 3, "selection_metric": "accuracy", **grid}

    def published():
        return json.loads((models / (models / "LATEST").read_text().strip() / "manifest.json").read_text())

    # Day 1: no base model yet, trained on the partition; selection keeps the per-fold counts.
    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)
    train_interval_in_process(spark, selecting, datetime(2026, 3, 1, tzinfo=timezone.utc))
    parent = published()
    assert parent["lineage"]["parent_version"] is None
    assert parent["counts"]["documents"] == 120
    assert parent["fold_counts"]["folds"] == 3 and parent["fold_counts"]["base_version"] is None

    # Day 2: merged, then selected over both days' documents.
    # `dags test` at logical date D gets the interval [D - 1 day, D): the partition of D - 1 day.
    result = run_dag_test("nb_train", selecting, tmp_path.as_uri(), logical_date="2026-03-03")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    states = latest_run_task_states("nb_train")
    assert states[("merge", -1)] == "success" and states[("select", -1)] == "success", states
    child = published()
    assert child["lineage"]["parent_version"] == parent["version"]
    assert child["fold_counts"]["base_version"] == parent["version"]
    assert child["fold_counts"]["fold_documents"] == child["selection"]["fold_documents"]
    union = docs[:240]
    assert sum(child["selection"]["fold_documents"]) == len(union)
    _, X, _ = sklearn_counts(union)
    search = sklearn_search([contract.fold_of(d["id"], 3) for d in union], X, [d["label"] for d in union],
                            "accuracy", refit=True, alphas=grid["alpha_grid"], fit_priors=grid["fit_prior_grid"])
    chosen = chosen_point(search)
    assert child["model"] == {"type": chosen["model_type"], "alpha": chosen["alpha"], "fit_prior": chosen["fit_prior"]}
    assert [row["mean_accuracy"] for row in child["selection"]["points"]] == pytest.approx(
        list(search.cv_results_["mean_test_score"]), abs=1e-12
    )
    assert "Selection was off" not in (models / child["version"] / child["report"]["page"]).read_text()

    # Day 3 without selection: merged into day 2's model, no select.
    plan = train_interval_in_process(spark, CONF, datetime(2026, 3, 3, tzinfo=timezone.utc))
    assert plan["merge"] and not plan["selection"], plan
    grandchild = published()
    lineage = grandchild["lineage"]
    assert lineage["mode"] == "incremental"
    assert lineage["parent_version"] == child["version"]
    assert lineage["data_interval"] == ["2026-03-03T00:00:00+00:00", "2026-03-04T00:00:00+00:00"]
    assert [p["uri"].rsplit("/", 1)[1] for p in lineage["partitions"]] == [f"date={day}" for day in days]
    assert [p["version"] for p in lineage["partitions"]] == [parent["version"], child["version"],
                                                             grandchild["version"]]
    for version in (parent["version"], child["version"]):
        assert (models / version / "manifest.json").exists()  # the ancestors stay published

    # The grandchild counts every day, as scikit-learn does on their union.
    # Every table, class by class and term by term, and the manifest's totals.
    assert model_differences_from_sklearn(models / grandchild["version"], docs) == []
    _, X, nb = sklearn_counts(docs)
    assert grandchild["counts"]["documents"] == len(docs)
    assert grandchild["counts"]["classes"] == len(nb.classes_)
    assert grandchild["counts"]["vocabulary_size"] == X.shape[1]
    assert grandchild["counts"]["entries"] == int((nb.feature_count_ > 0).sum())
    assert grandchild["counts"]["tokens"] == int(X.sum())
    assert grandchild["records"]["accepted"] == 120  # this run's own input: one day
    assert grandchild["num_shards"] == 2
    # merge rewrote the report for the merged counts, at the Params' alpha (selection off).
    check_top_terms_up_to_ties(grandchild["report"]["top_terms"], docs, 1.0)
    assert "Selection was off" in (models / grandchild["version"] / grandchild["report"]["page"]).read_text()

    # The same interval again (a new run, not a retry of the last one: a backfill of it): refused by
    # the plan, before any Spark job. (A plan that fails stops a DAG run through Airflow in
    # tests/reliability/test_hostile_params.py.)
    from nbknn_airflow.plans.base import PlanError

    with pytest.raises(PlanError, match=rf"date=2026-03-03 is already part of model {grandchild['version']}"):
        plan_interval(CONF, datetime(2026, 3, 3, tzinfo=timezone.utc), run_type="backfill")
    assert (models / "LATEST").read_text().strip() == grandchild["version"]
