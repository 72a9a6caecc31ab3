"""nb_train end to end: `airflow dags test` with the real SparkSubmitOperator and spark-submit, on
input over max_reject_fraction.

The paths that publish a model go through Airflow elsewhere, each once, with scikit-learn as the
oracle: full training without selection in `make airflow` (tests/deploy/test_make_airflow.py),
with selection=kfold in the demo (tests/e2e/test_demo.py), incremental training in
tests/e2e/test_nb_train_incremental_e2e.py, a scheduled run on a cluster in the compose stack."""

import pytest

from helpers import latest_run_task_states, run_dag_test, write_jsonl

pytestmark = pytest.mark.e2e


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
