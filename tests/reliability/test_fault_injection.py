"""Fault injection: every Spark application of the three pipelines is killed (SIGKILL to its whole
process group, as a lost worker or an OOM-killed container would end it) at random points, then run
again with the same arguments, as an Airflow retry would.

For every application:

* while a killed run goes on, a watcher polls every published location of the data root and
  fails the test if a reader could see a partial output: a published directory without its
  markers, a half-written JSON file, a model version without its manifest or a table, or LATEST
  naming a model that is not complete;
* after the kills, one run to completion must leave outputs equal, by content, to those of an
  undisturbed run of the same application with the same arguments (the reference, computed in
  process by the entry script's own ``main`` before any kill); no record may be lost or duplicated;
* running the completing command a second time (a retry of a finished task) changes nothing.

spark-submit is started exactly as the Airflow operator starts it (the provider's SparkSubmitHook,
the zipped library as ``--py-files``, local[2]). Kill times are drawn with a fixed seed, uniformly
between 2 s and the application's expected duration: the time its SparkContext took to start in
the latest run, plus its own work as the reference run measured it, scaled by how much slower
start-up has become since the calibration run (other work on the machine slows everything alike)
and by COLD_FACTOR for a fresh JVM. A run that ends before its kill time replaces the estimate by
its real duration. Each kill records whether the SparkContext had started (a kill during a job).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import write_jsonl
from reliability_support import (
    Watcher,
    big_document_line,
    compare_all,
    copy_tree,
    json_file_problems,
    leftovers,
    model_problems,
    outputs_of,
    published_dir_problems,
    run_entry_in_process,
    run_spark_submit,
    spark_environment,
    spark_submit_command,
)

pytestmark = [pytest.mark.reliability, pytest.mark.spark]

SEED = 20261122
KILLS_PER_APP = 3
MIN_KILL_SECONDS = 2.0
# The reference runs in the warm JVM of the test session; a fresh spark-submit JVM does the same
# work slower (measured here: 1.5 to 3 times).
COLD_FACTOR = 1.5
# What any application does after its SparkContext starts, however small its work: Python workers,
# the first jobs, writing and publishing, stopping (3.5 to 16 s measured on an idle machine).
MIN_JOB_SECONDS = 6.0

TRAIN_RUN_ID = "manual__2026-11-22T02:00:00+00:00"
PREDICT_RUN_ID = "manual__2026-11-22T06:00:00+00:00"
KNN_RUN_ID = "manual__2026-11-22T03:00:00+00:00"
RUN_AFTER = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
BIG_COMPANIONS = [{"id": "c1", "label": "earn", "text": "net profit rose"}, {"id": "c2", "label": "grain", "text": "wheat"}]
BAD_TRAIN_LINES = [
    "not json at all",
    '{"id": "bad-1", "label": "earn"}',
    '{"id": "bad-2", "label": "", "text": "an empty label"}',
]

DOCUMENT_PARAMS = {
    "input_format": "jsonl",
    "id_column": "id",
    "label_column": "label",
    "text_column": "text",
    "max_reject_fraction": 0.05,
    "max_record_bytes": 8 * 1024 * 1024,
}
TRAIN_PARAMS = {
    **DOCUMENT_PARAMS,
    "mode": "full",
    "base_version": None,
    "partition_format": "date=%Y-%m-%d",
    "input_uri": "input/nb_train/labelled",
    "model_type": "multinomial",
    "alpha": 1.0,
    "fit_prior": True,
    "min_term_count": 1,
    "num_shards": 2,
    "max_entries_per_shard": None,
    "token_pattern": r"[\p{L}\p{M}\p{N}]{2,}",
    "lowercase": True,
}
PREDICT_PARAMS = {**DOCUMENT_PARAMS, "input_uri": "input/nb_predict/documents", "model_version": "latest", "top_n": 2}
KNN_PARAMS = {
    "input_uri": "input/knn_neighbors/vectors.jsonl",
    "input_format": "jsonl",
    "id_column": "id",
    "vector_column": "vector",
    "query_uri": None,
    "dim": None,
    "k": 5,
    "metric": "euclidean",
    "mode": "auto",
    "exclude_self": True,
    "block_bytes_budget": 64 * 1024 * 1024,
    "broadcast_max_bytes": 256 * 1024 * 1024,
    "annoy_trees": 10,
    "max_reject_fraction": 0.01,
}


@dataclass
class Step:
    """One Spark application of a pipeline, with the arguments its Airflow task would get."""

    app: str
    script: str
    args: list[str]
    outputs: list[str]  # relative to the data root: what the application writes
    reference_seconds: float = 0.0
    before: Path | None = None  # snapshot of the data root before the application ran
    after: Path | None = None  # ... and after its undisturbed run


@dataclass
class Pipeline:
    root: Path
    uri: str
    scratch: Path
    steps: dict[str, Step]
    published_dirs: list[tuple[Path, tuple[str, ...]]]
    json_files: list[Path]
    results: dict = field(default_factory=dict)

    def visible_problems(self) -> list[str]:
        """What a reader of the data root could see that is not a complete output."""
        problems = model_problems(self.root / "models" / "naive_bayes")
        for path, markers in self.published_dirs:
            problems += published_dir_problems(path, markers)
        for path in self.json_files:
            problems += json_file_problems(path)
        return problems


def relative(pipeline_uri: str, uri: str) -> str:
    assert uri.startswith(pipeline_uri + "/"), uri
    return uri[len(pipeline_uri) + 1:]


def vectors(seed: int, n: int, d: int) -> list[dict]:
    import numpy as np

    X = np.random.default_rng(seed).normal(size=(n, d))
    return [{"id": f"v{i:04d}", "vector": [round(float(x), 6) for x in row]} for i, row in enumerate(X)]


@pytest.fixture(scope="module")
def pipeline(spark, corpus, tmp_path_factory):
    """Inputs, the Airflow plans of the three pipelines, and the undisturbed reference: every
    application run once, in order, in process; the data root is snapshotted around each one."""
    from nbknn_airflow.plans.knn_neighbors import plan_knn
    from nbknn_airflow.plans.nb_predict import plan_prediction
    from nbknn_airflow.plans.nb_train import plan_training

    base = tmp_path_factory.mktemp("fault")
    root, scratch, snapshots = base / "data", base / "scratch", base / "snapshots"
    uri = root.as_uri()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**spark_environment(scratch), "NBKNN_DATA_ROOT": uri}.items():
            patch.setenv(name, value)
        patch.delenv("NBKNN_INPUT_ROOTS", raising=False)

        write_jsonl(root / "input/nb_train/labelled/part-0.jsonl", corpus("reuters-r8", "train", 200) + BAD_TRAIN_LINES)
        write_jsonl(root / "input/nb_predict/documents/part-0.jsonl", corpus("reuters-r8", "test", 100))
        write_jsonl(root / "input/knn_neighbors/vectors.jsonl", vectors(7, 400, 16))
        copy_tree(root, snapshots / "0-inputs")

        train = plan_training(TRAIN_PARAMS, TRAIN_RUN_ID, RUN_AFTER)
        t = train["uris"]
        staging = relative(uri, t["staging_dir"])
        steps = [
            Step("nb_class_prior", "nb_class_prior.py", train["class_prior_args"],
                 [f"{staging}/_work/class_priors", f"{staging}/_work/summaries/class_prior.json",
                  relative(uri, t["rejects"])]),
            Step("nb_term_counts", "nb_term_counts.py", train["term_counts_args"],
                 [f"{staging}/classes", f"{staging}/vocabulary", f"{staging}/term_counts",
                  f"{staging}/_work/summaries/term_counts.json"]),
            Step("nb_publish_model", "nb_publish_model.py", train["publish_args"],
                 [relative(uri, t["version_dir"]), relative(uri, t["latest"]), staging]),
        ]
        by_app: dict[str, Step] = {}
        previous = snapshots / "0-inputs"

        def reference(step: Step) -> None:
            nonlocal previous
            started = time.monotonic()
            run_entry_in_process(spark, step.script, step.args)
            step.reference_seconds = time.monotonic() - started
            step.before, step.after = previous, snapshots / f"{len(by_app) + 1}-{step.app}"
            copy_tree(root, step.after)
            previous = step.after
            by_app[step.app] = step

        for step in steps:
            reference(step)
        # The prediction plan reads LATEST and the manifest: it is made once the model is published.
        predict = plan_prediction(PREDICT_PARAMS, PREDICT_RUN_ID)
        p = predict["uris"]
        scores_0 = relative(uri, predict["shard_args"][0][predict["shard_args"][0].index("--scores") + 1])
        reference(Step("nb_vectorize", "nb_vectorize.py", predict["vectorize_args"],
                       [relative(uri, p["vectors"]), relative(uri, p["rejects"])]))
        for other in predict["shard_args"][1:]:  # the other shards' passes, needed by the combiner
            run_entry_in_process(spark, "nb_predict_shard.py", other)
        reference(Step("nb_predict_shard", "nb_predict_shard.py", predict["shard_args"][0], [scores_0]))
        reference(Step("nb_combine", "nb_combine.py", predict["combine_args"],
                       [relative(uri, p["predictions"]), relative(uri, p["report"])]))
        knn = plan_knn(KNN_PARAMS, KNN_RUN_ID)
        k = knn["uris"]
        reference(Step("knn_neighbors", "knn_neighbors.py", knn["knn_args"],
                       [relative(uri, k["neighbors"]), relative(uri, k["summary"]), relative(uri, k["rejects"])]))

        scores = [Path(root, relative(uri, args[args.index("--scores") + 1])) for args in predict["shard_args"]]
        published = [
            (Path(root, relative(uri, t["rejects"])), ("_SUCCESS",)),
            (Path(root, relative(uri, p["vectors"])), ("_SUCCESS", "_summary.json")),
            *[(path, ("_SUCCESS", "_summary.json")) for path in scores],
            (Path(root, relative(uri, p["predictions"])), ("_SUCCESS", "_summary.json")),
            (Path(root, relative(uri, p["report"])), ("_summary.json", "summary.json", "metrics.json")),
            (Path(root, relative(uri, k["neighbors"])), ("_SUCCESS",)),
        ]
        json_files = [
            Path(root, staging, "_work/summaries/class_prior.json"),
            Path(root, staging, "_work/summaries/term_counts.json"),
            Path(root, relative(uri, k["summary"])),
        ]
        print("[reliability] reference runs (s):", {a: round(st.reference_seconds, 1) for a, st in by_app.items()})
        yield Pipeline(root, uri, scratch, by_app, published, json_files)


@dataclass
class Timing:
    """What the latest spark-submit runs tell about start-up (the machine's current pace)."""

    calibration_context_s: float  # SparkContext start of the calibration run
    latest_context_s: float  # ... of the latest run that got that far

    def expected_seconds(self, reference_seconds: float) -> float:
        slowdown = self.latest_context_s / self.calibration_context_s
        return self.latest_context_s + slowdown * max(COLD_FACTOR * reference_seconds, MIN_JOB_SECONDS)


@pytest.fixture(scope="module")
def timing(pipeline, figures_store) -> Timing:
    """Calibration: one spark-submit of nb_class_prior, in Spark's default local-mode memory, on a
    50 MB document beside two good ones. It measures when the SparkContext starts (spark-submit's
    start-up) and proves that such a document is quarantined (record_too_large) without an
    out-of-memory error."""
    folder = pipeline.scratch / "big-input"
    write_jsonl(folder / "part-0.jsonl", [big_document_line(50 * 1000 * 1000), *BIG_COMPANIONS])
    model_dir, rejects = f"{pipeline.uri}/scratch/big-model", f"{pipeline.uri}/scratch/big-rejects"
    args = ["--input", folder.as_uri(), "--model-dir", model_dir, "--rejects", rejects, "--max-reject-fraction", "0.5"]
    command = spark_submit_command("nb_class_prior.py", args, "nbknn-calibration")
    run = run_spark_submit(command, dict(os.environ), pipeline.scratch / "logs" / "calibration.log", pipeline.scratch)
    assert run.returncode == 0, run.log
    assert run.context_at is not None, run.log
    summary = json.loads(Path(pipeline.root, "scratch/big-model/_work/summaries/class_prior.json").read_text())
    assert summary["records"] == {"read": 3, "accepted": 2, "rejected": 1,
                                  "rejected_by_reason": {"record_too_large": 1}}, summary["records"]
    rejected = [json.loads(line) for part in Path(pipeline.root, "scratch/big-rejects").glob("part-*")
                for line in part.read_text().split("\n") if line]
    assert [(r["reason"], len(r["raw"])) for r in rejected] == [("record_too_large", 4096)]
    figures_store["calibration"] = {"spark_context_started_s": round(run.context_at, 1),
                                    "seconds": round(run.seconds, 1), "quarantined_50MB_document": True}
    print(f"[reliability] calibration: SparkContext after {run.context_at:.1f} s; 50 MB document quarantined "
          f"in {run.seconds:.1f} s")
    shutil.rmtree(Path(pipeline.root, "scratch"))
    return Timing(run.context_at, run.context_at)


@pytest.fixture(scope="module")
def figures_store() -> dict:
    return {}


APPS = ["nb_class_prior", "nb_term_counts", "nb_publish_model", "nb_vectorize", "nb_predict_shard",
        "nb_combine", "knn_neighbors"]


@pytest.mark.parametrize("app", APPS)
def test_killed_application_reruns_to_the_undisturbed_output(spark, pipeline, timing, app, figures):
    step = pipeline.steps[app]
    root = pipeline.root
    copy_tree(step.before, root)
    command = spark_submit_command(step.script, step.args, f"nbknn-{app}")
    env = dict(os.environ)
    rng = random.Random(f"{SEED}-{app}")
    measured_seconds = None  # the real duration, once a run ended before its kill time

    watcher = Watcher(pipeline.visible_problems)
    watcher.start()
    trials = []
    try:
        # A run that ends before its kill time is an undisturbed trial; its duration then bounds the
        # next kill times. At most two such trials per application.
        while sum(t["killed"] for t in trials) < KILLS_PER_APP and len(trials) < KILLS_PER_APP + 2:
            expected_seconds = measured_seconds or timing.expected_seconds(step.reference_seconds)
            kill_after = round(rng.uniform(MIN_KILL_SECONDS, max(MIN_KILL_SECONDS + 1, expected_seconds)), 2)
            log = pipeline.scratch / "logs" / f"{app}-trial-{len(trials)}.log"
            run = run_spark_submit(command, env, log, pipeline.scratch, kill_after=kill_after)
            trials.append({"kill_after_s": kill_after, "killed": run.killed, "returncode": run.returncode,
                           "during_spark_job": run.killed and run.context_at is not None,
                           "seconds": round(run.seconds, 1)})
            # A run that ended before its kill time must have succeeded: nothing else is wrong with it.
            assert run.killed or run.returncode == 0, f"exit code {run.returncode} after {run.seconds:.1f} s:\n{run.log}"
            if run.context_at is not None:
                timing.latest_context_s = run.context_at
            if not run.killed:
                measured_seconds = run.seconds
        leftover_after_kills = leftovers(root)
        completing = run_spark_submit(command, env, pipeline.scratch / "logs" / f"{app}-complete.log", pipeline.scratch)
    finally:
        watcher.stop()
    assert completing.returncode == 0, completing.log
    if completing.context_at is not None:
        timing.latest_context_s = completing.context_at

    reference = outputs_of(step.after, step.outputs)
    after_retry = outputs_of(root, step.outputs)
    comparison = compare_all(reference, after_retry)
    # A retry of the finished task (the completing command again): same output, nothing doubled.
    run_entry_in_process(spark, step.script, step.args)
    second = compare_all(reference, outputs_of(root, step.outputs))

    kills = sum(trial["killed"] for trial in trials)
    figures.update(
        app=app,
        trials=len(trials) + 1,
        kills=kills,
        kill_times_s=[t["kill_after_s"] for t in trials if t["killed"]],
        kills_during_spark_job=sum(t["during_spark_job"] for t in trials),
        undisturbed_trials=sum(not t["killed"] for t in trials),
        expected_duration_s=round(expected_seconds, 1),
        spark_context_started_s=round(completing.context_at or 0, 1),
        completing_run_s=round(completing.seconds, 1),
        watcher_polls=watcher.polls,
        partial_outputs_seen=len(watcher.violations),
        records_compared=comparison.records,
        records_lost=comparison.lost,
        records_duplicated=comparison.extra,
        second_run_records_lost=second.lost,
        second_run_records_duplicated=second.extra,
        leftovers_after_kills=len(leftover_after_kills),
        leftovers_after_completion=len(leftovers(root)),
    )
    figures.show(app)
    pipeline.results[app] = dict(figures)
    assert not watcher.errors, watcher.errors
    assert not watcher.violations, watcher.violations
    assert comparison.differences == [], comparison.differences
    assert comparison.lost == 0 and comparison.extra == 0
    assert second.differences == [], second.differences
    assert comparison.records > 0 or app == "nb_publish_model"
    if app == "nb_publish_model":
        staging = root / step.outputs[2]
        assert not staging.exists(), "the staging directory must be gone once the model is published"
        assert (root / step.outputs[1]).read_text().strip() == Path(step.outputs[0]).name


def test_fault_injection_totals(pipeline, figures_store, figures):
    """At least 20 kills over the pipelines' applications, no partial output seen, no record lost."""
    results = pipeline.results
    if len(results) < len(APPS):
        pytest.skip(f"only {sorted(results)} of the applications ran (run the whole module)")
    totals = {
        "applications": len(results),
        "trials": sum(r["trials"] for r in results.values()),
        "kills": sum(r["kills"] for r in results.values()),
        "kills_during_spark_job": sum(r["kills_during_spark_job"] for r in results.values()),
        "records_compared": sum(r["records_compared"] for r in results.values()),
        "records_lost": sum(r["records_lost"] for r in results.values()),
        "records_duplicated": sum(r["records_duplicated"] for r in results.values()),
        "partial_outputs_seen": sum(r["partial_outputs_seen"] for r in results.values()),
        "leftovers_after_completion": sum(r["leftovers_after_completion"] for r in results.values()),
        "per_app_kills": {app: r["kills"] for app, r in results.items()},
        "calibration": figures_store.get("calibration"),
    }
    figures.update(totals)
    assert totals["kills"] >= 20, totals
    assert totals["records_lost"] == 0 and totals["records_duplicated"] == 0
    assert totals["partial_outputs_seen"] == 0
    assert json.dumps(totals)  # stored by the figures fixture


def test_the_watcher_sees_partial_outputs(tmp_path):
    """The checks the watcher runs are not vacuous: each kind of partial output is reported."""
    out = tmp_path / "predictions"
    (out / "_temporary").mkdir(parents=True)  # Spark writing in place: no _SUCCESS yet
    assert published_dir_problems(out, ("_SUCCESS",)) == [f"{out} is visible without _SUCCESS"]
    (out / "_SUCCESS").write_text("")
    (out / "_summary.json").write_text('{"job": "nb_comb')
    assert published_dir_problems(out, ("_SUCCESS",)) == [f"{out / '_summary.json'} is visible half-written (16 bytes)"]
    assert published_dir_problems(tmp_path / "absent") == []

    models = tmp_path / "models"
    version = models / "v1"
    (version / "classes").mkdir(parents=True)
    assert model_problems(models) == ["model v1 is visible without manifest.json"]
    (version / "manifest.json").write_text(json.dumps({"shards": [{"shard": 0}, {"shard": 1}]}))
    for table in ("classes", "vocabulary", "term_counts/shard=0"):
        (version / table).mkdir(parents=True, exist_ok=True)
    (version / "classes" / "_SUCCESS").write_text("")
    (version / "vocabulary" / "_SUCCESS").write_text("")
    assert model_problems(models) == ["model v1: term_counts/ is incomplete", "model v1: term_counts/ lacks ['shard=1']"]
    (models / "LATEST").write_text("v2\n")
    assert "LATEST points at v2, which is not published" in model_problems(models)
    (models / "LATEST").write_text("v")
    assert "LATEST is visible half-written: 'v'" in model_problems(models)
