"""nb_train end to end: `airflow dags test` with the real SparkSubmitOperator and spark-submit.

Training with selection=kfold goes through Airflow in the demo (tests/e2e/test_demo.py), with
GridSearchCV as the oracle there."""

import json

import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB

from helpers import latest_run_task_states, run_dag_test, write_jsonl
from nbknn.inputs.tokenizer import tokenize

pytestmark = pytest.mark.e2e


def test_nb_train_dag_publishes_a_complete_model(r8_training_run):
    run = r8_training_run
    docs, manifest, version, model_dir = run.docs, run.manifest, run.version, run.model_dir
    models = model_dir.parent
    assert manifest["version"] == version
    assert manifest["model"] == {"type": "multinomial", "alpha": 0.5, "fit_prior": True}
    assert manifest["records"]["read"] == len(docs) + len(run.bad_records)
    assert manifest["records"]["accepted"] == len(docs)
    assert manifest["records"]["rejected_by_reason"] == {"malformed_json": 1, "missing_text": 1}
    assert manifest["num_shards"] == run.num_shards == 2
    assert manifest["lineage"]["run_id"].startswith("manual__")
    assert sorted(p.name for p in (model_dir / "term_counts").glob("shard=*")) == ["shard=0", "shard=1"]
    assert not (models / "_staging" / version).exists()

    rejects = [json.loads(line) for f in run.root.glob("rejects/nb_train/*/part-*") for line in open(f)]
    assert sorted(r["reason"] for r in rejects) == ["malformed_json", "missing_text"]

    vectorizer = CountVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)
    X = vectorizer.fit_transform([d["text"] for d in docs])
    nb = MultinomialNB().fit(X, [d["label"] for d in docs])
    assert manifest["counts"]["vocabulary_size"] == X.shape[1]
    assert manifest["counts"]["entries"] == int((nb.feature_count_ > 0).sum())
    assert manifest["counts"]["tokens"] == int(X.sum())
    assert sum(s["entries"] for s in manifest["shards"]) == manifest["counts"]["entries"]
    states = dict(run.task_states)
    # A manual run trains in full mode: there is nothing to merge into.
    assert states.pop(("merge", -1)) == "skipped", states
    assert states.pop(("select", -1)) == "skipped", states  # selection is off by default
    assert set(states.values()) == {"success"}, states
    assert manifest["lineage"]["mode"] == "full" and manifest["lineage"]["parent_version"] is None
    assert run.asset_extras[-1] == {
        "version": version,
        "uri": model_dir.as_uri(),
        "num_shards": 2,
    }


def test_nb_train_dag_fails_loudly_over_max_reject_fraction(airflow_db, corpus, tmp_path):
    docs = corpus("reuters-r8", "train", 20)
    write_jsonl(tmp_path / "input" / "bad" / "part-0.jsonl", [*docs, *["{broken"] * 5])
    conf = {"input_uri": "input/bad", "max_reject_fraction": 0.01}
    result = run_dag_test("nb_train", {**conf}, tmp_path.as_uri())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "rejected 5 of 25 records (20.00%), more than max_reject_fraction 1.00%" in output
    assert not (tmp_path / "models" / "naive_bayes" / "LATEST").exists()
    # The quarantine is written before the run fails, so the operator can see why.
    assert list(tmp_path.glob("rejects/nb_train/*/part-*"))
    # Bad input is not retried: the class_prior task failed on its first try.
    states = latest_run_task_states("nb_train")
    assert states[("class_prior", -1)] == "failed", states
