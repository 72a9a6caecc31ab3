"""nb_train's plan: every URI and Spark argument of a run, and the refusals before Spark starts."""

from datetime import datetime, timezone

import pytest

from nbknn_airflow.plans import PlanError, plan_training

RUN_ID = "manual__2026-11-22T01:53:18+00:00"
RUN_AFTER = datetime(2026, 11, 22, 1, 53, 18, tzinfo=timezone.utc)
PARAMS = {
    "input_uri": "input/docs",
    "input_format": "jsonl",
    "id_column": "id",
    "label_column": "label",
    "text_column": "text",
    "model_type": "multinomial",
    "alpha": 0.5,
    "fit_prior": True,
    "min_term_count": 2,
    "num_shards": 3,
    "max_entries_per_shard": None,
    "token_pattern": r"[\p{L}\p{M}\p{N}]{2,}",
    "lowercase": True,
    "max_reject_fraction": 0.01,
    "max_record_bytes": 1048576,
}


@pytest.fixture(autouse=True)
def data_root(monkeypatch):
    monkeypatch.setenv("NBKNN_DATA_ROOT", "hdfs://namenode:8020/nbknn")
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_plan_computes_hdfs_safe_uris_under_the_root():
    plan = plan_training(PARAMS, RUN_ID, RUN_AFTER)
    assert plan["version"].startswith("20261122T015318Z-")
    uris = plan["uris"]
    assert uris["input"] == "hdfs://namenode:8020/nbknn/input/docs"
    assert uris["version_dir"] == f"hdfs://namenode:8020/nbknn/models/naive_bayes/{plan['version']}"
    assert uris["staging_dir"] == f"hdfs://namenode:8020/nbknn/models/naive_bayes/_staging/{plan['version']}"
    assert uris["latest"] == "hdfs://namenode:8020/nbknn/models/naive_bayes/LATEST"
    assert uris["rejects"].startswith("hdfs://namenode:8020/nbknn/rejects/nb_train/manual__2026-11-22T01-53-18-00-00-")
    for uri in uris.values():
        assert ":" not in uri.split("://", 1)[1].split("/", 1)[1], uri


def test_spark_arguments_carry_the_params():
    plan = plan_training(PARAMS, RUN_ID, RUN_AFTER)
    assert arg_after(plan["class_prior_args"], "--rejects") == plan["uris"]["rejects"]
    assert arg_after(plan["term_counts_args"], "--num-shards") == "3"
    assert arg_after(plan["term_counts_args"], "--min-term-count") == "2"
    assert "--max-entries-per-shard" not in plan["term_counts_args"]
    assert arg_after(plan["publish_args"], "--alpha") == "0.5"
    assert "--fit-prior" in plan["publish_args"]
    assert all(isinstance(arg, str) for key in ("class_prior_args", "term_counts_args", "publish_args") for arg in plan[key])


def test_budget_replaces_the_shard_count():
    plan = plan_training({**PARAMS, "max_entries_per_shard": 50000}, RUN_ID, RUN_AFTER)
    assert arg_after(plan["term_counts_args"], "--max-entries-per-shard") == "50000"
    assert "--num-shards" not in plan["term_counts_args"]


def test_retries_of_a_run_plan_the_same_outputs():
    assert plan_training(PARAMS, RUN_ID, RUN_AFTER) == plan_training(PARAMS, RUN_ID, RUN_AFTER)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"input_uri": "file:///etc/passwd"}, "scheme must be one of|outside the allowed roots"),
        ({"input_uri": "../../etc"}, r"'\.' or '\.\.'"),
        ({"input_uri": "hdfs://namenode:8020/other/x"}, "outside the allowed roots"),
        ({"input_uri": "docs`reboot`"}, "characters that no data path needs"),
        ({"token_pattern": "[unclosed"}, "token_pattern does not compile"),
        ({"token_pattern": "x*"}, "must not match the empty string"),
    ],
)
def test_bad_params_are_refused_before_any_spark_job(override, message):
    with pytest.raises(PlanError, match=message):
        plan_training({**PARAMS, **override}, RUN_ID, RUN_AFTER)


def test_extra_input_roots_are_allowed(monkeypatch):
    monkeypatch.setenv("NBKNN_INPUT_ROOTS", "hdfs://namenode:8020/landing")
    plan = plan_training({**PARAMS, "input_uri": "hdfs://namenode:8020/landing/day=1"}, RUN_ID, RUN_AFTER)
    assert plan["uris"]["input"] == "hdfs://namenode:8020/landing/day=1"
