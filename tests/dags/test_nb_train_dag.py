"""nb_train's structure, params and their validation, pinned."""

import pytest

from helpers import REPO_ROOT


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags" / "nb_train.py")).dags["nb_train"]


def test_tasks_and_dependencies(dag):
    upstream = {task_id: sorted(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}
    assert upstream == {
        "plan": [],
        "class_prior": ["plan"],
        "term_counts": ["class_prior", "plan"],
        "merge_needed": ["plan", "term_counts"],
        "merge": ["merge_needed", "plan"],
        "selection_needed": ["merge", "plan"],
        "select": ["plan", "selection_needed"],
        "publish": ["plan", "select"],
        "register": ["plan", "publish"],
    }


def test_a_skipped_merge_skips_nothing_else(dag):
    """Full runs skip `merge`; `publish` must still run, and must not run after a failure."""
    assert dag.task_dict["merge_needed"].ignore_downstream_trigger_rules is False
    assert dag.task_dict["publish"].trigger_rule == "none_failed_min_one_success"


def test_a_skipped_select_skips_nothing_else(dag):
    """Runs without selection skip `select`; `publish` must still run. Full runs skip `merge`;
    selection_needed must still run after it (selection scores the final, merged counts)."""
    assert dag.task_dict["selection_needed"].ignore_downstream_trigger_rules is False
    assert dag.task_dict["selection_needed"].trigger_rule == "none_failed_min_one_success"
    assert dag.task_dict["publish"].trigger_rule == "none_failed_min_one_success"


def test_spark_tasks_are_spark_submit_operators_fed_by_the_plan(dag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    scripts = {
        "class_prior": "nb_class_prior.py",
        "term_counts": "nb_term_counts.py",
        "select": "nb_select.py",
        "merge": "nb_merge_model.py",
    }
    for task_id, script in scripts.items():
        task = dag.task_dict[task_id]
        assert isinstance(task, SparkSubmitOperator)
        assert task.application == str(REPO_ROOT / "spark_apps" / script)
        assert (REPO_ROOT / "spark_apps" / script).exists()
        assert task.retries == 2
    # publish renames and writes two small files through the Airflow storage layer: no JVM.
    assert not isinstance(dag.task_dict["publish"], SparkSubmitOperator)
    assert dag.task_dict["publish"].retries == 2


def test_schedule_and_register_outlet(dag):
    from airflow.sdk import CronDataIntervalTimetable

    from nbknn_airflow.assets import NB_MODEL

    # Data intervals of one UTC day: an incremental run reads the partition of its interval.
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 0 * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert NB_MODEL in dag.task_dict["register"].outlets


def test_params_and_defaults(dag):
    from nbknn.contract import DEFAULT_MAX_REJECT_FRACTION
    from nbknn.inputs.documents import DEFAULT_MAX_RECORD_BYTES
    from nbknn.inputs.tokenizer import DEFAULT_TOKEN_PATTERN

    assert set(dag.params.keys()) == {
        "input_uri", "input_format", "id_column", "label_column", "text_column", "model_type", "alpha",
        "fit_prior", "min_term_count", "num_shards", "max_entries_per_shard", "token_pattern", "lowercase",
        "normalization", "max_reject_fraction", "max_record_bytes", "mode", "base_version", "partition_format",
        "selection", "folds", "alpha_grid", "model_type_grid", "fit_prior_grid", "selection_metric",
    }
    assert dag.params["selection"] == "off"
    assert dag.params["mode"] == "auto"
    assert dag.params["base_version"] is None
    assert dag.params["partition_format"] == "date=%Y-%m-%d"
    # The UI shows these defaults; they must be the Spark library's own defaults.
    assert dag.params["token_pattern"] == DEFAULT_TOKEN_PATTERN
    assert dag.params["max_reject_fraction"] == DEFAULT_MAX_REJECT_FRACTION
    assert dag.params["max_record_bytes"] == DEFAULT_MAX_RECORD_BYTES


@pytest.mark.parametrize(
    "name, value",
    [
        ("alpha", 0),
        ("alpha", -1.0),
        ("alpha", "one"),
        ("model_type", "bernoulli"),
        ("input_format", "csv"),
        ("num_shards", 0),
        ("num_shards", 10_000),
        ("min_term_count", 0),
        ("max_reject_fraction", 1.5),
        ("max_entries_per_shard", 10),
        ("label_column", "bad column;"),
        ("input_uri", ""),
        ("mode", "sometimes"),
        ("base_version", "../other"),
        ("base_version", "v1:2"),
        ("partition_format", "static"),
    ],
)
def test_invalid_params_are_rejected(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param(name).resolve(value=value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("alpha", 0.01),
        ("model_type", "complement"),
        ("max_entries_per_shard", None),
        ("num_shards", 7),
        ("mode", "incremental"),
        ("mode", "full"),
        ("base_version", "20260301T000000Z-1a2b3c4d"),
        ("partition_format", "dt=%Y%m%d"),
    ],
)
def test_valid_params_are_accepted(dag, name, value):
    assert dag.params.get_param(name).resolve(value=value) == value
