"""nb_train's plan: every URI and Spark argument of a run, and the refusals before Spark starts."""

import json
from datetime import datetime, timezone

import pytest

from helpers import entry_script
from nbknn_airflow.plans.base import PlanError
from nbknn_airflow.plans.nb_train import plan_training

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
    "normalization": "none",
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


# --- selection -------------------------------------------------------------------------------

SELECTION = {
    **PARAMS,
    "selection": "kfold",
    "folds": 4,
    "alpha_grid": [0.01, 1],
    "model_type_grid": ["complement"],
    "fit_prior_grid": [False],
    "selection_metric": "log_loss",
}


def test_selection_off_plans_no_select_job():
    plan = plan_training(PARAMS, RUN_ID, RUN_AFTER)
    assert plan["selection"] is False
    assert plan["select_args"] == []
    assert plan["publish"]["selection"] is False
    assert "--selection" not in plan["publish_args"]
    # The model's report (top terms at the run's alpha) is then written by term_counts.
    assert entry_script("nb_term_counts").parse_args(plan["term_counts_args"]).report_alpha == 0.5


def test_selection_arguments_are_accepted_by_the_entry_scripts():
    plan = plan_training(SELECTION, RUN_ID, RUN_AFTER)
    assert plan["selection"] is True and plan["publish"]["selection"] is True
    args = entry_script("nb_select").parse_args(plan["select_args"])
    assert (args.folds, args.alphas, args.model_types, args.fit_priors, args.metric) == (
        4, [0.01, 1.0], ["complement"], [False], "log_loss"
    )
    assert args.model_dir == plan["uris"]["staging_dir"] and args.input == plan["uris"]["input"]
    assert entry_script("nb_publish_model").parse_args(plan["publish_args"]).selection is True
    # The selection job writes the report (at the chosen alpha): term_counts does not.
    assert entry_script("nb_term_counts").parse_args(plan["term_counts_args"]).report_alpha is None


@pytest.mark.parametrize(
    "override, message",
    [
        ({"folds": 1}, "folds=1 refused"),
        ({"alpha_grid": [0.0]}, "alpha_grid=.* refused"),
        ({"alpha_grid": []}, "alpha_grid=.* refused"),
        ({"model_type_grid": ["bernoulli"]}, "model_type_grid=.* refused"),
        ({"selection_metric": "auc"}, "selection_metric=.* refused"),
    ],
)
def test_bad_selection_params_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        plan_training({**SELECTION, **override}, RUN_ID, RUN_AFTER)


# --- incremental mode ------------------------------------------------------------------------

DAY = (datetime(2026, 3, 1, tzinfo=timezone.utc), datetime(2026, 3, 2, tzinfo=timezone.utc))
SCHEDULED_ID = "scheduled__2026-03-01T00:00:00+00:00"
TOKENIZER = {"pattern": PARAMS["token_pattern"], "lowercase": True}
INCREMENTAL = {**PARAMS, "min_term_count": 1, "mode": "auto", "base_version": None, "partition_format": "date=%Y-%m-%d"}


@pytest.fixture
def file_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    # The partitions of DAY that the incremental runs below read (daily and hourly layouts).
    for partition in ("date=2026-03-01", "dt=20260301/hour=00"):
        (tmp_path / "input" / "docs" / partition).mkdir(parents=True)
        (tmp_path / "input" / "docs" / partition / "part-0.jsonl").write_text('{"id": "d", "label": "l", "text": "t"}\n')
    return tmp_path


def test_a_scheduled_run_whose_partition_holds_no_data_has_nothing_to_do(file_root):
    from nbknn_airflow.plans.base import NothingToDo

    later = (datetime(2026, 3, 5, tzinfo=timezone.utc), datetime(2026, 3, 6, tzinfo=timezone.utc))
    with pytest.raises(NothingToDo, match=r"no labelled data for date=2026-03-05 at file://.*/input/docs/date=2026-03-05"):
        plan_training(INCREMENTAL, "scheduled__2026-03-05T00:00:00+00:00", later[1], "scheduled", later)
    # Only files that readers skip (a _SUCCESS marker, a hidden file): still no data.
    empty = file_root / "input" / "docs" / "date=2026-03-05"
    empty.mkdir()
    (empty / "_SUCCESS").write_text("")
    (empty / ".part-0.crc").write_text("")
    with pytest.raises(NothingToDo):
        plan_training(INCREMENTAL, "backfill__2026-03-05T00:00:00+00:00", later[1], "backfill", later)
    # By hand, the same run is refused, naming the partition.
    manual = {**INCREMENTAL, "mode": "incremental"}
    with pytest.raises(PlanError, match=r"no labelled data for date=2026-03-05 at file://"):
        plan_training(manual, "manual__2026-03-05T00:00:00+00:00", later[1], "manual", later)


