"""nb_predict's structure, schedule and params, pinned."""

import pytest

from helpers import REPO_ROOT


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_ROOT / "dags" / "nb_predict.py")).dags["nb_predict"]


def test_tasks_and_dependencies(dag):
    upstream = {task_id: sorted(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}
    assert upstream == {
        "plan": [],
        "choose_path": ["plan"],
        "predict": ["choose_path", "plan"],
        "vectorize": ["choose_path", "plan"],
        "shard_passes": ["plan", "vectorize"],
        "predict_shard": ["shard_passes"],
        "combine": ["plan", "predict_shard"],
        "report": ["combine", "plan", "predict"],
    }
    # Whichever path ran, the other is skipped: the report must still run.
    assert dag.task_dict["report"].trigger_rule == "none_failed_min_one_success"


def test_shard_passes_are_mapped_spark_submit_tasks(dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from nbknn_airflow.spark_submit import LibrarySparkSubmitOperator

    mapped = dag.task_dict["predict_shard"]
    assert isinstance(mapped, MappedOperator)
    assert mapped.operator_class is LibrarySparkSubmitOperator
    assert list(mapped.expand_input.value) == ["application_args"]
    assert mapped.partial_kwargs["application"] == str(REPO_ROOT / "spark_apps" / "nb_predict_shard.py")
    assert mapped.retries == 2
    for task_id, script in {"predict": "nb_predict.py", "vectorize": "nb_vectorize.py", "combine": "nb_combine.py"}.items():
        task = dag.task_dict[task_id]
        assert isinstance(task, LibrarySparkSubmitOperator)
        assert task.application == str(REPO_ROOT / "spark_apps" / script)
        assert task.retries == 2
    for script in ("nb_predict.py", "nb_vectorize.py", "nb_predict_shard.py", "nb_combine.py"):
        assert (REPO_ROOT / "spark_apps" / script).exists()


def test_runs_daily_and_when_a_model_is_published(dag):
    from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable

    from nbknn_airflow.assets import NB_MODEL

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert dag.timetable.timetable.expression == "0 6 * * *"
    assert list(dag.timetable.asset_condition.objects) == [NB_MODEL]
    assert dag.catchup is False


def test_params_and_defaults(dag):
    from nbknn.contract import DEFAULT_MAX_REJECT_FRACTION
    from nbknn.inputs.documents import DEFAULT_MAX_RECORD_BYTES

    assert set(dag.params.keys()) == {
        "input_uri", "input_format", "id_column", "label_column", "text_column", "model_version", "top_n",
        "max_reject_fraction", "max_record_bytes", "prediction_path", "single_pass_max_bytes", "top_terms",
    }
    assert dag.params["prediction_path"] == "auto"
    assert dag.params["model_version"] == "latest"
    assert dag.params["top_n"] == 0
    assert dag.params["top_terms"] == 0
    assert dag.params["max_reject_fraction"] == DEFAULT_MAX_REJECT_FRACTION
    assert dag.params["max_record_bytes"] == DEFAULT_MAX_RECORD_BYTES


@pytest.mark.parametrize(
    "name, value",
    [("top_n", -1), ("top_n", 101), ("top_n", "3"), ("top_terms", -1), ("top_terms", 101), ("top_terms", 2.5), ("model_version", "../v1"), ("model_version", "v:1"),
     ("input_format", "csv"), ("max_reject_fraction", 2), ("input_uri", ""), ("prediction_path", "fused"),
     ("input_uri", "../../etc"), ("input_uri", "ftp://host/x"), ("input_uri", "docs;rm -rf x"),
     ("single_pass_max_bytes", -1)],
)
def test_invalid_params_are_rejected(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        dag.params.get_param(name).resolve(value=value)


@pytest.mark.parametrize("name, value", [("top_n", 5), ("top_terms", 5), ("model_version", "20260301T000000Z-1a2b3c4d")])
def test_valid_params_are_accepted(dag, name, value):
    assert dag.params.get_param(name).resolve(value=value) == value
