"""
### nb_predict: classify documents with a published Naive Bayes model

Runs every day at 06:00 UTC **and** whenever `nb_train` publishes a new model (the
`nbknn_naive_bayes_model` asset). Reads documents `(id, text[, label])` and writes, under
`predictions/naive_bayes/<run-key>/`:

| task | what it does |
|---|---|
| `plan` | resolves the model version once and pins it for the whole run, checks its manifest and shards, chooses the path, computes every URI (see its XCom) |
| `choose_path` | follows the plan's path: `predict` when the whole model fits one broadcast, else the per-shard tasks |
| `predict` | Spark, single pass: quarantines bad records, vectorises, scores against the whole model and combines → `predictions/` + `report/` |
| `vectorize` | Spark: quarantines bad records and duplicated ids (`rejects/nb_predict/<run-key>/`), tokenises with the model's tokeniser, maps terms to the model's term ids → `vectors/` |
| `shard_passes` | lists the prediction passes, one per shard of the chosen model |
| `predict_shard` | Spark, **mapped: one task instance per model shard**; scores every document against the shard's classes in batches → `scores/shard=S/` |
| `combine` | Spark: checks every shard scored the current vectors, picks each document's most probable class → `predictions/`; with labelled input, accuracy, macro-F1, per-class precision/recall and a confusion matrix → `report/metrics.json`, and the run's row in the quality history (`predictions/naive_bayes/_quality_history/`) |
| `report` | no Spark: draws the report's pictures from `metrics.json` (`confusion_matrix.png`, `per_class_f1.png`, the history over runs `quality_history.png`) and its page `report.html`; logs and returns the headline numbers (path, counts read / rejected / predicted, accuracy) |

Both paths publish the same predictions and report: a model's answers do not depend on how its
classes are grouped. The per-shard path is for models too large for one broadcast.

An input label is kept beside its prediction as `true_label`; with `top_terms`, each prediction
lists the document's terms that weighed most for its class against the runner-up.
Every output is published atomically (written beside its place, then renamed in); retrying any
task replaces only its own run's output. A run fails loudly when more than `max_reject_fraction`
of the records are rejected, or when a shard's scores are missing.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from nbknn import contract
from nbknn_airflow import param_schemas
from nbknn_airflow.assets import NB_MODEL
from nbknn_airflow.dag_params import (
    default_args,
    document_input_params,
    max_record_bytes_param,
    max_reject_fraction_param,
    schema_param,
)
from nbknn_airflow.spark_submit import spark_app, spark_app_mapped

log = logging.getLogger(__name__)

PARAMS = {
    **document_input_params(
        "input/nb_predict/documents",
        "Documents to classify",
        id_note=" (ids must be unique)",
        label_note=" (optional: when present, the run is evaluated)",
    ),
    "model_version": schema_param(
        "latest",
        param_schemas.NB_PREDICT,
        "model_version",
        "Model version to use, or 'latest' (the model whose publication triggered the run, else LATEST).",
    ),
    "top_n": schema_param(
        0, param_schemas.NB_PREDICT, "top_n", "Also output each document's N most probable classes (0: off)."
    ),
    "top_terms": schema_param(
        0, param_schemas.NB_PREDICT, "top_terms",
        "Also output each document's N terms that weighed most for its predicted class against the "
        "runner-up class: count x (log-weight in the class - log-weight in the runner-up), largest "
        "first (0: off).",
    ),
    "prediction_path": schema_param(
        "auto",
        param_schemas.NB_PREDICT,
        "prediction_path",
        "auto = one Spark pass over the whole model when its scoring form fits single_pass_max_bytes, "
        "else one pass per shard; single_pass / per_shard force either.",
    ),
    "single_pass_max_bytes": schema_param(
        contract.DEFAULT_SINGLE_PASS_MAX_BYTES,
        param_schemas.NB_PREDICT,
        "single_pass_max_bytes",
        "Largest model scoring form (12 bytes per (class, term) entry) broadcast whole for the single pass.",
    ),
    "max_reject_fraction": max_reject_fraction_param(),
    "max_record_bytes": max_record_bytes_param(),
}


@dag(
    dag_id="nb_predict",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"),
        assets=[NB_MODEL],
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=2,
    tags=["nbknn", "naive-bayes", "spark"],
    params=PARAMS,
    doc_md=__doc__,
    default_args=default_args(timedelta(hours=6)),
)
def nb_predict():
    @task(retries=0, multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def plan(params: dict, run_id: str, dag_run=None, triggering_asset_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from nbknn_airflow.plans.base import NothingToDo
        from nbknn_airflow.plans.nb_predict import plan_prediction, version_from_events

        events = sorted(
            (triggering_asset_events or {}).get(NB_MODEL, []), key=lambda event: event.timestamp
        )
        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        run_date = dag_run.logical_date or dag_run.run_after
        try:
            return plan_prediction(params, run_id, version_from_events([event.extra for event in events]), run_type,
                                   run_date.isoformat() if run_date else None)
        except NothingToDo as exc:
            raise AirflowSkipException(str(exc)) from None

    @task.branch(retries=0, execution_timeout=timedelta(minutes=5))
    def choose_path(path: dict) -> str:
        log.info("prediction path %s: %s", path["name"], path["reason"])
        return "predict" if path["name"] == contract.SINGLE_PASS else "vectorize"

    # Runs after whichever path ran (the other one is skipped).
    @task(trigger_rule="none_failed_min_one_success", execution_timeout=timedelta(minutes=10))
    def report(uris: dict, model: dict) -> dict:
        from nbknn_airflow import storage
        from nbknn_airflow.report_pages import publish_report_pages

        summary = storage.read_json(contract.report_summary_uri(uris["report"]))
        pages = publish_report_pages(uris["report"])
        headline = contract.PredictionSummary.from_dict(summary).headline(model["version"], uris,
                                                                          pages and pages["page"])
        log.info("nb_predict summary: %s", headline)
        return headline

    @task(retries=0, execution_timeout=timedelta(minutes=5))
    def shard_passes(model: dict, shard_args: list) -> list:
        # Mapping needs a task's return value (not one key of a multiple_outputs plan).
        log.info("model %s (%s): %d shard pass(es)", model["version"], model["chosen_by"], len(shard_args))
        return shard_args

    run_plan = plan()
    path = choose_path(run_plan["path"])
    predict = spark_app("predict", "nb_predict.py", run_plan["single_pass_args"])
    vectorize = spark_app("vectorize", "nb_vectorize.py", run_plan["vectorize_args"])
    passes = shard_passes(run_plan["model"], run_plan["shard_args"])
    predict_shard = spark_app_mapped("predict_shard", "nb_predict_shard.py", passes)
    combine = spark_app("combine", "nb_combine.py", run_plan["combine_args"])
    path >> [predict, vectorize]
    vectorize >> passes
    predict_shard >> combine
    [predict, combine] >> report(run_plan["uris"], run_plan["model"])


nb_predict()