def publish_fake(root, version, run_id, parent=None, partitions=(), latest=True, **overrides):
    """A published model as nb_train leaves it, written by hand: manifest (+ LATEST)."""
    models = root / "models" / "naive_bayes"
    (models / version).mkdir(parents=True)
    manifest = {
        "version": version,
        "tokenizer": TOKENIZER,
        "min_term_count": 1,
        "lineage": {
            "run_id": run_id,
            "parent_version": parent,
            "partitions": [{"uri": uri, "version": version, "run_id": run_id} for uri in partitions],
        },
        **overrides,
    }
    (models / version / "manifest.json").write_text(json.dumps(manifest))
    if latest:
        (models / "LATEST").write_text(version + "\n")


def scheduled_plan(params=INCREMENTAL, run_id=SCHEDULED_ID):
    return plan_training(params, run_id, DAY[1], "scheduled", DAY)


def test_auto_mode_is_incremental_for_scheduled_and_backfill_runs_and_full_for_manual_ones(file_root):
    assert scheduled_plan()["mode"] == "incremental"
    assert plan_training(INCREMENTAL, "backfill__2026-03-01T00:00:00+00:00", DAY[1], "backfill", DAY)["mode"] == "incremental"
    manual = plan_training(INCREMENTAL, RUN_ID, RUN_AFTER, "manual", DAY)
    assert manual["mode"] == "full"
    assert manual["uris"]["input"] == f"{file_root.as_uri()}/input/docs"
    assert manual["merge"] is False and manual["merge_args"] == []


def test_incremental_run_reads_the_partition_of_its_data_interval(file_root):
    plan = scheduled_plan()
    assert plan["partition"] == "date=2026-03-01"
    assert plan["uris"]["input"] == f"{file_root.as_uri()}/input/docs/date=2026-03-01"
    assert arg_after(plan["class_prior_args"], "--input") == plan["uris"]["input"]
    assert json.loads(arg_after(plan["publish_args"], "--lineage"))["data_interval"] == [
        "2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00"
    ]
    hourly = scheduled_plan({**INCREMENTAL, "partition_format": "dt=%Y%m%d/hour=%H"})
    assert hourly["uris"]["input"].endswith("/input/docs/dt=20260301/hour=00")


def test_incremental_without_a_base_model_trains_on_the_partition_alone(file_root):
    plan = scheduled_plan()
    assert plan["merge"] is False and plan["base_version"] is None and plan["merge_args"] == []
    assert arg_after(plan["class_prior_args"], "--model-dir") == plan["uris"]["staging_dir"]
    assert arg_after(plan["term_counts_args"], "--num-shards") == "3"


def test_incremental_counts_a_delta_and_merges_it_into_the_latest_model(file_root):
    publish_fake(file_root, "20260301T000000Z-aaaaaaaa", "scheduled__2026-02-28T00:00:00+00:00",
                 partitions=[f"{file_root.as_uri()}/input/docs/date=2026-02-28"])
    plan = scheduled_plan()
    base_dir = f"{file_root.as_uri()}/models/naive_bayes/20260301T000000Z-aaaaaaaa"
    delta = plan["uris"]["delta_dir"]
    assert plan["merge"] is True and plan["base_version"] == "20260301T000000Z-aaaaaaaa"
    assert delta == plan["uris"]["staging_dir"] + "/_work/delta"
    assert arg_after(plan["class_prior_args"], "--model-dir") == delta
    assert arg_after(plan["term_counts_args"], "--model-dir") == delta
    assert arg_after(plan["term_counts_args"], "--num-shards") == "1"
    assert plan["merge_args"] == [
        "--base-dir", base_dir, "--delta-dir", delta, "--model-dir", plan["uris"]["staging_dir"], "--num-shards", "3",
        "--report-alpha", "0.5",
    ]
    # The delta is never published: its counts get no report; the merged model's does.
    assert "--report-alpha" not in plan["term_counts_args"]
    assert json.loads(arg_after(plan["publish_args"], "--lineage"))["parent_version"] == "20260301T000000Z-aaaaaaaa"


def test_an_explicit_base_version_wins_over_latest(file_root):
    publish_fake(file_root, "v-old", "r-old")
    publish_fake(file_root, "v-new", "r-new", parent="v-old")
    assert scheduled_plan({**INCREMENTAL, "base_version": "v-old"})["base_version"] == "v-old"
    assert scheduled_plan()["base_version"] == "v-new"
    with pytest.raises(PlanError, match="base model v-missing has no manifest"):
        scheduled_plan({**INCREMENTAL, "base_version": "v-missing"})


def test_a_partition_already_folded_in_is_refused_with_the_version_that_folded_it(file_root):
    day = f"{file_root.as_uri()}/input/docs/date=2026-03-01"
    publish_fake(file_root, "v1", "scheduled__other", partitions=[day])
    publish_fake(file_root, "v2", "scheduled__next", parent="v1", partitions=[day.replace("01", "02")])
    manifest_path = file_root / "models" / "naive_bayes" / "v2" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # The lineage carries the ancestors' partitions too, each with the version that folded it.
    manifest["lineage"]["partitions"].insert(0, {"uri": day + "/", "version": "v1", "run_id": "scheduled__other"})
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match=r"date=2026-03-01 is already part of model v2: .* folded in by model version v1"):
        scheduled_plan()
    (file_root / "input" / "docs" / "date=2026-03-03").mkdir()
    (file_root / "input" / "docs" / "date=2026-03-03" / "part-0.jsonl").write_text("{}\n")
    next_day = plan_training(INCREMENTAL, "scheduled__2026-03-03", DAY[1], "scheduled", (datetime(2026, 3, 3), None))
    assert next_day["base_version"] == "v2" and next_day["partition"] == "date=2026-03-03"


