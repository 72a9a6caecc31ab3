"""The nb_predict plan: model resolution, completeness checks and every URI/argument (no Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import entry_script
from nbknn_airflow.plans.base import PlanError
from nbknn_airflow.plans.nb_predict import plan_prediction, version_from_events

RUN_ID = "manual__2026-03-01T10:20:30.123456+00:00"
PARAMS = {
    "input_uri": "input/nb_predict/documents",
    "input_format": "jsonl",
    "id_column": "id",
    "label_column": "label",
    "text_column": "text",
    "model_version": "latest",
    "top_n": 2,
    "max_reject_fraction": 0.05,
    "max_record_bytes": 1048576,
}


def publish_fake_model(root: Path, version: str, num_shards: int, skip_shards=(), latest=True) -> Path:
    """The files the plan reads: LATEST, manifest.json and the term_counts/shard=S directories."""
    version_dir = root / "models" / "naive_bayes" / version
    for shard in range(num_shards):
        if shard not in skip_shards:
            (version_dir / "term_counts" / f"shard={shard}").mkdir(parents=True)
    manifest = {
        "kind": "naive_bayes",
        "version": version,
        "model": {"type": "complement", "alpha": 1.0, "fit_prior": True},
        "num_shards": num_shards,
        "shards": [{"shard": s, "entries": 10, "class_ids": [s]} for s in range(num_shards)],
        "counts": {"classes": num_shards},
    }
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    if latest:
        (root / "models" / "naive_bayes" / "LATEST").write_text(version + "\n")
    return version_dir


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKNN_DATA_ROOT", tmp_path.as_uri())
    monkeypatch.delenv("NBKNN_INPUT_ROOTS", raising=False)
    return tmp_path


def test_plan_pins_the_latest_model_and_maps_one_pass_per_shard(root):
    version_dir = publish_fake_model(root, "20260301T000000Z-abcd1234", num_shards=3)
    plan = plan_prediction(PARAMS, RUN_ID)

    assert plan["model"] == {
        "version": "20260301T000000Z-abcd1234", "chosen_by": "LATEST", "dir": version_dir.as_uri(),
        "type": "complement", "num_shards": 3, "classes": 3,
    }
    key = plan["run_key"]
    assert ":" not in key and "+" not in key
    run_dir = f"{root.as_uri()}/predictions/naive_bayes/{key}"
    assert plan["uris"] == {
        "input": f"{root.as_uri()}/input/nb_predict/documents",
        "rejects": f"{root.as_uri()}/rejects/nb_predict/{key}",
        "run_dir": run_dir,
        "vectors": f"{run_dir}/vectors",
        "scores": f"{run_dir}/scores",
        "predictions": f"{run_dir}/predictions",
        "report": f"{run_dir}/report",
        "quality_history": f"{root.as_uri()}/predictions/naive_bayes/_quality_history",
    }
    assert len(plan["shard_args"]) == 3
    for shard, args in enumerate(plan["shard_args"]):
        assert args == [
            "--model-dir", version_dir.as_uri(), "--vectors", f"{run_dir}/vectors",
            "--shard", str(shard), "--scores", f"{run_dir}/scores/shard={shard}", "--top-n", "2", "--top-terms", "0",
        ]
    vectorize = plan["vectorize_args"]
    assert vectorize[vectorize.index("--model-dir") + 1] == version_dir.as_uri()
    assert vectorize[vectorize.index("--max-reject-fraction") + 1] == "0.05"
    assert vectorize[vectorize.index("--input") + 1] == plan["uris"]["input"]
    combine = plan["combine_args"]
    assert combine[combine.index("--scores") + 1] == f"{run_dir}/scores"
    assert combine[combine.index("--top-n") + 1] == "2"
    json.dumps(plan)  # travels through XCom


def test_a_model_event_pins_the_model_that_triggered_the_run(root):
    publish_fake_model(root, "v-old", num_shards=1)
    publish_fake_model(root, "v-new", num_shards=2, latest=False)
    assert plan_prediction(PARAMS, RUN_ID)["model"]["version"] == "v-old"
    triggered = plan_prediction(PARAMS, RUN_ID, triggered_version="v-new")
    assert (triggered["model"]["version"], triggered["model"]["chosen_by"]) == ("v-new", "asset event")
    assert len(triggered["shard_args"]) == 2
    # An explicitly requested version wins over the event.
    requested = plan_prediction({**PARAMS, "model_version": "v-old"}, RUN_ID, triggered_version="v-new")
    assert (requested["model"]["version"], requested["model"]["chosen_by"]) == ("v-old", "requested")


def test_version_from_events_takes_the_most_recent_one():
    assert version_from_events([]) is None
    assert version_from_events([{"version": "a"}, {"version": "b"}, {}]) == "b"


def test_no_published_model_is_a_clear_error(root):
    with pytest.raises(PlanError, match=r"no Naive Bayes model has been published yet .*LATEST does not exist"):
        plan_prediction(PARAMS, RUN_ID)


def test_unknown_version_is_a_clear_error(root):
    publish_fake_model(root, "v1", num_shards=1)
    with pytest.raises(PlanError, match=r"model .*/models/naive_bayes/v2 has no manifest"):
        plan_prediction({**PARAMS, "model_version": "v2"}, RUN_ID)


def test_a_model_missing_a_shard_is_refused(root):
    publish_fake_model(root, "v1", num_shards=3, skip_shards=(1,))
    with pytest.raises(PlanError, match=r"model .*v1 is incomplete: no term counts for shard\(s\) \[1\]"):
        plan_prediction(PARAMS, RUN_ID)


def test_a_manifest_with_inconsistent_shards_is_refused(root):
    version_dir = publish_fake_model(root, "v1", num_shards=2)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["num_shards"] = 3
    (version_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PlanError, match=r"shards must be numbered 0\.\.2 \(got \[0, 1\]\)"):
        plan_prediction(PARAMS, RUN_ID)


@pytest.mark.parametrize("version", ["../v1", "v1/../../x", "v:1", " ", "a b"])
def test_unsafe_version_names_are_refused(root, version):
    publish_fake_model(root, "v1", num_shards=1)
    with pytest.raises(PlanError, match="model version must match"):
        plan_prediction({**PARAMS, "model_version": version}, RUN_ID)


def test_a_corrupt_latest_pointer_is_refused(root):
    publish_fake_model(root, "v1", num_shards=1)
    (root / "models" / "naive_bayes" / "LATEST").write_text("../../etc\n")
    with pytest.raises(PlanError, match="LATEST does not hold a valid model version"):
        plan_prediction(PARAMS, RUN_ID)


def test_input_outside_the_data_roots_is_refused(root):
    publish_fake_model(root, "v1", num_shards=1)
    with pytest.raises(PlanError, match="outside the allowed roots"):
        plan_prediction({**PARAMS, "input_uri": "file:///etc/passwd"}, RUN_ID)


def test_negative_top_n_is_refused(root):
    publish_fake_model(root, "v1", num_shards=1)
    with pytest.raises(PlanError, match=r"top_n must be >= 0 \(got -1\)"):
        plan_prediction({**PARAMS, "top_n": -1}, RUN_ID)


def test_every_argument_list_is_accepted_by_its_entry_script(root):
    nb_combine, nb_predict, nb_predict_shard, nb_vectorize = map(
        entry_script, ("nb_combine", "nb_predict", "nb_predict_shard", "nb_vectorize")
    )
    publish_fake_model(root, "v1", num_shards=2)
    plan = plan_prediction({**PARAMS, "top_terms": 4}, RUN_ID)
    vectorize = nb_vectorize.parse_args(plan["vectorize_args"])
    assert (vectorize.model_dir, vectorize.max_reject_fraction) == (plan["model"]["dir"], 0.05)
    assert [nb_predict_shard.parse_args(args).shard for args in plan["shard_args"]] == [0, 1]
    combine = nb_combine.parse_args(plan["combine_args"])
    assert (combine.scores, combine.top_n) == (plan["uris"]["scores"], 2)
    single = nb_predict.parse_args(plan["single_pass_args"])
    assert (single.model_dir, single.predictions, single.report, single.top_n, single.max_reject_fraction) == (
        plan["model"]["dir"], plan["uris"]["predictions"], plan["uris"]["report"], 2, 0.05
    )
    assert single.path_reason == plan["path"]["reason"]
    shards = [nb_predict_shard.parse_args(args) for args in plan["shard_args"]]
    assert [single.top_terms, combine.top_terms, *(s.top_terms for s in shards)] == [4, 4, 4, 4]
    # A run made before the Param existed lists no terms.
    plan = plan_prediction(PARAMS, RUN_ID)
    assert nb_predict.parse_args(plan["single_pass_args"]).top_terms == 0
    assert nb_combine.parse_args(plan["combine_args"]).top_terms == 0


def test_the_path_is_single_pass_while_the_model_fits_the_budget(root):
    publish_fake_model(root, "v1", num_shards=3)  # 3 shards x 10 entries, 3 classes
    needed = 12 * 30 + 32 * 4
    assert plan_prediction({**PARAMS, "single_pass_max_bytes": needed}, RUN_ID)["path"]["name"] == "single_pass"
    over = plan_prediction({**PARAMS, "single_pass_max_bytes": needed - 1}, RUN_ID)["path"]
    assert over["name"] == "per_shard" and f"({needed} bytes) exceeds" in over["reason"]
    forced = plan_prediction({**PARAMS, "prediction_path": "per_shard"}, RUN_ID)["path"]
    assert forced == {"name": "per_shard", "reason": "requested"}
    with pytest.raises(PlanError, match="prediction_path"):
        plan_prediction({**PARAMS, "prediction_path": "fused"}, RUN_ID)


def test_a_scheduled_run_before_any_model_has_nothing_to_do(root):
    from nbknn_airflow.plans.base import NothingToDo

    with pytest.raises(NothingToDo, match="no Naive Bayes model has been published yet"):
        plan_prediction(PARAMS, "scheduled__2026-03-01T06:00:00+00:00", run_type="scheduled")
    with pytest.raises(PlanError, match="run nb_train first"):
        plan_prediction(PARAMS, RUN_ID, run_type="manual")


def test_the_applications_that_write_the_report_get_the_runs_quality_history_row(root):
    """Both report writers name the run's row by its run key and date it; the shard passes do not."""
    nb_combine, nb_predict = entry_script("nb_combine"), entry_script("nb_predict")
    from nbknn.common.cli import history_target

    publish_fake_model(root, "v1", num_shards=2)
    plan = plan_prediction(PARAMS, RUN_ID, run_date="2026-11-02T06:00:00+00:00")
    for args in (nb_combine.parse_args(plan["combine_args"]), nb_predict.parse_args(plan["single_pass_args"])):
        target = history_target(args)
        assert (target.uri, target.run_key, target.run_date) == (
            plan["uris"]["quality_history"], plan["run_key"], "2026-11-02T06:00:00+00:00"
        )
    assert not any("--quality-history" in args for args in plan["shard_args"] + [plan["vectorize_args"]])
    # A retry plans the same row (same run key); without a date the row is undated.
    again = plan_prediction(PARAMS, RUN_ID)
    assert history_target(nb_combine.parse_args(again["combine_args"])).run_key == plan["run_key"]
    assert history_target(nb_combine.parse_args(again["combine_args"])).run_date is None
