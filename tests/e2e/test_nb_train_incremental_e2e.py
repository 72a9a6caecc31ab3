"""nb_train incremental end to end: two runs with consecutive data intervals through
`airflow dags test` (real SparkSubmitOperator and spark-submit) give a parent/child pair of
models, the child holding the counts of both days; the same interval again is refused."""

import json

import pytest
from selection_oracles import check_top_terms_up_to_ties
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

from helpers import latest_run_task_states, run_dag_test, write_jsonl
from nbknn.inputs.tokenizer import tokenize

pytestmark = pytest.mark.e2e

CONF = {"input_uri": "input/labelled", "mode": "incremental", "num_shards": 2}


def test_two_interval_runs_publish_a_parent_and_a_child_model(airflow_db, corpus, tmp_path):
    docs = corpus("reuters-r8", "train", 360)
    days = {"2026-03-01": docs[:180], "2026-03-02": docs[180:]}
    for day, part in days.items():
        write_jsonl(tmp_path / "input" / "labelled" / f"date={day}" / "part-0.jsonl", part)
    models = tmp_path / "models" / "naive_bayes"

    def run(logical_date):
        result = run_dag_test("nb_train", CONF, tmp_path.as_uri(), logical_date=logical_date)
        return result, result.stdout[-5000:] + result.stderr[-5000:]

    # `dags test` at logical date 03-02 gets the interval [03-01, 03-02): the partition of 03-01.
    result, output = run("2026-03-02")
    assert result.returncode == 0, output
    parent = (models / "LATEST").read_text().strip()
    parent_manifest = json.loads((models / parent / "manifest.json").read_text())
    states = latest_run_task_states("nb_train")
    assert states[("merge", -1)] == "skipped", states  # no base model yet: trained on the partition
    assert states[("publish", -1)] == states[("register", -1)] == "success", states
    assert parent_manifest["lineage"]["parent_version"] is None
    assert parent_manifest["counts"]["documents"] == 180
    # Without selection the model still has its report: each class's top terms at alpha = 1.
    check_top_terms_up_to_ties(parent_manifest["report"]["top_terms"], days["2026-03-01"], 1.0)

    result, output = run("2026-03-03")
    assert result.returncode == 0, output
    child = (models / "LATEST").read_text().strip()
    assert child != parent
    states = latest_run_task_states("nb_train")
    assert states.pop(("select", -1)) == "skipped", states  # selection is off
    assert set(states.values()) == {"success"}, states
    manifest = json.loads((models / child / "manifest.json").read_text())
    lineage = manifest["lineage"]
    assert lineage["mode"] == "incremental"
    assert lineage["parent_version"] == parent
    assert lineage["data_interval"] == ["2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00"]
    assert [p["uri"].rsplit("/", 1)[1] for p in lineage["partitions"]] == ["date=2026-03-01", "date=2026-03-02"]
    assert [p["version"] for p in lineage["partitions"]] == [parent, child]
    assert (models / parent / "manifest.json").exists()  # the parent stays published

    # The child counts both days, as scikit-learn does on their union.
    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    X = vectorizer.fit_transform([d["text"] for d in docs])
    nb = MultinomialNB().fit(X, [d["label"] for d in docs])
    assert manifest["counts"]["documents"] == len(docs)
    assert manifest["counts"]["classes"] == len(nb.classes_)
    assert manifest["counts"]["vocabulary_size"] == X.shape[1]
    assert manifest["counts"]["entries"] == int((nb.feature_count_ > 0).sum())
    assert manifest["counts"]["tokens"] == int(X.sum())
    assert manifest["records"]["accepted"] == 180  # this run's own input: one day
    assert manifest["num_shards"] == 2
    # merge rewrote the report for the merged counts.
    check_top_terms_up_to_ties(manifest["report"]["top_terms"], docs, 1.0)
    assert "Selection was off" in (models / child / manifest["report"]["page"]).read_text()

    # The same interval again (a new run, not a retry of the last one): refused before any Spark job.
    result, output = run("2026-03-03")
    assert result.returncode != 0
    assert "date=2026-03-02 is already part of model" in result.stdout + result.stderr
    assert (models / "LATEST").read_text().strip() == child
    assert latest_run_task_states("nb_train")[("plan", -1)] == "failed"


def test_incremental_selection_adds_the_day_to_the_fold_counts_through_airflow(airflow_db, corpus, tmp_path):
    """selection=kfold on both days: the first run (no base) keeps its per-fold counts, the second
    merges, then selects over both days' documents (select runs after merge): the published point
    and its mean scores are GridSearchCV's on the union, with the same folds."""
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.naive_bayes import ComplementNB
    from sklearn.pipeline import Pipeline

    from nbknn import contract

    docs = corpus("reuters-r8", "train", 360)
    days = {"2026-03-01": docs[:180], "2026-03-02": docs[180:]}
    for day, part in days.items():
        write_jsonl(tmp_path / "input" / "labelled" / f"date={day}" / "part-0.jsonl", part)
    models = tmp_path / "models" / "naive_bayes"
    grid = {"alpha_grid": [0.1, 1.0], "model_type_grid": ["multinomial", "complement"], "fit_prior_grid": [True]}
    conf = {**CONF, "selection": "kfold", "folds": 3, "selection_metric": "accuracy", **grid}

    manifests = []
    for logical_date, merge_state in (("2026-03-02", "skipped"), ("2026-03-03", "success")):
        result = run_dag_test("nb_train", conf, tmp_path.as_uri(), logical_date=logical_date)
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
        states = latest_run_task_states("nb_train")
        assert states[("merge", -1)] == merge_state and states[("select", -1)] == "success", states
        manifests.append(json.loads((models / (models / "LATEST").read_text().strip() / "manifest.json").read_text()))
    parent, child = manifests
    assert parent["fold_counts"]["folds"] == 3 and parent["fold_counts"]["base_version"] is None
    assert child["lineage"]["parent_version"] == parent["version"]
    assert child["fold_counts"]["base_version"] == parent["version"]
    assert child["fold_counts"]["fold_documents"] == child["selection"]["fold_documents"]
    assert sum(child["selection"]["fold_documents"]) == len(docs)

    X = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None).fit_transform(d["text"] for d in docs)
    search = GridSearchCV(
        Pipeline([("nb", MultinomialNB())]),
        [{"nb": [nb], "nb__alpha": grid["alpha_grid"], "nb__fit_prior": [True]}
         for nb in (MultinomialNB(), ComplementNB(norm=False))],
        scoring="accuracy", cv=PredefinedSplit([contract.fold_of(d["id"], 3) for d in docs]),
    ).fit(X, [d["label"] for d in docs])
    best = search.best_params_
    assert child["model"] == {
        "type": "multinomial" if isinstance(best["nb"], MultinomialNB) else "complement",
        "alpha": best["nb__alpha"],
        "fit_prior": True,
    }
    assert [row["mean_accuracy"] for row in child["selection"]["points"]] == pytest.approx(
        list(search.cv_results_["mean_test_score"]), abs=1e-12
    )
    assert "Selection was off" not in (models / child["version"] / child["report"]["page"]).read_text()