def test_a_retry_of_the_same_run_rebuilds_its_own_version_from_its_parent(file_root):
    day = f"{file_root.as_uri()}/input/docs/date=2026-03-01"
    publish_fake(file_root, "v1", "scheduled__2026-02-28T00:00:00+00:00")
    # This run published before (LATEST is its own version, which holds its partition).
    publish_fake(file_root, "v2", SCHEDULED_ID, parent="v1", partitions=[day])
    first = scheduled_plan()
    assert first["base_version"] == "v1"
    assert first == scheduled_plan()  # a retry plans the same outputs
    # Its own first model, with no parent: it trains from scratch again.
    publish_fake(file_root, "v3", SCHEDULED_ID.replace("03-01", "03-02"), partitions=[day.replace("01", "02")])
    assert scheduled_plan(run_id=SCHEDULED_ID.replace("03-01", "03-02"))["merge"] is False


@pytest.mark.parametrize(
    "override, manifest, message",
    [
        ({"min_term_count": 2}, {}, "incremental training needs min_term_count=1"),
        ({"lowercase": False}, {}, "was tokenised with .* counts of different tokens cannot be added"),
        ({"normalization": "NFC"}, {}, "was tokenised with .* counts of different tokens cannot be added"),
        ({}, {"min_term_count": 3}, "dropped rare terms"),
        ({"partition_format": "static"}, {}, "partition_format must format the interval's date"),
        ({"partition_format": "%Y/../x"}, {}, "invalid folder name"),
        ({"mode": "sometimes"}, {}, "mode must be one of"),
    ],
)
def test_incremental_refusals(file_root, override, manifest, message):
    publish_fake(file_root, "v1", "r1", **manifest)
    with pytest.raises(PlanError, match=message):
        scheduled_plan({**INCREMENTAL, **override})


def test_incremental_needs_a_data_interval(file_root):
    with pytest.raises(PlanError, match="has none: trigger it with a logical date"):
        plan_training({**INCREMENTAL, "mode": "incremental"}, RUN_ID, RUN_AFTER, "manual", (None, None))


# --- incremental selection: the base's per-fold counts -------------------------------------------

INCREMENTAL_SELECTION = {**INCREMENTAL, **{k: v for k, v in SELECTION.items() if k not in PARAMS}}


def fold_counts_record(folds=4, **overrides):
    from nbknn import contract

    return {**contract.fold_counts_record(folds, [10] * folds, 100, None), **overrides}


def test_incremental_selection_adds_to_the_base_fold_counts_and_scores_its_documents(file_root):
    publish_fake(file_root, "v1", "r1", fold_counts=fold_counts_record())
    plan = scheduled_plan(INCREMENTAL_SELECTION)
    assert plan["mode"] == "incremental" and plan["merge"] is True and plan["selection"] is True
    args = entry_script("nb_select").parse_args(plan["select_args"])
    assert args.base_dir == plan["uris"]["base_dir"] and args.model_dir == plan["uris"]["staging_dir"]
    assert args.input == plan["uris"]["input"] and args.folds == 4
    # The selection job (after merge) writes the merged model's report at the chosen alpha.
    assert entry_script("nb_merge_model").parse_args(plan["merge_args"]).report_alpha is None
    assert plan["publish"]["selection"] is True
    # Without selection the merge writes the report, and the select job is not planned.
    plain = scheduled_plan(INCREMENTAL)
    assert plain["select_args"] == [] and entry_script("nb_merge_model").parse_args(plain["merge_args"]).report_alpha == 0.5


def test_incremental_selection_without_a_base_selects_on_the_partition_alone(file_root):
    plan = scheduled_plan(INCREMENTAL_SELECTION)
    assert plan["merge"] is False and plan["selection"] is True
    assert entry_script("nb_select").parse_args(plan["select_args"]).base_dir is None


@pytest.mark.parametrize(
    "manifest, message",
    [
        ({}, r"base model v1 keeps no per-fold counts \(it was trained, or last merged, without selection=kfold\)"),
        ({"fold_counts": None}, "base model v1 keeps no per-fold counts"),
        ({"fold_counts": fold_counts_record(folds=5)}, r"keeps counts of 5 folds, this run asks for folds=4"),
        ({"fold_counts": fold_counts_record(fold_hash="md5-mod")}, r"assigned documents to folds by 'md5-mod'"),
    ],
)
def test_incremental_selection_is_refused_unless_the_base_keeps_counts_of_the_same_folds(file_root, manifest, message):
    publish_fake(file_root, "v1", "r1", **manifest)
    with pytest.raises(PlanError, match=f"selection=kfold in an incremental run: .*{message}"):
        scheduled_plan(INCREMENTAL_SELECTION)
