"""
### nb_train: train a sharded Naive Bayes text classifier on labelled documents

Reads labelled documents `(id, label, text)` from the data root (JSON Lines, Parquet or headerless
TSV) and publishes a new **model version** under `models/naive_bayes/<version>/`:

| task | what it does |
|---|---|
| `plan` | validates the parameters, computes every URI of the run (see its XCom) |
| `class_prior` | Spark: quarantines bad records (`rejects/nb_train/<run-key>/`), counts documents per class |
| `term_counts` | Spark: tokenises, counts every (class, term) pair, numbers the vocabulary, splits the model into shards balanced by entries |
| `merge_needed` | incremental runs with a base model go on to `merge`; otherwise `merge` is skipped |
| `merge` | Spark: adds the new partition's counts to the base model (new terms get new ids, old ids stay), re-plans the shards |
| `selection_needed` | runs with `selection=kfold` go on to `select`; otherwise `select` is skipped |
| `select` | Spark: k-fold cross-validation of the grid (`alpha_grid` x `model_type_grid` x `fit_prior_grid`) from per-fold counts: the model of every fold but f is the total minus fold f, so nothing is refitted; writes the table, the chosen point and the model's per-fold counts (`fold_counts/`); incremental: adds the new partition's per-fold counts to the base's and scores the base's documents too |
| `publish` | no Spark: writes `manifest.json`, renames the staging directory into place, points `LATEST` at it, each one atomic step of the store (file:// or hdfs:// through WebHDFS) |
| `register` | emits the model asset event (version, URI, shard count) that triggers `nb_predict` |

A scheduled or backfill run whose partition holds no data is skipped at `plan`, saying so; a
run triggered by hand with a missing partition fails there, naming it.
**Incremental runs** with no published model yet train on their partition alone. A partition is folded into a model's lineage at most
once: a run whose partition the base already holds fails at `plan` with the version that folded
it; clearing and rerunning the same run rebuilds its own version from the same parent. Missed
days (the DAG does not catch up) are folded in with a backfill, in any order:
`airflow backfill create --dag-id nb_train --from-date 2026-03-01 --to-date 2026-03-05`;
the result has the same counts as one full run over those partitions.

The model holds counts; `model_type`, `alpha` and `fit_prior` are recorded in the manifest and
applied when a shard is loaded for prediction. With `selection=kfold` they are the grid point with
the best mean `selection_metric` over the folds (a document's fold is a hash of its id), the
manifest's `selection` holds every point's per-fold scores, and the model keeps its per-fold counts
(`fold_counts/`, the manifest's `fold_counts`). An incremental run with selection adds the new
partition's per-fold counts to the base's and scores every document of the merged model (the
base's are read again from the input folders of its lineage), so its scores equal a full run's over
the union; it is refused at `plan` when the base keeps no per-fold counts (trained or last merged
without selection) or counts of another number of `folds`. Every published model
carries a report (`report/report.html`): each class's top terms at the model's alpha, and with
selection the table and the metric against alpha. A run fails loudly when more than
`max_reject_fraction` of the records are rejected. Retrying any task is safe: each task
overwrites only its own run's outputs, and the model becomes visible only when complete.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag, task

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
from nbknn_airflow.spark_submit import spark_app

S = param_schemas.NB_TRAIN
D = param_schemas.NB_TRAIN_DEFAULTS
PARAMS = {
    "mode": schema_param(
        "auto",
        S,
        "mode",
        "full: train on all of input_uri. incremental: fold the data interval's partition into the "
        "base model. auto: incremental for scheduled/backfill runs, full for manual runs.",
    ),
    "base_version": schema_param(
        None,
        S,
        "base_version",
        "Incremental mode: the model version to add the new counts to (default: the latest).",
    ),
    "partition_format": schema_param(
        "date=%Y-%m-%d",
        S,
        "partition_format",
        "Incremental mode: folder under input_uri holding an interval's documents, as strftime of the "
        "data interval start (UTC); e.g. date=%Y-%m-%d reads input_uri/date=2026-03-01 for the interval "
        "2026-03-01 to 2026-03-02.",
    ),
    **document_input_params("input/nb_train/labelled", "Labelled documents"),
    "model_type": schema_param(
        "multinomial", S, "model_type", "multinomial = scikit-learn MultinomialNB; complement = ComplementNB(norm=False)."
    ),
    "alpha": schema_param(1.0, S, "alpha", "Additive smoothing."),
    "fit_prior": schema_param(True, S, "fit_prior", "Learn class priors (else uniform priors)."),
    "min_term_count": schema_param(1, S, "min_term_count", "Drop terms seen fewer times in all."),
    "num_shards": schema_param(4, S, "num_shards", "Model shards (ignored when max_entries_per_shard is set)."),
    "max_entries_per_shard": schema_param(
        None,
        S,
        "max_entries_per_shard",
        "Per-shard budget of (class, term) entries; when set, the shard count follows from it.",
    ),
    "token_pattern": schema_param(
        contract.DEFAULT_TOKEN_PATTERN, S, "token_pattern", "Token regex (common subset of Java and Python `regex` syntax)."
    ),
    "lowercase": schema_param(True, S, "lowercase", "Lowercase text before tokenising."),
    "normalization": schema_param(
        contract.DEFAULT_NORMALIZATION, S, "normalization",
        "Unicode normalisation before lowercasing: none, NFC (composed: an accent typed as a separate mark "
        "and the precomposed letter become one term) or NFKC (also folds ligatures, full-width forms, "
        "superscripts). Recorded in the model; prediction applies the model's setting.",
    ),
    "selection": schema_param(
        "off",
        S,
        "selection",
        "kfold: choose model_type, alpha and fit_prior by exact k-fold cross-validation over the grids "
        "below (the three Params above are then ignored); off: use them as given. Incremental runs need a "
        "base model trained with kfold and the same folds (its per-fold counts are kept).",
    ),
    "folds": schema_param(D["folds"], S, "folds", "Selection: number of folds (a document's fold is a hash of its id)."),
    "alpha_grid": schema_param(D["alpha_grid"], S, "alpha_grid", "Selection: the smoothings tried."),
    "model_type_grid": schema_param(D["model_type_grid"], S, "model_type_grid", "Selection: the model types tried."),
    "fit_prior_grid": schema_param(D["fit_prior_grid"], S, "fit_prior_grid", "Selection: the fit_prior values tried."),
    "selection_metric": schema_param(
        D["selection_metric"], S, "selection_metric",
        "Selection: f1_macro (mean F1 over the classes), accuracy, or log_loss (smallest wins).",
    ),
    "max_reject_fraction": max_reject_fraction_param(),
    "max_record_bytes": max_record_bytes_param(),
}


@dag(
    dag_id="nb_train",
    # Data intervals of one calendar day (UTC): a run reads the partition of the day that just ended.
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["nbknn", "naive-bayes", "spark"],
    params=PARAMS,
    doc_md=__doc__,
    default_args=default_args(timedelta(hours=6)),
)
def nb_train():
    @task(retries=0, multiple_outputs=True, execution_timeout=timedelta(minutes=5))
    def plan(params: dict, run_id: str, dag_run=None, data_interval_start=None, data_interval_end=None) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from nbknn_airflow.plans.base import NothingToDo
        from nbknn_airflow.plans.nb_train import plan_training

        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        try:
            return plan_training(
                params, run_id, dag_run.run_after, run_type, (data_interval_start, data_interval_end)
            )
        except NothingToDo as exc:
            raise AirflowSkipException(str(exc)) from None

    # Skips only `merge` when there is no base model to fold into.
    @task.short_circuit(
        ignore_downstream_trigger_rules=False,
        trigger_rule="none_failed_min_one_success",
        execution_timeout=timedelta(minutes=5),
    )
    def merge_needed(merge: bool) -> bool:
        return merge

    # Skips only `select` (publish still runs) when the run does not select its model's parameters.
    # Runs after the model's final counts, whether `merge` ran or was skipped, not when plan
    # skipped the whole run. After merge: an incremental selection scores the merged model.
    @task.short_circuit(
        ignore_downstream_trigger_rules=False,
        trigger_rule="none_failed_min_one_success",
        execution_timeout=timedelta(minutes=5),
    )
    def selection_needed(selection: bool) -> bool:
        return selection

    @task(outlets=[NB_MODEL], execution_timeout=timedelta(minutes=10))
    def register(uris: dict, outlet_events=None) -> dict:
        from nbknn_airflow import storage

        model = contract.ModelRegistration.from_manifest(storage.read_json(uris["manifest"]))
        event = model.asset_event(uris["version_dir"])
        outlet_events[NB_MODEL].extra = event
        return {**event, "counts": model.counts, "records": model.records}

    # No Spark: renames and two small files through the Airflow side's storage layer. Runs when
    # select was skipped (no selection), not when plan skipped the whole run.
    @task(trigger_rule="none_failed_min_one_success", execution_timeout=timedelta(minutes=10))
    def publish(arguments: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from nbknn_airflow.model_publish import PublishRefused, publish_model

        try:
            manifest = publish_model(**arguments)
        except PublishRefused as exc:
            raise AirflowFailException(str(exc)) from None
        return {"published": arguments["version_dir"], "num_shards": manifest["num_shards"]}

    run_plan = plan()
    class_prior = spark_app("class_prior", "nb_class_prior.py", run_plan["class_prior_args"])
    term_counts = spark_app("term_counts", "nb_term_counts.py", run_plan["term_counts_args"])
    select = spark_app("select", "nb_select.py", run_plan["select_args"])
    merge = spark_app("merge", "nb_merge_model.py", run_plan["merge_args"])
    published = publish(run_plan["publish"])
    run_plan >> class_prior >> term_counts >> merge_needed(run_plan["merge"]) >> merge
    merge >> selection_needed(run_plan["selection"]) >> select >> published
    published >> register(run_plan["uris"])


nb_train()
